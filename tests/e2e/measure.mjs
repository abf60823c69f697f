// Measures the dashboard for docs/dashboard.md (not a test; timing varies):
// the bytes of its files, and the time to the overview's first render with
// JOBS jobs pending (default 1,000,000) on a `--workers 0` server, against
// an empty one. Run from the repo root after a release build:
//   cargo build --release -p beaver
//   BEAVER_BIN=target/release/beaver node tests/e2e/measure.mjs
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Beaver, launch, openTab, scratch } from './lib.mjs';

const JOBS = Number(process.env.JOBS || 1_000_000);
const BATCH = 5_000;
const CLIENTS = 4;
const LOADS = 7;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function assetBytes() {
  const dir = join(import.meta.dirname, '../../cli/assets/ui');
  return Object.fromEntries(readdirSync(dir).map((f) => [f, statSync(join(dir, f)).size]));
}

async function fill(srv, n) {
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const from = next;
      next = Math.min(n, next + BATCH);
      const jobs = [];
      for (let i = from; i < next; i++) jobs.push({ payload: { n: i } });
      await srv.enqueue(jobs);
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, worker));
  return Date.now() - started;
}

async function statusMs(srv) {
  const times = [];
  for (let i = 0; i < 21; i++) {
    const t = performance.now();
    await srv.status();
    times.push(performance.now() - t);
  }
  return median(times);
}

/** Loads the overview in fresh tabs; the median time to its first render, and what it fetched. */
async function firstRender(browser, srv) {
  const times = [];
  const parts = [];
  let requests = [];
  for (let i = 0; i < LOADS; i++) {
    const tab = await openTab(browser);
    const seen = [];
    tab.page.on('request', (r) => seen.push(new URL(r.url()).pathname));
    await tab.page.goto(`${srv.url}/ui/`);
    await tab.page.locator('main[data-ready="true"]').waitFor({ timeout: 60_000 });
    const t = await tab.page.evaluate(() => {
      const status = performance.getEntriesByType('resource').find((r) => r.name.endsWith('/v1/status'));
      return {
        render: performance.getEntriesByName('beaver:first-render')[0].startTime,
        dom: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
        status: status ? status.responseEnd - status.startTime : null,
      };
    });
    times.push(t.render);
    parts.push(t);
    requests = seen;
    tab.checkConsole();
    await tab.close();
  }
  return {
    median_ms: Math.round(median(times)), runs_ms: times.map(Math.round), requests,
    // Where the time went: the page's files parsed and run, then /v1/status's round trip in the page.
    dom_ready_median_ms: Math.round(median(parts.map((p) => p.dom))),
    status_in_page_median_ms: Number(median(parts.map((p) => p.status)).toFixed(1)),
  };
}

const browser = await launch();
const result = { assets: assetBytes(), jobs: JOBS };
result.assets_total = Object.values(result.assets).reduce((a, b) => a + b, 0);
for (const [name, n] of [['empty', 0], ['full', JOBS]]) {
  const srv = await Beaver.start(scratch(), ['--workers', '0', '--handler', 'noop']);
  try {
    const fill_ms = await fill(srv, n);
    const st = await srv.status();
    result[name] = {
      pending: st.jobs.pending, fill_ms, status_median_ms: Number((await statusMs(srv)).toFixed(2)),
      ...await firstRender(browser, srv),
    };
  } finally {
    await srv.stop();
  }
}
await browser.close();
console.log(JSON.stringify(result, null, 2));
