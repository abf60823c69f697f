// Takes the README's picture of the dashboard (docs/dashboard.png): a demo
// server with jobs flowing for a minute, some of them dying; then the
// queues and the workers pages of the same server (to $E2E_OUT, or a temp
// dir: printed; the docs use only the overview). Not a test.
//   cargo build -p beaver && node tests/e2e/screenshot.mjs [out.png]
import { join } from 'node:path';
import { Beaver, launch, openTab, scratch, OUT } from './lib.mjs';

const out = process.argv[2] || join(import.meta.dirname, '../../docs/dashboard.png');
const RUN_MS = 70_000;

// The pool serves `emails`; `reports` is left to external workers (this
// script leases its jobs under two worker names), and `thumbnails` is paused.
const srv = await Beaver.start(scratch('[engine.queue.retry]\nbase_ms = 200\nmax_ms = 1000\n'),
  ['--workers', '4', '--handler', 'demo', '--demo-ms', '20-300', '--demo-failure-rate', '0.35',
    '--pool-queue', 'emails']);
const browser = await launch();
try {
  const tab = await openTab(browser, { width: 1100, height: 760 });
  await tab.page.goto(`${srv.url}/ui/`);
  await srv.ok('POST', '/v1/queues/thumbnails/pause');
  // Jobs keep coming while the pictures are taken, so they show them moving.
  const end = Date.now() + RUN_MS + 15_000;
  const load = (async () => {
    for (let wave = 0; Date.now() < end; wave++) {
      const n = 8 + Math.round(12 * Math.abs(Math.sin(wave / 4)));
      await srv.enqueue(Array.from({ length: n }, (_, i) => ({
        queue: 'emails', payload: { to: `user-${wave}-${i}@example.com`, template: 'welcome' },
        max_attempts: 2, delay_ms: i % 5 === 0 ? 120_000 : 0,
      })));
      await srv.enqueue([{ queue: 'reports', payload: { report: wave } }, { queue: 'thumbnails', payload: { image: wave } }]);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  // Two external workers: each holds its leases for about 6 s, then completes them.
  const held = [];
  const workers = (async () => {
    for (let k = 0; Date.now() < end; k++) {
      const worker = `report-host-${1 + (k % 2)}/${4100 + (k % 2)}`;
      const got = await srv.ok('POST', '/v1/leases', { queue: 'reports', max: 2, wait_ms: 0, worker });
      for (const l of got.leases) held.push({ id: l.lease_id, at: Date.now() });
      while (held.length && held[0].at < Date.now() - 6_000) {
        await srv.request('POST', `/v1/leases/${held.shift().id}/complete`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  await tab.page.waitForTimeout(RUN_MS);
  await tab.page.screenshot({ path: out });
  console.log(`wrote ${out}`);
  for (const page of ['queues', 'workers']) {
    await tab.page.goto(`${srv.url}/ui/#/${page}`);
    await tab.page.locator(page === 'queues' ? 'tr[data-queue]' : 'tr[data-lease]').first().waitFor();
    await tab.page.waitForTimeout(2_500);
    const path = join(OUT, `${page}.png`);
    await tab.page.screenshot({ path, fullPage: true });
    console.log(`wrote ${path}`);
  }
  await load;
  await workers;
  tab.checkConsole();
  await tab.close();
} finally {
  await browser.close();
  await srv.stop();
}
