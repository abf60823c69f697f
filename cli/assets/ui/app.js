// beaver's dashboard. It reads and changes the queue only through the
// published HTTP API (the /v1 routes of the README), so whatever it does a
// script can do too. Plain JavaScript, no build step, no dependency.
'use strict';

// ---- Limits: every loop, list and text shown is bounded. ----
const POLL_MS = 2000;               // live updates while the server answers
const BACKOFF_MAX_MS = 30000;       // longest wait between tries while it does not
const REQUEST_TIMEOUT_MS = 10000;   // a request without an answer by then failed
const WINDOW_MS = 5 * 60 * 1000;    // what the charts show
const SAMPLES_MAX = 400;            // the ring of status samples (150 at 2 s)
const ERROR_CUT = 600;              // characters of an error shown before "Show all"
const ERROR_LINE = 200;             // ... and in a list, on one line
const PAYLOAD_CUT = 4000;           // characters of a payload shown before "Show all"
const DEAD_PAGE = 100;              // dead jobs listed at first, then per "Show more"
const DEAD_MAX = 1000;              // the most GET /v1/dead lists
const QUEUE_PAGE = 50;              // a queue's jobs per page (one page held at a time)
const QUEUES_MAX = 1000;            // queues listed on their page (10 on the overview)
const LEASES_MAX = 1000;            // the most GET /v1/leases lists
const TOKEN_KEY = 'beaver.token';   // sessionStorage: this tab only

// ---- Small helpers ----
const $ = (sel) => document.querySelector(sel);

/** Builds an element: attrs (class, text, on*, others as attributes), then children. */
function h(tag, attrs, ...children) {
  const el = tag === 'svg' || tag === 'polyline' || tag === 'line'
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const numberFmt = new Intl.NumberFormat('en');
const fmtN = (n) => (n === null || n === undefined ? '–' : numberFmt.format(n));

function fmtRate(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return '–';
  if (r >= 100) return numberFmt.format(Math.round(r));
  return r.toFixed(r >= 10 ? 1 : 2);
}

function fmtBytes(b) {
  if (b === null || b === undefined) return '–';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? String(b) : b.toFixed(b >= 100 ? 0 : 1)) + ' ' + units[i];
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '–';
  const a = Math.abs(ms);
  if (a < 1000) return Math.round(a) + ' ms';
  if (a < 60000) return (a / 1000).toFixed(a < 10000 ? 1 : 0) + ' s';
  if (a < 3600000) return Math.round(a / 60000) + ' min';
  if (a < 86400000) return (a / 3600000).toFixed(1) + ' h';
  return (a / 86400000).toFixed(1) + ' d';
}

/** "in 5 s" or "3 min ago", relative to `now`. */
function relative(ms, now) {
  const d = ms - now;
  if (Math.abs(d) < 1000) return 'now';
  return d > 0 ? 'in ' + fmtDuration(d) : fmtDuration(d) + ' ago';
}

const pad = (n) => String(n).padStart(2, '0');

/** A time element: local date and time, the UTC instant as its title. */
function when(ms, now) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted', text: '–' });
  const d = new Date(ms);
  const local = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h('time', { datetime: d.toISOString(), title: d.toISOString() },
    local, h('span', { class: 'muted', text: ` (${relative(ms, now)})` }));
}

function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function stateBadge(state) {
  return h('span', { class: 'state ' + state, text: String(state).replace('_', ' ') });
}

const jobHref = (id) => '#/jobs/' + encodeURIComponent(id);
const jobPath = (id) => '/v1/jobs/' + encodeURIComponent(id);

/**
 * Long text, cut at `cut` characters with a button that shows all of it
 * (and back). The full text is only put in the page when asked for.
 * `keep` (a Set of labels) remembers what the reader opened across refreshes.
 */
function clipped(text, cut, label, keep) {
  const pre = h('pre', { class: 'clip', 'aria-label': label });
  if (text.length <= cut) {
    pre.textContent = text;
    return pre;
  }
  const more = text.length - cut;
  const btn = h('button', { type: 'button', class: 'link', 'data-key': 'clip:' + label });
  const show = () => {
    const open = keep.has(label);
    pre.textContent = open ? text : text.slice(0, cut) + '…';
    btn.textContent = open ? 'Show less' : `Show all (${fmtN(more)} more characters)`;
    btn.setAttribute('aria-expanded', String(open));
  };
  btn.addEventListener('click', () => {
    if (keep.has(label)) keep.delete(label); else keep.add(label);
    show();
  });
  show();
  return h('div', { class: 'clip-box' }, pre, h('div', { class: 'clip-more' }, btn));
}

/** What names the focused control, so that it can be focused again once a refresh rebuilt it. */
function focusedKey() {
  const el = document.activeElement;
  if (!el || !document.getElementById('main').contains(el)) return null;
  if (el.dataset && el.dataset.key) return `[data-key="${CSS.escape(el.dataset.key)}"]`;
  const href = el.getAttribute && el.getAttribute('href');
  return href ? `a[href="${CSS.escape(href)}"]` : null;
}

function refocus(selector) {
  const el = document.activeElement;
  if (!selector || (el && el !== document.body && el.isConnected)) return;
  const again = document.getElementById('main').querySelector(selector);
  if (again) again.focus();
}

// ---- The API ----
class HttpError extends Error {
  constructor(status, kind, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.kind = kind;
    this.retryAfterMs = retryAfterMs;
  }
}
class Unreachable extends Error {}

const auth = { token: null, asking: false };
try { auth.token = sessionStorage.getItem(TOKEN_KEY); } catch { auth.token = null; }

// The routes of the published API (docs/openapi.json) this page asks, and
// no other: api() refuses anything else before it sends it. A unit test
// (cli/src/ui.rs) checks this list against the API's document.
const ROUTES = [
  'GET /v1/ping',
  'GET /v1/status',
  'GET /v1/jobs/{id}',
  'POST /v1/jobs/{id}/requeue',
  'POST /v1/jobs/{id}/cancel',
  'GET /v1/dead',
  'POST /v1/dead/requeue',
  'GET /v1/queues/{name}/jobs',
  'POST /v1/queues/{name}/pause',
  'POST /v1/queues/{name}/resume',
  'POST /v1/queues/{name}/purge',
  'GET /v1/leases',
];
const ROUTE_RES = ROUTES.map((r) => {
  const [method, path] = r.split(' ');
  // A {parameter} is one percent-encoded path segment (what
  // encodeURIComponent leaves, never "." or ".."); a query of plain words may follow.
  return [method, new RegExp('^' + path.replace(/\{[a-z_]+\}/g, () => "(?!\\.\\.?(?:[/?]|$))[A-Za-z0-9%._~!*'()-]+") + '(\\?[A-Za-z0-9_=&]*)?$')];
});
const allowed = (method, path) => ROUTE_RES.some(([m, re]) => m === method && re.test(path));

/** One request to the API; resolves to the JSON answer, throws HttpError or Unreachable. */
async function api(path, method, body) {
  // The published API only: no other route is ever asked.
  if (!path.startsWith('/v1/') || !allowed(method || 'GET', path)) throw new Error('not an API route: ' + path);
  const headers = { Accept: 'application/json' };
  if (auth.token) headers.Authorization = 'Bearer ' + auth.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
  try {
    let resp;
    try {
      resp = await fetch(path, {
        method: method || 'GET', headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new Unreachable(ctl.signal.aborted ? 'no answer within 10 s' : 'cannot connect');
    }
    let doc = null;
    try { doc = await resp.json(); } catch { doc = null; }
    if (resp.ok && doc !== null) return doc;
    const e = (doc && doc.error) || {};
    throw new HttpError(resp.status, e.kind || 'http', e.message || `the server answered ${resp.status}`,
      e.retry_after_ms);
  } finally {
    clearTimeout(timer);
  }
}

// ---- Live state: the latest status and a bounded ring of samples ----
const live = {
  status: null,        // the latest /v1/status
  samples: [],         // {t, enqueued, out, lsn, gap}
  failures: 0,         // failed tries in a row
  downSince: null,     // when the server stopped answering
  timer: 0,
  running: false,
  again: false,
  view: null,          // the mounted page
  warned: false,       // a warning banner is up (cleared by the next good answer)
  firstRender: false,
};

const recoveryKey = (st) => JSON.stringify(st.recovery);

/** Records a status sample; true when the server restarted since the last one. */
function noteStatus(st) {
  const prev = live.status;
  const t = st.totals || {};
  const restarted = prev !== null && (recoveryKey(prev) !== recoveryKey(st) ||
    (t.enqueued || 0) < ((prev.totals || {}).enqueued || 0) ||
    (t.dispatched || 0) < ((prev.totals || {}).dispatched || 0));
  live.status = st;
  const now = Date.now();
  live.samples.push({
    t: now,
    enqueued: t.enqueued || 0,
    out: (t.completed || 0) + (t.dead || 0),
    lsn: st.wal ? st.wal.last_lsn : 0,
    gap: restarted,
  });
  while (live.samples.length > SAMPLES_MAX || (live.samples.length && live.samples[0].t < now - WINDOW_MS)) {
    live.samples.shift();
  }
  return restarted;
}

/** Per-second rates of a counter between consecutive samples; null across a restart. */
function rates(key) {
  const out = [];
  const s = live.samples;
  for (let i = 1; i < s.length; i++) {
    const dt = s[i].t - s[i - 1].t;
    out.push({ t: s[i].t, v: s[i].gap || dt <= 0 ? null : Math.max(0, (s[i][key] - s[i - 1][key]) * 1000 / dt) });
  }
  return out;
}

// ---- The connection banner ----
function banner(kind, ...content) {
  const b = $('#banner');
  b.replaceChildren(...content);
  b.className = 'banner ' + kind;
  b.hidden = content.length === 0;
}

let bannerTimer = 0;

function connected(restarted) {
  const wasDown = live.downSince !== null;
  const since = live.downSince;
  live.failures = 0;
  live.downSince = null;
  if (!wasDown && !restarted) return;
  const r = live.status.recovery;
  const words = [`Reconnected at ${clock(Date.now())}`];
  if (wasDown) words.push(` after ${fmtDuration(Date.now() - since)} without an answer`);
  words.push('. ');
  if (restarted) {
    words.push(r ? `The server restarted: it recovered ${fmtN(r.jobs)} jobs in ${fmtDuration(r.duration_ms)}.`
      : 'The server restarted.');
  } else {
    words.push('The server did not restart.');
  }
  banner('back', h('span', { class: 'reconnected', text: words.join('') }));
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => banner(''), 15000);
}

/** Notes a failed try; returns how long to wait before the next one. */
function disconnected(err) {
  live.failures++;
  if (live.downSince === null) live.downSince = Date.now();
  const wait = Math.min(BACKOFF_MAX_MS, POLL_MS * 2 ** Math.min(live.failures - 1, 10));
  const why = err instanceof HttpError ? `${err.message} (${err.status})` : err.message;
  clearTimeout(bannerTimer);
  banner('down',
    h('span', { class: 'unreachable',
      text: `The server is ${err instanceof HttpError ? 'unavailable' : 'not answering'} (${why}) since ${clock(live.downSince)}. ` +
        `Try ${live.failures}; next in ${fmtDuration(wait)}. What is shown is from ${clock(lastGood())}.` }),
    h('button', { type: 'button', onclick: () => tick(), text: 'Retry now' }));
  if (live.view) document.getElementById('main').classList.add('stale');
  return wait;
}

const lastGood = () => (live.samples.length ? live.samples[live.samples.length - 1].t : Date.now());

// ---- The token ----
function askToken(message) {
  const hadToken = !!auth.token;
  auth.token = null;
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage off: the token lives in memory */ }
  auth.asking = true;
  $('#forget').hidden = true;
  $('#login-error').textContent = hadToken ? `Refused: ${message}` : '';
  const dlg = $('#login');
  if (!dlg.open) dlg.showModal();
  $('#login-token').value = '';
  $('#login-token').focus();
}

async function submitToken(ev) {
  ev.preventDefault();
  const token = $('#login-token').value.trim();
  if (!token) return;
  // As the server checks its own: a header cannot carry anything else.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    $('#login-error').textContent = 'A token is printable ASCII without spaces.';
    return;
  }
  auth.token = token;
  try {
    await api('/v1/ping');
  } catch (e) {
    auth.token = null;
    $('#login-error').textContent = e instanceof HttpError && e.status === 401
      ? `Refused: ${e.message}` : `Could not check it: ${e.message}`;
    $('#login-token').select();
    return;
  }
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* kept in memory only */ }
  auth.asking = false;
  $('#login').close();
  $('#forget').hidden = false;
  tick();
}

function forgetToken() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* nothing kept */ }
  auth.token = null;
  location.reload();
}

// ---- The poll loop: one request chain at a time, bounded in rate ----
async function tick() {
  if (auth.asking) return;
  if (live.running) { live.again = true; return; }
  live.running = true;
  clearTimeout(live.timer);
  let delay = POLL_MS;
  try {
    const st = await api('/v1/status');
    const restarted = noteStatus(st);
    if (live.warned) { live.warned = false; banner(''); }
    connected(restarted);
    document.getElementById('main').classList.remove('stale');
    if (live.view) {
      const focus = focusedKey();
      await live.view.update(st, restarted);
      refocus(focus);
    }
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) {
      live.running = false;
      askToken(e.message);
      return;
    }
    if (e instanceof Unreachable || (e instanceof HttpError && e.status >= 500)) {
      delay = disconnected(e);
    } else {
      live.warned = true;
      banner('warn', h('span', { text: `The server answered: ${e.message}` }));
    }
  }
  live.running = false;
  if (live.again) { live.again = false; delay = 0; }
  if (!document.hidden) live.timer = setTimeout(tick, delay);
}

// Nothing to watch in a hidden tab: polling stops, and resumes at once on return.
document.addEventListener('visibilitychange', () => {
  clearTimeout(live.timer);
  if (!document.hidden) tick();
});

// ---- Pages ----
// Each page mounts into <main> and returns {update(status, restarted)}, called
// after every status poll (the page's own request, if any, follows it).
const pages = {
  overview: { title: 'Overview', nav: 'overview', mount: mountOverview },
  queues: { title: 'Queues', nav: 'queues', mount: mountQueues },
  queue: { title: 'Queue', nav: 'queues', mount: mountQueue },
  workers: { title: 'Workers and leases', nav: 'workers', mount: mountWorkers },
  dead: { title: 'Dead jobs', nav: 'dead', mount: mountDead },
  job: { title: 'Job', nav: null, mount: mountJob },
  missing: { title: 'Not found', nav: null, mount: mountMissing },
};

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  let arg = null;
  try { arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join('/')) : null; } catch { arg = null; }
  if (parts.length === 0) return { page: 'overview' };
  if (parts[0] === 'dead' && parts.length === 1) return { page: 'dead' };
  if (parts[0] === 'jobs' && arg) return { page: 'job', arg };
  if (parts[0] === 'queues' && parts.length === 1) return { page: 'queues' };
  if (parts[0] === 'queues' && arg) return { page: 'queue', arg };
  if (parts[0] === 'workers' && parts.length === 1) return { page: 'workers' };
  return { page: 'missing' };
}

function navigate(focus) {
  const r = parseRoute();
  const p = pages[r.page];
  document.title = `${p.title}${r.arg ? ' ' + r.arg : ''} · beaver`;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === p.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const main = $('#main');
  main.replaceChildren();
  live.view = p.mount(main, r.arg, p);
  if (focus) {
    const h1 = main.querySelector('h1');
    if (h1) { h1.tabIndex = -1; h1.focus(); }
  }
  tick();
}

// ---- Overview ----
function mountOverview(main) {
  const tiles = h('div', { class: 'tiles', role: 'group', 'aria-label': 'Jobs per state' });
  const charts = h('div', { class: 'charts' });
  const cards = h('div', { class: 'cards' });
  const flight = h('div');
  const dead = h('div');
  const disk = h('div');
  const queues = h('div');
  main.append(h('h1', { text: 'Overview' }), disk, tiles,
    h('h2', { text: 'Rates over the last minutes' }), charts,
    h('h2', {}, 'Queues ', h('a', { href: '#/queues', text: '(all)' })), queues,
    h('h2', { text: 'Storage and recovery' }), cards,
    h('h2', { text: 'In flight' }), flight,
    h('h2', {}, 'Newest dead jobs ', h('a', { href: '#/dead', text: '(all)' })), dead);
  return {
    update(st) {
      disk.replaceChildren(st.disk_full
        ? h('p', { class: 'note bad', text: 'The disk is in its space reserve: new jobs are refused (503) until space is freed. Running jobs keep finishing.' })
        : '');
      tiles.replaceChildren(...stateTiles(st));
      charts.replaceChildren(...rateCharts());
      queues.replaceChildren(queueTable(st, 10, true));
      cards.replaceChildren(...storageCards(st));
      flight.replaceChildren(inFlightTable(st));
      dead.replaceChildren(newestDead(st));
      if (!live.firstRender) {
        live.firstRender = true;
        main.dataset.ready = 'true';
        performance.mark('beaver:first-render');
      }
    },
  };
}

function tile(state, label, n, sub) {
  return h('div', { class: 'tile ' + state, 'data-count': state },
    h('div', { class: 'k', text: label }), h('div', { class: 'n', text: fmtN(n) }),
    sub ? h('div', { class: 'sub' }, sub) : null);
}

function stateTiles(st) {
  const j = st.jobs;
  const running = st.running === null ? '' : `${fmtN(st.running)} running on ${fmtN(st.workers)} workers`;
  return [
    tile('pending', 'Pending', j.pending, h('span', {},
      h('span', { 'data-count': 'ready', text: fmtN(st.ready) }), ' ready · ',
      h('span', { 'data-count': 'scheduled', text: fmtN(st.scheduled) }), ' scheduled')),
    tile('in_flight', 'In flight', j.in_flight, running),
    tile('completed', 'Completed', j.completed, st.totals ? `${fmtN(st.totals.completed)} since start` : ''),
    tile('dead', 'Dead', j.dead, h('a', { href: '#/dead', text: 'see and requeue' })),
    tile('cancelled', 'Cancelled', j.cancelled, ''),
  ];
}

/**
 * A small line chart of `points` ({t, v|null}; null breaks the line) over
 * the samples held: from the oldest (at most WINDOW_MS ago) to the newest.
 */
function chart(title, points, unit, note) {
  if (note) return h('div', { class: 'chart' }, h('div', { class: 'k', text: title }), h('div', { class: 'v', text: note }));
  const W = 300;
  const H = 56;
  const s = live.samples;
  const to = s.length ? s[s.length - 1].t : Date.now();
  const from = s.length ? s[0].t : to;
  const span = Math.max(10_000, to - from);
  const vals = points.filter((p) => p.v !== null).map((p) => p.v);
  const max = vals.length ? Math.max(...vals) : null;
  const top = Math.max(1, max || 0);
  const last = points.length ? points[points.length - 1].v : null;
  const words = `${fmtRate(last)} ${unit} now · max ${fmtRate(max)} · last ${fmtDuration(to - from)}`;
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': `${title}: ${words}` });
  svg.append(h('line', { class: 'axis', x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }));
  let run = [];
  const flush = () => {
    if (run.length > 1) svg.append(h('polyline', { points: run.join(' ') }));
    run = [];
  };
  for (const p of points) {
    if (p.v === null) { flush(); continue; }
    const x = W - ((to - p.t) / span) * W;
    const y = H - 2 - (p.v / top) * (H - 6);
    run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  flush();
  return h('div', { class: 'chart' }, h('div', { class: 'k', text: title }), h('div', { class: 'v', text: words }), svg);
}

function rateCharts() {
  return [
    chart('Jobs in', rates('enqueued'), 'jobs/s'),
    chart('Jobs out (completed or dead)', rates('out'), 'jobs/s'),
    chart('Log records made durable', rates('lsn'), 'records/s'),
    chart('fsync latency', [], '',
      'Not in /v1/status yet: the metrics listener (/metrics) has it, as a histogram.'),
  ];
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
}

function storageCards(st) {
  const w = st.wal || {};
  const s = st.snapshot || {};
  const r = st.recovery;
  return [
    h('section', { class: 'card' }, h('h2', { text: 'Write-ahead log' }), kv([
      ['On disk', `${fmtBytes(w.bytes)} in ${fmtN(w.segments)} segment${w.segments === 1 ? '' : 's'}`],
      ['Last durable LSN', fmtN(w.last_lsn)],
      ['Payload held', fmtBytes(st.pending_payload_bytes)],
      ['Ids remembered', fmtN(st.remembered_ids)],
    ])),
    h('section', { class: 'card' }, h('h2', { text: 'Snapshot' }), kv([
      ['Covers LSN', s.lsn === null ? 'none yet' : fmtN(s.lsn)],
      ['Written', when(s.written_at_ms, Date.now())],
      ['Log after it', s.lsn === null ? '–' : `${fmtN(Math.max(0, w.last_lsn - s.lsn))} records`],
    ])),
    h('section', { class: 'card' }, h('h2', { text: 'Last recovery' }), r ? kv([
      ['Took', fmtDuration(r.duration_ms)],
      ['Jobs found', fmtN(r.jobs)],
      ['From snapshot', r.snapshot_lsn === null ? 'none' : `LSN ${fmtN(r.snapshot_lsn)}`],
      ['Records replayed', fmtN(r.replayed_records)],
      ['Torn tail discarded', fmtBytes(r.torn_bytes_discarded)],
    ]) : h('p', { class: 'muted', text: 'Not reported.' })),
  ];
}

function table(headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted', text: empty });
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, rows)));
}

function inFlightTable(st) {
  const rows = (st.in_flight || []).map((l) => h('tr', {},
    h('td', { class: 'id' }, h('a', { href: jobHref(l.id), text: l.id })),
    h('td', { class: 'num', text: fmtN(l.attempt) }),
    h('td', {}, l.lease_until_ms === null ? h('span', { class: 'muted', text: 'waiting for a free worker' })
      : `${relative(l.lease_until_ms, st.now_ms)}`)));
  const more = st.jobs.in_flight > rows.length
    ? h('p', { class: 'muted', text: `The ${rows.length} with the soonest deadlines of ${fmtN(st.jobs.in_flight)}.` }) : null;
  return h('div', {}, table(['Job', 'Attempt', 'Lease deadline'], rows, 'No job is in flight.'), more);
}

function newestDead(st) {
  const rows = (st.newest_dead || []).slice(0, 5).map((d) => h('tr', {},
    h('td', { class: 'id' }, h('a', { href: jobHref(d.id), text: d.id })),
    h('td', { class: 'num', text: d.finished_at_ms === null ? '–' : relative(d.finished_at_ms, st.now_ms) }),
    h('td', { class: 'err' }, d.last_error ? oneLine(d.last_error, 160) : h('span', { class: 'muted', text: 'no error text' }))));
  return table(['Job', 'Died', 'Last error'], rows, 'No dead job.');
}

function oneLine(text, cut) {
  const flat = text.replace(/\s+/g, ' ');
  return h('span', { title: flat.length > cut ? flat.slice(0, 2000) : null,
    text: flat.length > cut ? flat.slice(0, cut) + '…' : flat });
}

// ---- Dead jobs ----
function mountDead(main) {
  let limit = DEAD_PAGE;
  let shownKey = '';
  let renderedAt = 0;
  let jobs = [];
  const expanded = new Set();
  const head = h('p', { class: 'muted' });
  const msg = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const more = h('div', { class: 'actions' });
  const confirmAll = h('span', { class: 'actions', hidden: true },
    h('span', { text: 'Requeue every dead job?' }),
    h('button', { type: 'button', class: 'danger', text: 'Yes, requeue all', onclick: () => requeueAll() }),
    h('button', { type: 'button', text: 'No', onclick: () => { confirmAll.hidden = true; allBtn.hidden = false; allBtn.focus(); } }));
  const allBtn = h('button', { type: 'button', text: 'Requeue all…',
    onclick: () => { allBtn.hidden = true; confirmAll.hidden = false; confirmAll.querySelector('button').focus(); } });
  main.append(h('h1', { text: 'Dead jobs' }), head, h('div', { class: 'actions' }, allBtn, confirmAll), msg, list, more);

  const say = (kind, text) => msg.replaceChildren(h('p', { class: 'note ' + kind, text }));

  async function act(path, what) {
    try {
      const r = await api(path, 'POST');
      say('ok', `${what}: ${fmtN(r.requeued)} job${r.requeued === 1 ? '' : 's'} will run again with fresh attempts.`);
    } catch (e) {
      say('bad', `${what} failed: ${e.message}`);
    }
    shownKey = '';
    tick();
  }
  const requeueAll = () => { confirmAll.hidden = true; allBtn.hidden = false; act('/v1/dead/requeue', 'Requeue all'); };

  /** A dead job's error: one line, cut; all of it (kept as it was written) once opened. */
  function errorCell(j) {
    const err = j.last_error || '';
    if (!err) return h('td', { class: 'err' }, h('span', { class: 'muted', text: 'no error text' }));
    const open = expanded.has(j.id);
    const toggle = err.length > ERROR_LINE || /\n/.test(err)
      ? h('div', { class: 'clip-more' }, h('button', {
        type: 'button', class: 'link', 'aria-expanded': String(open), 'data-key': 'toggle:' + j.id,
        text: open ? 'Show less' : `Show all (${fmtN(err.length)} characters)`,
        onclick: () => { if (open) expanded.delete(j.id); else expanded.add(j.id); render(); },
      }))
      : null;
    return h('td', { class: 'err' },
      open ? h('pre', { class: 'clip', 'aria-label': 'Last error', text: err }) : oneLine(err, ERROR_LINE), toggle);
  }

  function row(j) {
    const now = live.status ? live.status.now_ms : Date.now();
    return h('tr', { 'data-id': j.id },
      h('td', { class: 'id' }, h('a', { href: jobHref(j.id), text: j.id })),
      h('td', { text: j.queue }),
      h('td', { class: 'num', text: `${fmtN(j.attempt)} of ${fmtN(j.max_attempts)}` }),
      h('td', { class: 'num' }, when(j.finished_at_ms, now)),
      errorCell(j),
      h('td', {}, h('button', {
        type: 'button', 'data-key': 'requeue:' + j.id, 'aria-label': `Requeue ${j.id}`, text: 'Requeue',
        onclick: () => act(`${jobPath(j.id)}/requeue`, `Requeue ${j.id}`),
      })));
  }

  function render() {
    const focus = focusedKey();
    renderedAt = Date.now();
    list.replaceChildren(table(['Job', 'Queue', 'Attempts', 'Died', 'Last error', ''], jobs.map(row), 'No dead job.'));
    refocus(focus);
  }

  return {
    async update(st) {
      const total = st.jobs.dead;
      allBtn.disabled = total === 0;
      // Shown with the list it counts, never ahead of it.
      const heading = `${fmtN(total)} dead job${total === 1 ? '' : 's'}, newest first.`;
      // The list is fetched again only when something about the dead changed.
      const newest = (st.newest_dead && st.newest_dead[0]) || {};
      const key = `${total}|${st.totals ? st.totals.dead : ''}|${newest.id}|${newest.finished_at_ms}|${limit}|${recoveryKey(st)}`;
      if (key === shownKey) {
        head.textContent = heading;
        // Nothing new: only the "3 min ago"s move, redrawn now and then.
        if (Date.now() - renderedAt > 10_000) render();
        return;
      }
      const doc = await api('/v1/dead?limit=' + limit);
      shownKey = key;
      jobs = doc.jobs || [];
      head.textContent = heading;
      render();
      more.replaceChildren(total > jobs.length && limit < DEAD_MAX
        ? h('button', { type: 'button', text: `Show more (${fmtN(jobs.length)} of ${fmtN(total)} shown)`,
          onclick: () => { limit = Math.min(DEAD_MAX, limit * 2); shownKey = ''; tick(); } })
        : total > jobs.length
          ? h('p', { class: 'muted', text: `The newest ${fmtN(jobs.length)} of ${fmtN(total)} (the API lists at most ${fmtN(DEAD_MAX)}).` })
          : '');
    },
  };
}

// ---- One job ----
const JOB_FIELDS = ['id', 'queue', 'state', 'priority', 'attempt', 'max_attempts', 'timeout_ms', 'created_at_ms',
  'run_at_ms', 'lease_until_ms', 'finished_at_ms', 'last_error', 'payload', 'schema_version'];

function mountJob(main, id) {
  let job = null;
  let gone = false;
  let seenAt = null;
  const opened = new Set();
  const title = h('h1', {}, 'Job ', h('span', { class: 'mono', text: id }));
  const badge = h('span');
  const msg = h('div', { 'aria-live': 'polite' });
  const body = h('div', {}, h('p', { class: 'muted', text: 'Loading…' }));
  const requeueBtn = h('button', { type: 'button', text: 'Requeue', onclick: () => act('requeue') });
  const cancelBtn = h('button', { type: 'button', class: 'danger', text: 'Cancel…', onclick: () => confirmCancel(true) });
  const sure = h('span', { class: 'actions', hidden: true }, h('span', { text: 'Cancel this job? It will never run.' }),
    h('button', { type: 'button', class: 'danger', text: 'Yes, cancel it', onclick: () => { confirmCancel(false); act('cancel'); } }),
    h('button', { type: 'button', text: 'No', onclick: () => { confirmCancel(false); cancelBtn.focus(); } }));
  const actions = h('div', { class: 'actions' }, badge, requeueBtn, cancelBtn, sure);
  main.append(title, actions, msg, body);

  const say = (kind, text) => msg.replaceChildren(text ? h('p', { class: 'note ' + kind, text }) : '');

  function confirmCancel(open) {
    sure.hidden = !open;
    cancelBtn.hidden = open;
    if (open) sure.querySelector('button').focus();
  }

  async function act(what) {
    try {
      await api(`${jobPath(id)}/${what}`, 'POST');
      say('ok', what === 'requeue' ? 'Requeued: it runs again with a fresh set of attempts.' : 'Cancelled: it will not run.');
    } catch (e) {
      say('bad', `${what === 'requeue' ? 'Requeue' : 'Cancel'} refused: ${e.message}`);
    }
    tick();
  }

  function render() {
    const now = Date.now();
    const j = job;
    badge.replaceChildren(stateBadge(j.state));
    requeueBtn.disabled = gone || j.state !== 'dead';
    requeueBtn.title = j.state === 'dead' ? '' : 'Only a dead job can be requeued';
    // A job handed out that still waits for a free worker (no deadline) can be cancelled too.
    const cancellable = !gone && (j.state === 'pending' || (j.state === 'in_flight' && j.lease_until_ms === null));
    cancelBtn.disabled = !cancellable;
    cancelBtn.title = cancellable ? '' : 'Only a pending job (or one waiting for a free worker) can be cancelled';
    if (!cancellable) confirmCancel(false);
    const lease = j.lease_until_ms !== null ? when(j.lease_until_ms, now)
      : j.state === 'in_flight' ? h('span', { class: 'muted', text: 'waiting for a free worker (its lease starts when it does)' }) : when(null);
    const pairs = [
      ['Id', h('span', { class: 'mono', text: j.id })],
      ['Queue', j.queue],
      ['State', stateBadge(j.state)],
      ['Priority', fmtN(j.priority)],
      ['Attempt', `${fmtN(j.attempt)} of ${fmtN(j.max_attempts)}`],
      ['Timeout', fmtDuration(j.timeout_ms)],
      ['Created', when(j.created_at_ms, now)],
      ['Runs at', when(j.run_at_ms, now)],
      ['Lease deadline', lease],
      ['Finished', when(j.finished_at_ms, now)],
      ['Last error', j.last_error ? clipped(j.last_error, ERROR_CUT, 'Last error', opened) : h('span', { class: 'muted', text: 'none' })],
      ['Payload', payloadView(j, opened)],
    ];
    // Fields newer than this page are shown as they come.
    for (const [k, v] of Object.entries(j)) {
      if (!JOB_FIELDS.includes(k)) pairs.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
    }
    pairs.push(['Schema version', fmtN(j.schema_version)]);
    body.replaceChildren(kv(pairs));
    body.classList.toggle('stale', gone);
  }

  return {
    async update() {
      if (gone) return;
      try {
        job = await api(jobPath(id));
        seenAt = Date.now();
        render();
      } catch (e) {
        if (!(e instanceof HttpError) || e.status === 401 || e.status >= 500) throw e;
        if (e.status === 404) {
          gone = true;
          say('bad', job
            ? `This job is no longer on the server (since ${clock(Date.now())}): finished jobs are purged by retention. Shown as last seen at ${clock(seenAt)}.`
            : 'No job with this id is on the server: it was never enqueued, or it finished and was purged by retention.');
          if (job) render();
          else body.replaceChildren(h('button', { type: 'button', text: 'Check again', onclick: () => { gone = false; say('', ''); tick(); } }));
          requeueBtn.disabled = true;
          cancelBtn.disabled = true;
          return;
        }
        say('bad', e.message);
      }
    },
  };
}

function payloadView(j, opened) {
  if (j.payload === null) {
    return h('span', { class: 'muted', text: j.state === 'completed' || j.state === 'cancelled'
      ? 'released (a finished job keeps no payload)' : 'null' });
  }
  return clipped(JSON.stringify(j.payload, null, 2), PAYLOAD_CUT, 'Payload', opened);
}

// ---- Queues ----
const QUEUE_STATES = [['pending', 'Pending'], ['in_flight', 'In flight'], ['completed', 'Completed'],
  ['dead', 'Dead'], ['cancelled', 'Cancelled']];
const queueHref = (name) => '#/queues/' + encodeURIComponent(name);
const queuePath = (name) => '/v1/queues/' + encodeURIComponent(name);

/** Whether a queue hands out jobs: "no", "until resumed", or until when. */
function pausedWords(q, now) {
  if (!q.paused) return h('span', { class: 'muted', text: 'no' });
  return q.paused_until_ms === null ? h('strong', { text: 'until resumed' })
    : h('span', {}, h('strong', { text: 'until ' }), when(q.paused_until_ms, now));
}

/** The queues of the status as a table; `max` rows at most (the rest counted below it). */
function queueTable(st, max, compact) {
  const qs = st.queues || [];
  const rows = qs.slice(0, max).map((q) => h('tr', { 'data-queue': q.name },
    h('td', { class: 'id' }, h('a', { href: queueHref(q.name), text: q.name })),
    h('td', { class: 'num' }, fmtN(q.pending), compact ? null
      : h('span', { class: 'muted', text: ` (${fmtN(q.ready)} ready · ${fmtN(q.scheduled)} scheduled)` })),
    h('td', { class: 'num', text: fmtN(q.in_flight) }),
    h('td', { class: 'num', text: fmtN(q.completed) }),
    h('td', { class: 'num', text: fmtN(q.dead) }),
    h('td', { class: 'num', text: fmtN(q.cancelled) }),
    h('td', {}, pausedWords(q, st.now_ms))));
  const more = qs.length > rows.length
    ? h('p', { class: 'muted' }, `The first ${fmtN(rows.length)} of ${fmtN(qs.length)} queues by name. `,
      compact ? h('a', { href: '#/queues', text: 'All queues' }) : null)
    : null;
  return h('div', {}, table(['Queue', 'Pending', 'In flight', 'Completed', 'Dead', 'Cancelled', 'Paused'], rows,
    'No queue holds a job or is paused.'), more);
}

function mountQueues(main) {
  const head = h('p', { class: 'muted' });
  const list = h('div');
  main.append(h('h1', { text: 'Queues' }), head, list);
  return {
    update(st) {
      const n = (st.queues || []).length;
      head.textContent = `${fmtN(n)} queue${n === 1 ? '' : 's'} holding jobs or paused, by name. ` +
        'Pending is ready plus scheduled; a paused queue hands out nothing, to the pool or to leases.';
      list.replaceChildren(queueTable(st, QUEUES_MAX, false));
    },
  };
}

function mountQueue(main, name) {
  let state = 'pending';
  let after = null;      // the cursor of the page shown: null for the first
  let pageNo = 0;
  let doc = null;        // the page shown (at most QUEUE_PAGE jobs: never more than one page)
  let q = null;          // the queue's figures, from the status
  let now = Date.now();
  const msg = h('div', { 'aria-live': 'polite' });
  const gone = h('div', { 'aria-live': 'polite' });
  const badge = h('span');
  const figures = h('div', { class: 'tiles', role: 'group', 'aria-label': 'Jobs per state' });
  const say = (kind, text) => msg.replaceChildren(text ? h('p', { class: 'note ' + kind, text }) : '');
  const pauseBtn = h('button', { type: 'button', text: 'Pause', onclick: () => act('pause') });
  const resumeBtn = h('button', { type: 'button', text: 'Resume', onclick: () => act('resume') });
  const purgeBtn = h('button', { type: 'button', class: 'danger', text: 'Purge…', onclick: () => confirmPurge(true) });
  const sureText = h('span');
  const sure = h('span', { class: 'actions', hidden: true }, sureText,
    h('button', { type: 'button', class: 'danger', text: 'Yes, purge', onclick: () => { confirmPurge(false); act('purge'); } }),
    h('button', { type: 'button', text: 'No', onclick: () => { confirmPurge(false); purgeBtn.focus(); } }));
  const select = h('select', { id: 'queue-state', onchange: () => { state = select.value; first(); } },
    QUEUE_STATES.map(([v, label]) => h('option', { value: v, text: label })));
  const info = h('p', { class: 'muted', 'aria-live': 'polite' });
  const list = h('div', {}, h('p', { class: 'muted', text: 'Loading…' }));
  const firstBtn = h('button', { type: 'button', text: 'First page', onclick: () => first() });
  const nextBtn = h('button', { type: 'button', text: 'Next page',
    onclick: () => { if (doc && doc.next !== null) { after = doc.next; pageNo++; shown(); tick(); } } });
  const body = h('div', {}, figures,
    h('h2', { text: 'Jobs' }),
    h('div', { class: 'actions' }, h('label', { for: 'queue-state', text: 'State' }), select),
    info, list, h('div', { class: 'actions' }, firstBtn, nextBtn));
  main.append(h('h1', {}, 'Queue ', h('span', { class: 'mono', text: name })),
    h('div', { class: 'actions' }, badge, pauseBtn, resumeBtn, purgeBtn, sure), msg, gone, body);

  function first() { after = null; pageNo = 0; shown(); tick(); }
  /** A new page was asked for: what is shown is the old one until it comes. */
  function shown() { doc = null; list.classList.add('stale'); nextBtn.disabled = true; firstBtn.disabled = pageNo === 0; }

  function confirmPurge(open) {
    if (open) {
      const n = q ? q.pending : 0;
      sureText.textContent = `Purge queue ${name}? Its ${fmtN(n)} pending job${n === 1 ? '' : 's'} will be cancelled and never run.`;
    }
    sure.hidden = !open;
    purgeBtn.hidden = open;
    if (open) sure.querySelector('button').focus();
  }

  async function act(what) {
    try {
      const r = await api(`${queuePath(name)}/${what}`, 'POST');
      if (what === 'purge') {
        say('ok', `Purged ${name}: ${fmtN(r.cancelled)} pending job${r.cancelled === 1 ? '' : 's'} cancelled.`);
      } else {
        // The answer's state, shown at once; the focus goes to the button that undoes it.
        if (q) { q.paused = r.paused; q.paused_until_ms = r.paused_until_ms; renderFigures(); }
        (r.paused ? resumeBtn : pauseBtn).focus();
        say('ok', r.paused ? `Paused: ${name} hands out nothing ${r.paused_until_ms === null ? 'until resumed'
          : 'until ' + new Date(r.paused_until_ms).toISOString()}.` : `Resumed: ${name} hands out its jobs again.`);
      }
    } catch (e) {
      say('bad', `${what[0].toUpperCase() + what.slice(1)} refused: ${e.message}`);
    }
    tick();
  }

  function renderFigures() {
    badge.replaceChildren(q.paused ? h('span', { class: 'state paused' }, 'paused ',
      q.paused_until_ms === null ? 'until resumed' : 'until ' + clock(q.paused_until_ms))
      : h('span', { class: 'state running', text: 'running' }));
    pauseBtn.disabled = q.paused && q.paused_until_ms === null;
    resumeBtn.disabled = !q.paused;
    purgeBtn.disabled = q.pending === 0;
    if (q.pending === 0) confirmPurge(false);
    figures.replaceChildren(
      tile('pending', 'Pending', q.pending, h('span', {},
        h('span', { 'data-count': 'ready', text: fmtN(q.ready) }), ' ready · ',
        h('span', { 'data-count': 'scheduled', text: fmtN(q.scheduled) }), ' scheduled')),
      tile('in_flight', 'In flight', q.in_flight, ''),
      tile('completed', 'Completed', q.completed, ''),
      tile('dead', 'Dead', q.dead, ''),
      tile('cancelled', 'Cancelled', q.cancelled, ''),
      h('div', { class: 'tile' }, h('div', { class: 'k', text: 'Paused' }), h('div', { class: 'sub' }, pausedWords(q, now))));
    for (const o of select.options) {
      const label = QUEUE_STATES.find(([v]) => v === o.value)[1];
      o.textContent = `${label} (${fmtN(q[o.value])})`;
    }
  }

  function renderJobs() {
    const label = QUEUE_STATES.find(([v]) => v === state)[1].toLowerCase();
    const jobs = doc.jobs || [];
    list.classList.remove('stale');
    info.textContent = jobs.length === 0 ? ''
      : `Page ${pageNo + 1}: ${fmtN(jobs.length)} of the ${fmtN(q[state])} ${label} jobs, in the order they came.`;
    const rows = jobs.map((j) => h('tr', { 'data-id': j.id },
      h('td', { class: 'id' }, h('a', { href: jobHref(j.id), text: j.id })),
      h('td', {}, stateBadge(j.state)),
      h('td', { class: 'num', text: `${fmtN(j.attempt)} of ${fmtN(j.max_attempts)}` }),
      h('td', { class: 'num', text: fmtN(j.priority) }),
      h('td', { class: 'num' }, when(j.created_at_ms, now)),
      h('td', { class: 'num' }, when(j.finished_at_ms === null ? j.run_at_ms : j.finished_at_ms, now)),
      h('td', { class: 'err' }, j.last_error ? oneLine(j.last_error, ERROR_LINE) : h('span', { class: 'muted', text: '–' }))));
    list.replaceChildren(table(['Job', 'State', 'Attempts', 'Priority', 'Created', 'Runs at / finished', 'Last error'], rows,
      pageNo === 0 ? `No ${label} job in this queue.` : 'Nothing is left on this page: its jobs moved on. Go back to the first page.'));
    firstBtn.disabled = pageNo === 0;
    nextBtn.disabled = doc.next === null || doc.next === undefined;
  }

  function disappeared() {
    gone.replaceChildren(h('p', { class: 'note bad', text: doc || q
      ? `The queue ${name} is no longer on the server (since ${clock(Date.now())}): it holds no job and is not paused. Shown as last seen.`
      : `No queue named ${name} holds a job or is paused on the server.` }));
    body.classList.add('stale');
    for (const b of [pauseBtn, resumeBtn, purgeBtn, nextBtn]) b.disabled = true;
    confirmPurge(false);
  }

  return {
    async update(st) {
      now = st.now_ms;
      const fresh = (st.queues || []).find((x) => x.name === name);
      // A queue the status does not list would answer 404: not asked.
      if (!fresh) { disappeared(); return; }
      q = fresh;
      gone.replaceChildren();
      body.classList.remove('stale');
      renderFigures();
      const key = `${state}|${after}`;
      let answer;
      try {
        answer = await api(`${queuePath(name)}/jobs?state=${state}&limit=${QUEUE_PAGE}${after === null ? '' : '&after=' + after}`);
      } catch (e) {
        if (!(e instanceof HttpError) || e.status === 401 || e.status >= 500) throw e;
        if (e.status === 404) { disappeared(); return; }
        say('bad', e.message);
        return;
      }
      // The reader asked for another page meanwhile: the next poll brings it.
      if (key !== `${state}|${after}`) return;
      doc = answer;
      renderJobs();
    },
  };
}

// ---- Workers and leases ----
function mountWorkers(main) {
  const cards = h('div', { class: 'cards' });
  const head = h('p', { class: 'muted' });
  const list = h('div');
  main.append(h('h1', { text: 'Workers and leases' }), cards,
    h('h2', { text: 'Current leases' }), head, list);
  return {
    async update(st) {
      const f = st.leases;
      const fig = (k, v) => h('span', { 'data-fig': k, text: fmtN(v) });
      cards.replaceChildren(
        h('section', { class: 'card' }, h('h2', { text: 'Built-in pool' }), kv([
          ['Busy slots', st.workers === null ? '–' : h('span', {}, fig('running', st.running), ' of ', fig('workers', st.workers))],
        ]), st.workers === 0 ? h('p', { class: 'muted', text: 'No built-in worker (--workers 0): every queue is left to external ones.' }) : null),
        h('section', { class: 'card' }, h('h2', { text: 'External workers\' leases' }), f ? kv([
          ['Active', fig('active', f.active)],
          ['Requests waiting', fig('requests_waiting', f.requests_waiting)],
          ['Granted', fig('granted', f.granted)],
          ['Renewed', fig('renewed', f.renewed)],
          ['Expired', fig('expired', f.expired)],
          ['Refused as lost', fig('refused_lost', f.refused_lost)],
        ]) : h('p', { class: 'muted', text: 'Not reported.' }),
        h('p', { class: 'muted', text: 'Counted since the server started; active and waiting are now.' })));
      // No current lease: nothing to list, nothing asked.
      const doc = f && f.active === 0 ? { total: 0, leases: [] } : await api('/v1/leases');
      const ls = doc.leases || [];
      head.textContent = doc.total > ls.length
        ? `The ${fmtN(ls.length)} with the lowest ids of ${fmtN(doc.total)} current leases (the API lists at most ${fmtN(LEASES_MAX)}).`
        : doc.total === 0 ? '' : `${fmtN(doc.total)} current lease${doc.total === 1 ? '' : 's'}, oldest first.`;
      const at = (ms) => ({ class: 'num', title: new Date(ms).toISOString(), text: relative(ms, st.now_ms) });
      list.replaceChildren(table(['Lease', 'Job', 'Queue', 'Attempt', 'Worker', 'Started', 'Deadline'], ls.map((l) =>
        h('tr', { 'data-lease': l.lease_id },
          h('td', { class: 'mono', text: l.lease_id }),
          h('td', { class: 'id' }, h('a', { href: jobHref(l.id), text: l.id })),
          h('td', {}, h('a', { href: queueHref(l.queue), text: l.queue })),
          h('td', { class: 'num', text: fmtN(l.attempt) }),
          h('td', { class: 'worker' }, oneLine(l.worker, 80)),
          h('td', at(l.started_at_ms)),
          h('td', at(l.lease_until_ms)))), 'No external worker holds a lease.'));
    },
  };
}

// ---- Unknown addresses ----
function mountMissing(main) {
  main.append(h('h1', { text: 'No such page' }), h('p', {}, h('a', { href: '#/', text: 'Back to the overview' })));
  return { update() {} };
}

// ---- Start ----
function start() {
  $('#login-form').addEventListener('submit', submitToken);
  // The page shows nothing without the token: Escape does not dismiss the question.
  $('#login').addEventListener('cancel', (e) => e.preventDefault());
  $('#login').addEventListener('close', () => {
    if (!auth.asking) return;
    banner('warn', h('span', { text: 'This server needs a token. ' }),
      h('button', { type: 'button', text: 'Enter the token', onclick: () => { banner(''); $('#login').showModal(); } }));
  });
  $('#forget').addEventListener('click', forgetToken);
  $('#forget').hidden = !auth.token;
  $('#find').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = $('#find-id').value.trim();
    if (id) location.hash = jobHref(id);
  });
  document.addEventListener('keydown', (e) => {
    const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
    if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      $('#find-id').focus();
    }
  });
  window.addEventListener('hashchange', () => navigate(true));
  navigate(false);
}

start();
