// The dashboard in a real browser against a real `beaver run`: each page
// loads without a console error, counts follow the API, a dead job is
// requeued from the page and runs, a job is cancelled, a wrong token is
// refused, a server restarted under an open page is reconnected to, and a
// job purged while shown says so. Run by run.sh (`bash tests/e2e/run.sh`).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync, chmodSync } from 'node:fs';
import { Beaver, launch, openTab, scratch, shot, until, OUT } from './lib.mjs';

// What the browser itself logs (not the page's script) for answers the
// tests provoke on purpose.
const REFUSED = /net::ERR_CONNECTION_REFUSED|net::ERR_EMPTY_RESPONSE|net::ERR_CONNECTION_RESET|status of 503/;
const UNAUTHORIZED = /status of 401 \(Unauthorized\)/;
const NOT_FOUND = /status of 404 \(Not Found\)/;
// A poll in flight when the test reloads the page.
const RELOADED = /request failed: .*net::ERR_ABORTED/;

const FAST = `
[engine]
segment_bytes = 1048576
shutdown_grace_ms = 3000
[engine.queue.retry]
base_ms = 50
max_ms = 200
`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** The number a count tile or a `data-count` element shows. */
async function count(page, name) {
  const text = await page.locator(`[data-count="${name}"] .n, span[data-count="${name}"]`).first().textContent();
  return Number(text.replace(/,/g, ''));
}

async function waitCount(page, name, want) {
  await until(`${name} = ${want}`, async () => (await count(page, name)) === want, 15_000);
}

describe('overview', () => {
  let srv;
  before(async () => { srv = await Beaver.start(scratch(FAST), ['--workers', '0', '--handler', 'noop']); });
  after(async () => { await srv?.stop(); });

  test('loads, and its counts follow enqueues through the API', async () => {
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/`);
    await page.locator('main[data-ready="true"]').waitFor();
    assert.equal(await page.title(), 'Overview · beaver');
    assert.equal(await count(page, 'pending'), 0);
    await srv.enqueue(Array.from({ length: 25 }, (_, i) => ({ payload: { n: i } })));
    await srv.enqueue(Array.from({ length: 5 }, (_, i) => ({ payload: { later: i }, delay_ms: 600_000 })));
    await waitCount(page, 'pending', 30);
    assert.equal(await count(page, 'ready'), 25);
    assert.equal(await count(page, 'scheduled'), 5);
    // The ring of samples draws the jobs that came in.
    const chartIn = page.locator('.chart', { hasText: 'Jobs in' });
    await until('a line in the "Jobs in" chart', () => chartIn.locator('polyline').count());
    await page.getByText('Write-ahead log').waitFor();
    await page.getByText('Last recovery').waitFor();
    await shot(page, 'overview');
    tab.checkConsole();
    await tab.close();
  });

  test('is readable in a narrow window', async () => {
    const tab = await openTab(browser, { width: 360, height: 740 });
    const { page } = tab;
    await srv.enqueue({ queue: 'a-rather-long-queue-name-for-a-narrow-window', payload: 'narrow' });
    await page.goto(`${srv.url}/ui/`);
    await page.locator('main[data-ready="true"]').waitFor();
    await page.locator('tr[data-queue]').first().waitFor();
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(await overflow() <= 0, `the page is ${await overflow()} px wider than the window`);
    await shot(page, 'overview-narrow');
    for (const [path, ready] of [['queues', 'tr[data-queue]'], ['queues/a-rather-long-queue-name-for-a-narrow-window', 'tbody tr[data-id]'],
      ['workers', '[data-fig="active"]']]) {
      await page.goto(`${srv.url}/ui/#/${path}`);
      await page.locator(ready).first().waitFor();
      assert.ok(await overflow() <= 0, `#/${path} is ${await overflow()} px wider than the window`);
    }
    await shot(page, 'queue-narrow');
    tab.checkConsole();
    await tab.close();
  });

  test('is usable with the keyboard', async () => {
    await srv.enqueue({ id: 'kbd-1', payload: { hello: 'keyboard' } });
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/`);
    await page.locator('main[data-ready="true"]').waitFor();
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'find-id');
    await page.keyboard.type('kbd-1');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/jobs\/kbd-1$/);
    await page.getByRole('heading', { name: 'Job kbd-1' }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1');
    // Tab order reaches the nav, and Enter follows a link.
    await page.locator('#nav a[data-nav="dead"]').focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/dead$/);
    await page.getByRole('heading', { name: 'Dead jobs' }).waitFor();
    // The queues: a link in a table rebuilt at every refresh keeps the focus.
    await page.locator('#nav a[data-nav="queues"]').focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Queues' }).waitFor();
    const link = page.locator('tr[data-queue="default"] a');
    await link.focus();
    await link.evaluate((a) => { a.dataset.old = 'yes'; });
    await until('the table rebuilt', async () => (await page.locator('a[data-old]').count()) === 0);
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute('href')), '#/queues/default');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Queue default' }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Pause');
    tab.checkConsole();
    await tab.close();
  });

});

describe('queues', () => {
  let srv;
  before(async () => { srv = await Beaver.start(scratch(FAST), ['--workers', '0', '--handler', 'noop']); });
  after(async () => { await srv?.stop(); });

  /** One queue's figures through the API. */
  async function apiQueue(name) {
    return (await srv.ok('GET', '/v1/queues')).queues.find((q) => q.name === name);
  }

  test('the queues page and the overview list a queue once jobs are enqueued to it', async () => {
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/queues`);
    await page.getByRole('heading', { name: 'Queues' }).waitFor();
    assert.equal(await page.locator('#nav a[data-nav="queues"]').getAttribute('aria-current'), 'page');
    await srv.enqueue(Array.from({ length: 4 }, (_, i) => ({ queue: 'emails', payload: i })));
    await srv.enqueue([{ queue: 'emails', payload: 'later', delay_ms: 600_000 }]);
    const row = page.locator('tr[data-queue="emails"]');
    await row.waitFor();
    assert.match(await row.textContent(), /^emails5 \(4 ready · 1 scheduled\)0000no$/);
    await shot(page, 'queues');
    // The overview's table links to it.
    await page.goto(`${srv.url}/ui/`);
    await page.locator('main[data-ready="true"]').waitFor();
    await page.locator('tr[data-queue="emails"] a').click();
    await page.waitForURL(/#\/queues\/emails$/);
    await page.getByRole('heading', { name: 'Queue emails' }).waitFor();
    await waitCount(page, 'pending', 5);
    assert.equal(await count(page, 'ready'), 4);
    tab.checkConsole();
    await tab.close();
  });

  test('a queue pages through its jobs 50 at a time, by state', async () => {
    const ids = Array.from({ length: 123 }, (_, i) => `pg-${String(i).padStart(3, '0')}`);
    await srv.enqueue(ids.map((id) => ({ id, queue: 'pages', payload: { id } })));
    // Three of them cancelled: 120 pending.
    for (const id of ['pg-010', 'pg-060', 'pg-110']) await srv.ok('POST', `/v1/jobs/${id}/cancel`);
    const pending = ids.filter((id) => !['pg-010', 'pg-060', 'pg-110'].includes(id));
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/queues/pages`);
    const shown = () => page.locator('main tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    const onPage = async (want) => until(`the page to list ${want[0]}..${want.at(-1)}`,
      async () => JSON.stringify(await shown()) === JSON.stringify(want));
    assert.equal(await page.locator('#queue-state').inputValue(), 'pending');
    await onPage(pending.slice(0, 50));
    await page.getByText('Page 1: 50 of the 120 pending jobs').waitFor();
    assert.equal(await page.getByRole('button', { name: 'First page' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Next page' }).click();
    await onPage(pending.slice(50, 100));
    await page.getByText('Page 2: 50 of the 120 pending jobs').waitFor();
    await page.getByRole('button', { name: 'Next page' }).click();
    await onPage(pending.slice(100));
    await page.getByText('Page 3: 20 of the 120 pending jobs').waitFor();
    await until('Next page disabled at the end', () => page.getByRole('button', { name: 'Next page' }).isDisabled());
    await shot(page, 'queue');
    await page.getByRole('button', { name: 'First page' }).click();
    await onPage(pending.slice(0, 50));
    // Another state: only its jobs, from the first page.
    await page.locator('#queue-state').selectOption('cancelled');
    await onPage(['pg-010', 'pg-060', 'pg-110']);
    assert.deepEqual(await page.locator('main tbody .state').allTextContents(), ['cancelled', 'cancelled', 'cancelled']);
    assert.equal(await page.locator('#queue-state option:checked').textContent(), 'Cancelled (3)');
    await page.locator('#queue-state').selectOption('dead');
    await page.getByText('No dead job in this queue.').waitFor();
    // A job row links to the job's page.
    await page.locator('#queue-state').selectOption('cancelled');
    await page.getByRole('link', { name: 'pg-060' }).click();
    await page.getByRole('heading', { name: 'Job pg-060' }).waitFor();
    tab.checkConsole();
    await tab.close();
  });

  test('Pause and Resume change what the API says, and Purge cancels the pending jobs after a confirmation', async () => {
    await srv.enqueue(Array.from({ length: 40 }, (_, i) => ({ queue: 'purge-me', payload: i })));
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/queues/purge-me`);
    await waitCount(page, 'pending', 40);
    assert.equal(await page.getByRole('button', { name: 'Resume' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByText('Paused: purge-me hands out nothing until resumed.').waitFor();
    let q = await apiQueue('purge-me');
    assert.equal(q.paused, true);
    assert.equal(q.paused_until_ms, null);
    await page.locator('.state.paused', { hasText: 'paused until resumed' }).waitFor();
    await until('Pause disabled', () => page.getByRole('button', { name: 'Pause' }).isDisabled());
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByText('Resumed: purge-me hands out its jobs again.').waitFor();
    assert.equal((await apiQueue('purge-me')).paused, false);
    await page.locator('.state.running').waitFor();

    await page.getByRole('button', { name: 'Purge…' }).click();
    await page.getByText('Purge queue purge-me? Its 40 pending jobs will be cancelled and never run.').waitFor();
    // "No" leaves it as it was.
    await page.getByRole('button', { name: 'No', exact: true }).click();
    assert.equal((await apiQueue('purge-me')).pending, 40);
    await page.getByRole('button', { name: 'Purge…' }).click();
    await page.getByRole('button', { name: 'Yes, purge' }).click();
    await page.getByText('Purged purge-me: 40 pending jobs cancelled.').waitFor();
    q = await apiQueue('purge-me');
    assert.equal(q.pending, 0);
    assert.equal(q.cancelled, 40);
    await waitCount(page, 'cancelled', 40);
    assert.equal(await page.getByRole('button', { name: 'Purge…' }).isDisabled(), true);
    tab.checkConsole();
    await tab.close();
  });

  test('a queue that is not on the server, or leaves it while shown, says so', async () => {
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/queues/no-such-queue`);
    await page.getByText('No queue named no-such-queue holds a job or is paused').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Pause' }).isDisabled(), true);
    // Its only job cancelled, then purged by retention: the queue is gone.
    const short = await Beaver.start(scratch(`${FAST}\n[engine.queue.retention]\nfinished_age_ms = 1000\n`),
      ['--workers', '0', '--handler', 'noop']);
    try {
      await short.enqueue({ id: 'fleeting-1', queue: 'fleeting', payload: 1 });
      await page.goto(`${short.url}/ui/#/queues/fleeting`);
      await page.locator('tr[data-id="fleeting-1"]').waitFor();
      await short.ok('POST', '/v1/jobs/fleeting-1/cancel');
      await page.getByText('The queue fleeting is no longer on the server').waitFor({ timeout: 20_000 });
      // The last view stays, dimmed, with the buttons off.
      assert.equal(await page.locator('.stale [data-count="pending"]').count(), 1);
      assert.equal(await page.getByRole('button', { name: 'Purge…' }).isDisabled(), true);
      tab.checkConsole();
    } finally {
      await short.stop();
    }
    await tab.close();
  });
});

describe('workers and leases', () => {
  let srv;
  before(async () => { srv = await Beaver.start(scratch(FAST), ['--workers', '0', '--handler', 'noop']); });
  after(async () => { await srv?.stop(); });

  test('a lease taken through the API is listed with its worker, and goes once completed', async () => {
    await srv.enqueue({ id: 'remote-1', queue: 'remote', payload: { hello: 'worker' } });
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/workers`);
    await page.getByRole('heading', { name: 'Workers and leases' }).waitFor();
    await page.getByText('No external worker holds a lease.').waitFor();
    assert.equal(await page.locator('[data-fig="workers"]').textContent(), '0');
    const got = await srv.ok('POST', '/v1/leases', { queue: 'remote', worker: 'e2e-host/4242', wait_ms: 0 });
    assert.equal(got.leases.length, 1);
    const lease = got.leases[0].lease_id;
    const row = page.locator(`tr[data-lease="${lease}"]`);
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    assert.deepEqual(cells.slice(0, 5), [lease, 'remote-1', 'remote', '1', 'e2e-host/4242']);
    assert.match(cells[5], /ago$|^now$/);
    assert.match(cells[6], /^in /);
    await page.getByText('1 current lease, oldest first.').waitFor();
    assert.equal(await page.locator('[data-fig="granted"]').textContent(), '1');
    assert.equal(await page.locator('[data-fig="active"]').textContent(), '1');
    await shot(page, 'workers');
    await srv.ok('POST', `/v1/leases/${lease}/complete`);
    await row.waitFor({ state: 'detached' });
    await page.getByText('No external worker holds a lease.').waitFor();
    await until('active 0', async () => (await page.locator('[data-fig="active"]').textContent()) === '0');
    assert.equal((await srv.job('remote-1')).body.state, 'completed');
    tab.checkConsole();
    await tab.close();
  });
});

describe('a job', () => {
  let srv;
  before(async () => { srv = await Beaver.start(scratch(FAST), ['--workers', '0', '--handler', 'noop']); });
  after(async () => { await srv?.stop(); });

  test('shows every field, a long payload cut with a way to see all, and can be cancelled', async () => {
    const long = 'x'.repeat(12_000);
    await srv.enqueue({ id: 'big-1', payload: { nested: { n: 1, list: [1, 2] }, long }, priority: 7, max_attempts: 4 });
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/jobs/big-1`);
    const fields = page.locator('dl.kv');
    await fields.waitFor();
    for (const label of ['Id', 'Queue', 'State', 'Priority', 'Attempt', 'Timeout', 'Created', 'Runs at',
      'Lease deadline', 'Finished', 'Last error', 'Payload', 'Schema version']) {
      await fields.locator('dt', { hasText: new RegExp(`^${label}$`) }).waitFor();
    }
    const dd = (label) => fields.locator(`dt:text-is("${label}") + dd`);
    assert.equal(await dd('Priority').textContent(), '7');
    assert.equal(await dd('Attempt').textContent(), '0 of 4');
    assert.equal(await dd('Queue').textContent(), 'default');
    const payload = page.locator('pre[aria-label="Payload"]');
    const cut = await payload.textContent();
    assert.match(cut, /\{\n {2}"nested": \{\n {4}"n": 1,/, 'the payload is pretty-printed');
    assert.ok(cut.length < 5_000, `the payload is cut (${cut.length} characters shown)`);
    await page.getByRole('button', { name: /Show all/ }).click();
    assert.ok((await payload.textContent()).includes(long), 'Show all shows the whole payload');
    // It stays open across live refreshes.
    await page.waitForTimeout(2_500);
    assert.ok((await payload.textContent()).includes(long));
    await page.getByRole('button', { name: 'Show less' }).click();
    await shot(page, 'job');

    assert.equal(await page.getByRole('button', { name: 'Requeue' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Cancel…' }).click();
    await page.getByRole('button', { name: 'Yes, cancel it' }).click();
    await page.getByText('Cancelled: it will not run.').waitFor();
    await until('the state badge to say cancelled', async () => (await dd('State').textContent()) === 'cancelled');
    assert.equal((await srv.job('big-1')).body.state, 'cancelled');
    assert.equal(await page.getByRole('button', { name: 'Cancel…' }).isDisabled(), true);
    tab.checkConsole();
    await tab.close();
  });

  test('an unknown id, and a job purged while shown, say so', async () => {
    const dir = scratch(`${FAST}\n[engine.queue.retention]\nfinished_age_ms = 1000\n`);
    const short = await Beaver.start(dir, ['--workers', '0', '--handler', 'noop']);
    try {
      await short.enqueue({ id: 'purge-me', payload: { bye: true } });
      const tab = await openTab(browser);
      const { page } = tab;
      await page.goto(`${short.url}/ui/#/jobs/never-enqueued`);
      await page.getByText('No job with this id is on the server').waitFor();
      await page.goto(`${short.url}/ui/#/jobs/purge-me`);
      await page.locator('dl.kv').waitFor();
      await short.ok('POST', '/v1/jobs/purge-me/cancel');
      await page.getByText('This job is no longer on the server').waitFor({ timeout: 20_000 });
      // What was last seen stays, marked as such, and the buttons are off.
      await page.locator('.stale dl.kv dd', { hasText: 'purge-me' }).first().waitFor();
      await page.getByText('Shown as last seen at').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Cancel…' }).isDisabled(), true);
      await shot(page, 'job-purged');
      tab.checkConsole([NOT_FOUND]);
      await tab.close();
    } finally {
      await short.stop();
    }
  });
});

describe('dead jobs', () => {
  let srv;
  let marks;
  before(async () => {
    const dir = scratch(FAST);
    // Each job fails its first attempt (with a long error) and succeeds after.
    marks = join(dir, 'marks');
    const script = join(dir, 'handle.sh');
    writeFileSync(script, `#!/bin/sh
cat >/dev/null
mkdir -p '${marks}'
if [ -e '${marks}'/"$BEAVER_JOB_ID" ]; then exit 0; fi
touch '${marks}'/"$BEAVER_JOB_ID"
i=0; while [ $i -lt 40 ]; do echo "line $i of a long failure of $BEAVER_JOB_ID: the upstream answered 502 Bad Gateway"; i=$((i+1)); done >&2
exit 1
`);
    chmodSync(script, 0o755);
    srv = await Beaver.start(dir, ['--workers', '2', '--exec', script]);
  });
  after(async () => { await srv?.stop(); });

  test('are listed newest first with their errors, and a requeue from the page runs the job', async () => {
    for (const id of ['dead-1', 'dead-2', 'dead-3']) {
      await srv.enqueue({ id, payload: { id }, max_attempts: 1 });
      await until(`${id} dead`, async () => (await srv.job(id)).body.state === 'dead');
    }
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/#/dead`);
    await page.getByText('3 dead jobs, newest first.').waitFor();
    const ids = await page.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    const api = (await srv.ok('GET', '/v1/dead')).jobs.map((j) => j.id);
    assert.deepEqual(ids, api);
    assert.deepEqual(ids, ['dead-3', 'dead-2', 'dead-1']);
    // A long error is cut, with a way to see all of it.
    const row = page.locator('tr[data-id="dead-2"]');
    await row.getByRole('button', { name: /Show all/ }).click();
    const full = await row.locator('pre.clip').textContent();
    assert.match(full, /line 39 of a long failure of dead-2/);
    await shot(page, 'dead');

    await row.getByRole('button', { name: 'Requeue dead-2' }).click();
    await page.getByText('Requeue dead-2: 1 job will run again with fresh attempts.').waitFor();
    await page.locator('tr[data-id="dead-2"]').waitFor({ state: 'detached' });
    await page.getByText('2 dead jobs, newest first.').waitFor();
    // It ran, and succeeded: the job page says so.
    await page.goto(`${srv.url}/ui/#/jobs/dead-2`);
    await until('dead-2 completed on its page', async () =>
      (await page.locator('dt:text-is("State") + dd').textContent()) === 'completed', 15_000);
    assert.equal((await srv.job('dead-2')).body.attempt, 1);

    // Requeue all, after a confirmation.
    await page.goto(`${srv.url}/ui/#/dead`);
    await page.getByRole('button', { name: 'Requeue all…' }).click();
    await page.getByRole('button', { name: 'Yes, requeue all' }).click();
    await page.getByText('Requeue all: 2 jobs will run again with fresh attempts.').waitFor();
    await page.getByText('No dead job.').waitFor();
    await until('every job completed', async () => {
      const st = await srv.status();
      return st.jobs.completed === 3 && st.jobs.dead === 0;
    });
    tab.checkConsole();
    await tab.close();
  });
});

describe('a server with a token', () => {
  let srv;
  before(async () => {
    srv = await Beaver.start(scratch(FAST), ['--workers', '0', '--handler', 'noop', '--token', 'e2e-s3cret']);
    srv.token = 'e2e-s3cret';
  });
  after(async () => { await srv?.stop(); });

  test('asks for it, refuses a wrong one, and keeps the right one for the tab only', async () => {
    await srv.enqueue([{ payload: 1 }, { payload: 2 }]);
    // The page itself loads without the token; the API does not answer without it.
    assert.equal((await fetch(`${srv.url}/ui/`)).status, 200);
    assert.equal((await fetch(`${srv.url}/v1/status`)).status, 401);
    const tab = await openTab(browser);
    const { page } = tab;
    await page.goto(`${srv.url}/ui/`);
    const dialog = page.getByRole('dialog', { name: 'This server needs a token' });
    await dialog.waitFor();
    await page.locator('#login-token').fill('not-the-token');
    await page.keyboard.press('Enter');
    await dialog.getByText('Refused: the token sent is not this server').waitFor();
    assert.ok(await dialog.isVisible(), 'still asking after a wrong token');
    await shot(page, 'token');
    await page.locator('#login-token').fill('e2e-s3cret');
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'hidden' });
    await waitCount(page, 'pending', 2);
    // Kept for this tab: a reload does not ask again ...
    await page.reload();
    await page.locator('main[data-ready="true"]').waitFor();
    assert.equal(await dialog.isVisible(), false);
    // ... but another tab (its own session storage) does.
    const other = await openTab(browser);
    await other.page.goto(`${srv.url}/ui/`);
    await other.page.getByRole('dialog', { name: 'This server needs a token' }).waitFor();
    tab.checkConsole([UNAUTHORIZED, RELOADED]);
    other.checkConsole([UNAUTHORIZED]);
    await other.close();
    await tab.close();
  });
});

describe('a server restarted under an open page', () => {
  test('is reconnected to, and the page says the server restarted', async () => {
    const dir = scratch(FAST);
    let srv = await Beaver.start(dir, ['--workers', '0', '--handler', 'noop']);
    try {
      await srv.enqueue(Array.from({ length: 7 }, (_, i) => ({ payload: i })));
      const tab = await openTab(browser);
      const { page } = tab;
      await page.goto(`${srv.url}/ui/`);
      await waitCount(page, 'pending', 7);
      const port = srv.port;
      const stopped = await srv.stop();
      assert.equal(stopped.code, 0, 'a graceful stop');
      await page.locator('.banner.down').getByText(/The server is (not answering|unavailable)/).waitFor();
      await shot(page, 'server-down');
      srv = await Beaver.start(dir, ['--workers', '0', '--handler', 'noop'], port);
      // The first retry comes within the backoff (2, 4, 8 ... s).
      await page.locator('.banner.back').getByText('The server restarted: it recovered 7 jobs').waitFor({ timeout: 40_000 });
      await waitCount(page, 'pending', 7);
      assert.equal(await page.locator('main.stale').count(), 0);
      tab.checkConsole([REFUSED]);
      await tab.close();
    } finally {
      await srv.stop();
    }
  });
});

after(() => { console.log(`screenshots in ${OUT}`); });
