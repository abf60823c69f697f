// Takes the README's picture of the dashboard (docs/dashboard.png): a demo
// server with jobs flowing for a minute, some of them dying. Not a test.
//   cargo build -p beaver && node tests/e2e/screenshot.mjs [out.png]
import { join } from 'node:path';
import { Beaver, launch, openTab, scratch } from './lib.mjs';

const out = process.argv[2] || join(import.meta.dirname, '../../docs/dashboard.png');
const RUN_MS = 70_000;

const srv = await Beaver.start(scratch('[engine.queue.retry]\nbase_ms = 200\nmax_ms = 1000\n'),
  ['--workers', '4', '--handler', 'demo', '--demo-ms', '20-300', '--demo-failure-rate', '0.35']);
const browser = await launch();
try {
  const tab = await openTab(browser, { width: 1100, height: 760 });
  await tab.page.goto(`${srv.url}/ui/`);
  // Jobs keep coming while the picture is taken, so it shows them moving.
  const end = Date.now() + RUN_MS + 5_000;
  const load = (async () => {
    for (let wave = 0; Date.now() < end; wave++) {
      const n = 8 + Math.round(12 * Math.abs(Math.sin(wave / 4)));
      await srv.enqueue(Array.from({ length: n }, (_, i) => ({
        payload: { to: `user-${wave}-${i}@example.com`, template: 'welcome' },
        max_attempts: 2, delay_ms: i % 5 === 0 ? 120_000 : 0,
      })));
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  await tab.page.waitForTimeout(RUN_MS);
  await tab.page.screenshot({ path: out });
  await load;
  tab.checkConsole();
  await tab.close();
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await srv.stop();
}
