// Helpers of the dashboard's end-to-end tests: a real `beaver run` on
// 127.0.0.1 (a free port, a temp data dir), stopped by its PID; the API
// through fetch; headless Chromium through playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

/** The binary under test (run.sh builds it and sets BEAVER_BIN). */
export const BIN = process.env.BEAVER_BIN || resolve(import.meta.dirname, '../../target/debug/beaver');
/** Where screenshots go (run.sh makes a temp dir unless E2E_OUT is set). */
export const OUT = process.env.E2E_OUT || mkdtempSync(join(tmpdir(), 'beaver-e2e-out-'));
mkdirSync(OUT, { recursive: true });

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const START_MS = 60_000;
const STOP_MS = 20_000;

/** Every server still running, by PID: stopped on any exit of this process. */
const running = new Map();
function killAll() {
  for (const pid of running.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  running.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { killAll(); process.exit(130); });
}

/** A fresh temp dir for one server: data/, a config file, logs. */
export function scratch(config = '') {
  const dir = mkdtempSync(join(tmpdir(), 'beaver-e2e-'));
  writeFileSync(join(dir, 'beaver.toml'), config);
  return dir;
}

/** A running `beaver run`. */
export class Beaver {
  /**
   * Starts the binary on `dir` (from `scratch`), on `port` (0: a free one),
   * with `args` added; resolves once it prints its address (60 s at most).
   */
  static async start(dir, args = [], port = 0) {
    const log = join(dir, `server-${Date.now()}.log`);
    const fd = openSync(log, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BEAVER_')));
    env.RUST_LOG = 'warn';
    const child = spawn(BIN, ['run', '--data-dir', join(dir, 'data'), '--config', join(dir, 'beaver.toml'),
      '--listen', `127.0.0.1:${port}`, '--metrics-listen', 'off', ...args], {
      stdio: ['ignore', 'pipe', fd], env,
    });
    closeSync(fd);
    running.set(child.pid, child);
    const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
    const url = await new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`beaver did not start within ${START_MS} ms:\n${readFileSync(log, 'utf8')}`)), START_MS);
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        const m = /^API\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (m) { clearTimeout(timer); res(m[1]); }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        rej(new Error(`beaver exited (${code ?? signal}) before serving:\n${readFileSync(log, 'utf8')}`));
      });
    });
    // Keep reading stdout so the server never blocks on a full pipe.
    child.stdout.resume();
    return new Beaver(child, url, dir, log, exited);
  }

  constructor(child, url, dir, log, exited) {
    this.child = child;
    this.pid = child.pid;
    this.url = url;
    this.port = Number(new URL(url).port);
    this.dir = dir;
    this.log = log;
    this.exited = exited;
    this.token = null;
  }

  /** SIGTERM (a graceful stop), then SIGKILL if it is not gone within 20 s. */
  async stop() {
    if (!running.has(this.pid)) return;
    try { process.kill(this.pid, 'SIGTERM'); } catch { /* gone */ }
    const late = setTimeout(() => { try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ } }, STOP_MS);
    const r = await this.exited;
    clearTimeout(late);
    running.delete(this.pid);
    return r;
  }

  /** One API request; resolves to {status, body}. */
  async request(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.url + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: r.status, body: json };
  }

  /** A request that must answer 200; resolves to its JSON. */
  async ok(method, path, body) {
    const r = await this.request(method, path, body);
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  status() { return this.ok('GET', '/v1/status'); }
  enqueue(jobs) { return this.ok('POST', '/v1/jobs', jobs); }
  job(id) { return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`); }
}

/** Polls `probe` (bounded: `within` ms, every 100 ms) until it returns a truthy value. */
export async function until(what, probe, within = 15_000) {
  const deadline = Date.now() + within;
  let last;
  for (;;) {
    try { last = await probe(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${within} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Launches Debian's Chromium, headless. */
export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/**
 * A new tab (its own context: its own sessionStorage) that records every
 * console error and uncaught exception. `allowed` lists patterns of console
 * errors a test expects (the browser's own log line for a refused
 * connection or a 401/404 answer); anything else fails `checkConsole`.
 */
export async function openTab(browser, viewport = { width: 1200, height: 860 }) {
  const context = await browser.newContext({ viewport, colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'assert') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  // ERR_ABORTED is the browser dropping a request itself: a navigation
  // away while the icon still loads, or the page's own timeout; neither is
  // the server or the page failing.
  page.on('requestfailed', (r) => {
    const why = r.failure() && r.failure().errorText;
    if (why !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${why}`);
  });
  return {
    page,
    problems,
    /** Fails on any problem not matched by one of `allowed`. */
    checkConsole(allowed = []) {
      const bad = problems.filter((p) => !allowed.some((re) => re.test(p)));
      if (bad.length) throw new Error(`the page logged errors:\n${bad.join('\n')}`);
    },
    close: () => context.close(),
  };
}

/** Saves a screenshot of the page to OUT; returns its path. */
export async function shot(page, name) {
  const path = join(OUT, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
