// End-to-end tests of change detection and scheduling (issue 4): the real `hookd serve` on the
// test database, against the real json-server@0.17.4 as the source (behind a counting proxy,
// tests/fixtures/counting_source.mjs), with records changed through json-server's own API. The
// change log, the snapshot and the runs are read from PostgreSQL with `psql`.
//
// Every test starts its own daemon(s) (the e2e daemons share one database, and every daemon runs
// every due webhook in it), removes its connections (and so its webhooks, feeds and runs) and
// stops its daemons at the end. Intervals are a few seconds (HOOKD_MIN_INTERVAL_SECONDS=1).
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { randomToken, sleep, startDaemon, startStub, testDatabaseUrl } from './daemon.mjs';
import { contact, contacts, startCountingSource } from '../fixtures/counting_source.mjs';

const execFileP = promisify(execFile);
const TEST_TIMEOUT = 60_000;
const INTERVAL_3S = 0.05; // minutes

// ---- helpers -----------------------------------------------------------------------------------

/** Runs one SQL statement on the test database; rows of tab-separated columns. */
async function sql(query) {
  const { stdout } = await execFileP('psql', [testDatabaseUrl(), '-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', query], {
    maxBuffer: 64 * 1024 * 1024,
  });
  if (stdout === '') return [];
  return stdout
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => l.split('\t'));
}
const q = (s) => `'${String(s).replaceAll("'", "''")}'`;
const ms = (col) => `(extract(epoch from ${col}) * 1000)::bigint`;

/** Polls `fn` until it returns a truthy value; throws with `what` (and `detail()`) on timeout. */
async function waitFor(fn, { timeoutMs = 20_000, intervalMs = 100, what = 'condition', detail } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      const extra = detail ? `\n${await detail()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await sleep(intervalMs);
  }
}

let stub; // the webhook receiver (hook_url) of every webhook here
const cleanups = [];
const connectionIds = [];

before(async () => {
  stub = await startStub();
});
after(async () => {
  if (stub) await stub.close();
});
afterEach(async () => {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch {
      /* best effort */
    }
  }
  // Deleting a connection deletes its webhooks, feeds, snapshots, change logs and runs.
  const ids = connectionIds.splice(0);
  if (ids.length) await sql(`delete from connections where id in (${ids.map(q).join(', ')})`).catch(() => {});
});

async function daemon(env = {}, options = {}) {
  const d = await startDaemon({
    ...options,
    env: { HOOKD_MIN_INTERVAL_SECONDS: '1', HOOKD_LOG_LEVEL: 'info', ...env },
  });
  cleanups.push(() => d.stop('SIGKILL'));
  return d;
}

async function source(collections) {
  const src = await startCountingSource(collections);
  cleanups.push(() => src.close());
  return src;
}

async function createConnection(d, apiUrl) {
  const r = await d.request('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: apiUrl } } });
  assert.equal(r.status, 200, `POST /unified/connection -> ${r.status} ${r.text}`);
  connectionIds.push(r.json.id);
  return r.json.id;
}

async function createWebhook(d, connectionId, event, extra = {}) {
  const body = {
    connection_id: connectionId,
    hook_url: `${stub.url}/hook`,
    object_type: 'crm_contact',
    event,
    interval: INTERVAL_3S,
    ...extra,
  };
  const r = await d.request('POST', '/unified/webhook', { body });
  assert.equal(r.status, 200, `POST /unified/webhook ${JSON.stringify(body)} -> ${r.status} ${r.text}`);
  return r.json;
}

async function trigger(d, webhookId) {
  const r = await d.request('PUT', `/unified/webhook/${webhookId}/trigger`);
  assert.equal(r.status, 200, `PUT /unified/webhook/${webhookId}/trigger -> ${r.status} ${r.text}`);
  return Date.now();
}

async function pause(d, webhookIds) {
  for (const id of webhookIds) {
    const r = await d.request('PATCH', `/unified/webhook/${id}`, { body: { is_paused: true } });
    assert.equal(r.status, 200, `pausing ${id}: ${r.status} ${r.text}`);
  }
}

async function feedOf(webhookId) {
  const rows = await sql(`select feed_id from webhooks where id = ${q(webhookId)}`);
  assert.ok(rows.length && rows[0][0], `webhook ${webhookId} has a feed`);
  return Number(rows[0][0]);
}

async function feedState(feedId) {
  const [r] = await sql(
    `select baseline_done, polls, pending_deletes::text, record_count, coalesce(poll_owner, ''), ` +
      `(select count(*) from feed_records where feed_id = f.id) from feeds f where id = ${feedId}`,
  );
  return {
    baselineDone: r[0] === 't',
    polls: Number(r[1]),
    pendingDeletes: JSON.parse(r[2]),
    recordCount: Number(r[3]),
    pollOwner: r[4],
    snapshotSize: Number(r[5]),
  };
}

async function changeLog(feedId) {
  const rows = await sql(`select seq, record_id, kind, record from change_log where feed_id = ${feedId} order by seq`);
  return rows.map(([seq, id, kind, record]) => ({ seq: Number(seq), id, kind, record: JSON.parse(record) }));
}

/** Runs of these webhooks, oldest slot first. */
async function runs(webhookIds) {
  if (!webhookIds.length) return [];
  const rows = await sql(
    `select webhook_id, ${ms('scheduled_for')}, ${ms('started_at')}, ${ms('finished_at')}, status, polled, full_scan, ` +
      `owner, requests, changes, translate(error, E'\\n\\t\\r', '   ') from webhook_runs where webhook_id in (${webhookIds.map(q).join(', ')}) ` +
      `order by scheduled_for, started_at`,
  );
  return rows.map((r) => ({
    webhookId: r[0],
    scheduled: Number(r[1]),
    started: Number(r[2]),
    finished: Number(r[3]),
    status: r[4],
    polled: r[5] === 't',
    fullScan: r[6] === 't',
    owner: r[7],
    requests: Number(r[8]),
    changes: Number(r[9]),
    error: r[10],
  }));
}

function describeRuns(rs) {
  const t0 = rs.length ? rs[0].scheduled : 0;
  return rs
    .map((r) => `${r.webhookId.slice(0, 8)} slot+${r.scheduled - t0} start+${r.started - t0} end+${r.finished - t0} ${r.status} polled=${r.polled} owner=${r.owner} ${r.error}`)
    .join('\n');
}

/** Each (webhook, slot) ran exactly once, and the runs of one webhook never overlap. */
function assertOncePerSlot(all, ids, detail) {
  const perSlot = new Map();
  for (const r of all) {
    const k = `${r.webhookId}@${r.scheduled}`;
    perSlot.set(k, (perSlot.get(k) ?? 0) + 1);
  }
  for (const [k, n] of perSlot) assert.equal(n, 1, `${k} ran ${n} times\n${detail}`);
  for (const id of ids) {
    const rs = all.filter((r) => r.webhookId === id).sort((x, y) => x.started - y.started);
    for (let i = 1; i < rs.length; i++) assert.ok(rs[i].started >= rs[i - 1].finished, `overlapping runs of ${id}\n${detail}`);
  }
}

/** Waits until `webhookIds` have a polled run with `status` that started at or after `sinceMs`. */
async function waitForPolledRun(webhookIds, sinceMs, { status = 'ok', timeoutMs = 20_000 } = {}) {
  return waitFor(
    async () => (await runs(webhookIds)).find((r) => r.polled && r.status === status && r.started >= sinceMs),
    { timeoutMs, what: `a polled ${status} run after ${new Date(sinceMs).toISOString()}`, detail: async () => describeRuns(await runs(webhookIds)) },
  );
}

/** Waits until the feed's baseline is done. */
async function waitForBaseline(feedId, timeoutMs = 20_000) {
  await waitFor(async () => (await feedState(feedId)).baselineDone, { timeoutMs, what: `the baseline of feed ${feedId}` });
}

// ---- shared polls ------------------------------------------------------------------------------

describe('feeds: one poll per due time', () => {
  test('three webhooks (created, updated, deleted) on one connection and object cause one source scan per due time, not three', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(250) });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const hooks = [];
    for (const event of ['created', 'updated', 'deleted']) hooks.push(await createWebhook(d, conn, event));
    const ids = hooks.map((h) => h.id);
    const feed = await feedOf(ids[0]);
    for (const id of ids.slice(1)) assert.equal(await feedOf(id), feed, 'the three webhooks share one feed');

    // About four due times at a 3 s interval.
    await waitFor(async () => (await runs([ids[0]])).length >= 4, { timeoutMs: 25_000, what: 'four runs of the first webhook' });
    await pause(d, ids);
    await sleep(1500); // runs in flight finish
    const all = await runs(ids);
    const scans = src.scans('/contacts');
    const polled = all.filter((r) => r.polled);

    // Group the runs by due time: the three webhooks' slots are milliseconds apart.
    const clusters = [];
    for (const r of all) {
      const c = clusters.find((x) => Math.abs(x.slot - r.scheduled) < 1000);
      if (c) c.runs.push(r);
      else clusters.push({ slot: r.scheduled, runs: [r] });
    }
    const detail = `${describeRuns(all)}\nscans: ${scans.length}, list requests: ${src.listRequests('/contacts').length}`;
    assert.ok(clusters.length >= 4, `at least four due times\n${detail}`);
    for (const c of clusters) {
      const hooksInCluster = new Set(c.runs.map((r) => r.webhookId));
      assert.equal(c.runs.length, hooksInCluster.size, `each webhook runs once per due time\n${detail}`);
      assert.ok(c.runs.filter((r) => r.polled).length <= 1, `at most one scan per due time\n${detail}`);
      if (hooksInCluster.size === 3) assert.equal(c.runs.filter((r) => r.polled).length, 1, `exactly one scan per due time\n${detail}`);
    }
    assert.equal(scans.length, polled.length, `every source scan is one polled run\n${detail}`);
    // 250 records at 100 a page: three requests per (full) scan.
    assert.equal(src.listRequests('/contacts').length, 3 * scans.length, detail);
    assert.ok(all.every((r) => r.status === 'ok'), detail);
  });
});

// ---- the change log ----------------------------------------------------------------------------

describe('change detection against json-server', () => {
  test('the baseline emits nothing; created, updated and deleted records are logged exactly once with their kind', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(30) });
    const d = await daemon({ HOOKD_FEED_FRESHNESS_SECONDS: '0' });
    const conn = await createConnection(d, src.url);
    const created = await createWebhook(d, conn, 'created');
    const updated = await createWebhook(d, conn, 'updated');
    const deleted = await createWebhook(d, conn, 'deleted');
    const ids = [created.id, updated.id, deleted.id];
    const feed = await feedOf(created.id);

    await waitForBaseline(feed);
    let st = await feedState(feed);
    assert.equal(st.snapshotSize, 30, 'the baseline filled the snapshot');
    // Unchanged polls after the baseline: still nothing.
    const afterBaseline = Date.now();
    await waitForPolledRun(ids, afterBaseline);
    await waitForPolledRun(ids, Date.now());
    assert.deepEqual(await changeLog(feed), [], 'the baseline and unchanged polls log nothing');

    // Change the source through json-server's own API.
    const original7 = await src.get('contacts', '7');
    await src.create('contacts', contact(1001, { name: 'New Person', updated_at: new Date().toISOString() }));
    await src.patch('contacts', '5', { name: 'Changed Name', updated_at: new Date().toISOString() });
    await src.remove('contacts', '7');
    const changedAt = Date.now();
    await trigger(d, created.id);
    await waitForPolledRun(ids, changedAt);
    await waitFor(async () => (await changeLog(feed)).length >= 3, { what: 'three log entries', timeoutMs: 10_000 });
    const log = await changeLog(feed);
    const described = JSON.stringify(log.map((e) => [e.seq, e.id, e.kind]));
    assert.equal(log.length, 3, `exactly three log entries: ${described}`);
    assert.deepEqual(Object.fromEntries(log.map((e) => [e.id, e.kind])), { 1001: 'created', 5: 'updated', 7: 'deleted' }, described);
    assert.deepEqual(log.map((e) => e.seq), [1, 2, 3], 'consecutive sequence numbers');
    assert.equal(log.find((e) => e.id === '5').record.name, 'Changed Name', 'an update carries the new state');
    assert.equal(log.find((e) => e.id === '1001').record.name, 'New Person');
    assert.equal(log.find((e) => e.id === '7').record.name, original7.name, 'a delete carries the last known state');
    assert.deepEqual(log.find((e) => e.id === '5').record.raw?.name, 'Changed Name', 'records keep raw');

    // Later polls of the unchanged source add nothing.
    await waitForPolledRun(ids, Date.now());
    await waitForPolledRun(ids, Date.now());
    assert.equal((await changeLog(feed)).length, 3, 'no duplicates in later polls');
    st = await feedState(feed);
    assert.equal(st.snapshotSize, 30, '30 - 1 deleted + 1 created');

    // The runs and checked_at are visible through the API, newest first.
    const g = await d.request('GET', `/unified/webhook/${created.id}`);
    assert.equal(g.status, 200);
    assert.ok(Array.isArray(g.json.runs) && g.json.runs.length >= 3 && g.json.runs.length <= 10, `runs: ${g.text}`);
    for (const r of g.json.runs) assert.equal(typeof r, 'string');
    const times = g.json.runs.map((r) => Date.parse(r.split(' ')[0]));
    assert.ok(times.every((t) => Number.isFinite(t)), `each run starts with its time: ${g.json.runs[0]}`);
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], `runs are newest first: ${g.json.runs}`);
    assert.ok(Date.parse(g.json.checked_at) >= changedAt, `checked_at ${g.json.checked_at} is recent`);
    assert.ok(g.json.is_healthy, 'healthy');
  });

  test('trigger makes the webhook poll within about a second (LISTEN/NOTIFY), not at the next interval', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(20) });
    // A 60-minute interval: any poll within seconds comes from a trigger (or the first, jittered slot).
    const d = await daemon({ HOOKD_FEED_FRESHNESS_SECONDS: '0' });
    const conn = await createConnection(d, src.url);
    const hook = await createWebhook(d, conn, 'created', { interval: 60 });
    const feed = await feedOf(hook.id);
    const first = await trigger(d, hook.id);
    const run1 = await waitForPolledRun([hook.id], first - 50, { timeoutMs: 5_000 });
    await waitForBaseline(feed, 2_000);
    // The next slot is an hour away now: a poll within a second is the trigger's.
    await sleep(500);
    await src.create('contacts', contact(500, { updated_at: new Date().toISOString() }));
    const second = await trigger(d, hook.id);
    const run2 = await waitForPolledRun([hook.id], second - 50, { timeoutMs: 5_000 });
    assert.ok(run2.started - second < 1000, `the triggered run started ${run2.started - second} ms after the trigger`);
    await waitFor(async () => (await changeLog(feed)).some((e) => e.id === '500' && e.kind === 'created'), {
      timeoutMs: 3_000,
      what: 'the created record in the change log',
    });
    assert.ok(run1.started - first < 2000, `the first triggered run started ${run1.started - first} ms after the trigger`);
  });

  test('a trigger shortly after a poll reads the source again (default freshness window)', { timeout: TEST_TIMEOUT }, async () => {
    // The freshness window lets webhooks of one feed that are due together share a poll; a
    // trigger asks for a read now: a record created just before it must be seen.
    const src = await source({ contacts: contacts(20) });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const hook = await createWebhook(d, conn, 'created', { interval: 60 });
    const feed = await feedOf(hook.id);
    await sql(`update webhooks set next_run_at = now(), next_slot_at = now() where id = ${q(hook.id)}`);
    await waitForBaseline(feed, 10_000);
    await sleep(1000);
    await src.create('contacts', contact(700, { updated_at: new Date().toISOString() }));
    const triggered = await trigger(d, hook.id);
    await waitFor(async () => (await changeLog(feed)).some((e) => e.id === '700' && e.kind === 'created'), {
      timeoutMs: 5_000,
      what: 'the record created just before the trigger in the change log',
      detail: async () => describeRuns(await runs([hook.id])),
    });
    const run = (await runs([hook.id])).find((r) => r.started >= triggered - 50);
    assert.ok(run?.polled, 'the triggered run polled');
  });

  test('a trigger that arrives while the webhook is running is not lost', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(250) });
    const d = await daemon({ HOOKD_FEED_FRESHNESS_SECONDS: '0' });
    const conn = await createConnection(d, src.url);
    const hook = await createWebhook(d, conn, 'updated', { interval: 60 });
    const feed = await feedOf(hook.id);
    // Start the first run (the baseline) now, slowly: each page takes 1.5 s.
    src.delayMs = 1500;
    await sql(`update webhooks set next_run_at = now(), next_slot_at = now() where id = ${q(hook.id)}`);
    const page1 = await src.waitForRequest((r) => r.path === '/contacts' && r.query.get('_page') === '1', 10_000);
    await waitFor(() => page1.status !== null, { what: 'page 1 answered', timeoutMs: 5_000 });
    // Page 1 has been read: change a record on it and trigger while the run goes on.
    const onPage1 = (await src.list('contacts', '_page=1&_limit=100&_sort=id'))[0].id;
    await src.patch('contacts', onPage1, { title: 'Changed while running', updated_at: new Date().toISOString() });
    const triggeredAt = await trigger(d, hook.id);
    const running = await sql(`select coalesce(lease_owner, '') from webhooks where id = ${q(hook.id)}`);
    assert.notEqual(running[0][0], '', 'the first run was still in flight at the trigger');
    src.delayMs = 0;
    // After the run in flight, the trigger's run reads the change.
    await waitFor(async () => (await changeLog(feed)).some((e) => e.id === onPage1 && e.kind === 'updated'), {
      timeoutMs: 15_000,
      what: `the update of ${onPage1} made before the trigger`,
      detail: async () => describeRuns(await runs([hook.id])),
    });
    const rs = await runs([hook.id]);
    assert.ok(rs.some((r) => r.polled && r.started >= triggeredAt), describeRuns(rs));
  });
});

// ---- sources that fail -------------------------------------------------------------------------

describe('failing sources', () => {
  test('an unreachable source makes runs incomplete and the webhooks unhealthy, until it comes back', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(20) });
    await src.down(); // the connection's api_url is a closed port
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const created = await createWebhook(d, conn, 'created');
    const deleted = await createWebhook(d, conn, 'deleted');
    const ids = [created.id, deleted.id];
    const feed = await feedOf(created.id);
    const failed = await waitForPolledRun(ids, 0, { status: 'incomplete', timeoutMs: 20_000 });
    assert.ok(failed.error.length > 0, 'an incomplete run says why');
    await waitFor(async () => {
      const g = await d.request('GET', `/unified/webhook/${created.id}`);
      return g.json?.is_healthy === false;
    }, { what: 'is_healthy false', timeoutMs: 5_000 });
    // Both webhooks have run during the outage.
    await waitFor(async () => new Set((await runs(ids)).map((r) => r.webhookId)).size === 2, { what: 'runs of both webhooks' });
    for (const id of ids) {
      const g = await d.request('GET', `/unified/webhook/${id}`);
      assert.equal(g.json.is_healthy, false, `webhook ${id} is unhealthy while its source is unreachable`);
    }
    assert.equal((await feedState(feed)).baselineDone, false, 'no baseline from a failed scan');
    for (const r of (await runs(ids)).filter((x) => x.polled)) assert.equal(r.status, 'incomplete', describeRuns(await runs(ids)));

    await src.up();
    const back = Date.now();
    await waitForPolledRun(ids, back, { timeoutMs: 20_000 });
    await waitFor(async () => {
      const g = await d.request('GET', `/unified/webhook/${created.id}`);
      return g.json?.is_healthy === true;
    }, { what: 'is_healthy true again', timeoutMs: 5_000 });
    const g = await d.request('GET', `/unified/webhook/${deleted.id}`);
    assert.equal(g.json.is_healthy, true);
    assert.deepEqual(await changeLog(feed), [], 'nothing was deleted or created by the outage');
  });

  test('a run that shares a failed poll of its feed is not recorded as ok', { timeout: TEST_TIMEOUT }, async () => {
    // Two webhooks on one feed: one scans, the other shares that scan. While the source is
    // unreachable neither run may read "ok" (in webhook_runs and in the webhook's runs).
    const src = await source({ contacts: contacts(20) });
    await src.down();
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const ids = [(await createWebhook(d, conn, 'created')).id, (await createWebhook(d, conn, 'updated')).id];
    await waitFor(async () => {
      const rs = await runs(ids);
      return new Set(rs.map((r) => r.webhookId)).size === 2 && rs.some((r) => r.polled);
    }, { what: 'runs of both webhooks', timeoutMs: 20_000 });
    await sleep(500);
    const outage = await runs(ids);
    assert.deepEqual(
      outage.filter((r) => r.status === 'ok').map((r) => `${r.webhookId} polled=${r.polled}`),
      [],
      `no run reads "ok" while the source is unreachable\n${describeRuns(outage)}`,
    );
    for (const id of ids) {
      const g = await d.request('GET', `/unified/webhook/${id}`);
      assert.ok(g.json.runs.length && g.json.runs.every((r) => !/^\S+ ok:/.test(r)), `webhook ${id} runs: ${JSON.stringify(g.json.runs)}`);
    }
  });

  test('a poll that ends in an error releases its feed: the other webhooks of the feed keep running', { timeout: TEST_TIMEOUT }, async (t) => {
    // A record id the database cannot store (it contains a NUL character) makes the poll fail
    // with a database error, not with a source error. Whatever the error, the run must give the
    // feed's poll lease back, or the feed's other webhooks wait for it for ever.
    const records = contacts(5);
    records.push(contact(6, { id: 'bad\u0000id' }));
    const src = await source({ contacts: records });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const ids = [(await createWebhook(d, conn, 'created')).id, (await createWebhook(d, conn, 'updated')).id];
    const feed = await feedOf(ids[0]);
    await waitFor(async () => {
      const rs = await runs(ids);
      return ids.every((id) => rs.filter((r) => r.webhookId === id).length >= 2);
    }, {
      what: 'two recorded runs of each webhook of the feed',
      timeoutMs: 15_000,
      detail: async () => `${describeRuns(await runs(ids))}\n` +
        `${JSON.stringify(await sql(`select id, coalesce(lease_owner, '-'), lease_expires_at from webhooks where id in (${ids.map(q).join(', ')})`))}\n` +
        `feed poll lease: ${(await feedState(feed)).pollOwner}`,
    });
    await pause(d, ids);
    await sleep(1500);
    assert.equal((await feedState(feed)).pollOwner, '', 'no run holds the feed poll lease once the runs are over');
    t.diagnostic(describeRuns(await runs(ids)).split('\n').slice(0, 4).join('\n'));
  });

  test('a source that fails in the middle of a scan (HTTP 500 for page 2, a reset on page 3) never causes a delete', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(250) });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const hooks = [await createWebhook(d, conn, 'deleted'), await createWebhook(d, conn, 'created')];
    const ids = hooks.map((h) => h.id);
    const feed = await feedOf(ids[0]);
    await waitForBaseline(feed);
    assert.equal((await feedState(feed)).snapshotSize, 250);

    src.fault = (r) => (r.path === '/contacts' && r.query.get('_page') === '2' ? 500 : null);
    let since = Date.now();
    await waitForPolledRun(ids, since, { status: 'incomplete' });
    await waitForPolledRun(ids, Date.now(), { status: 'incomplete' });
    src.fault = (r) => (r.path === '/contacts' && r.query.get('_page') === '3' ? 'reset' : null);
    since = Date.now();
    await waitForPolledRun(ids, since, { status: 'incomplete' });

    const log = await changeLog(feed);
    assert.deepEqual(log.filter((e) => e.kind === 'deleted'), [], 'no deletes from partial scans');
    const st = await feedState(feed);
    assert.equal(st.snapshotSize, 250, 'the snapshot still has every record');
    assert.deepEqual(st.pendingDeletes, [], 'nothing is even pending');

    // Once the source answers completely again, real deletes are seen (and only those).
    await src.remove('contacts', '42');
    await src.remove('contacts', '242');
    src.fault = null;
    await waitFor(async () => (await changeLog(feed)).filter((e) => e.kind === 'deleted').length >= 2, {
      what: 'the two real deletes',
      timeoutMs: 20_000,
    });
    await waitForPolledRun(ids, Date.now());
    const deletes = (await changeLog(feed)).filter((e) => e.kind === 'deleted').map((e) => e.id).sort();
    assert.deepEqual(deletes, ['242', '42']);
  });

  test('a record deleted from page 1 while page 2 is asked for: exactly that delete, nothing for the record that shifted', { timeout: TEST_TIMEOUT }, async () => {
    // json-server pages by _page: deleting a record of page 1 between the two requests moves
    // record 101 onto page 1 after it was read, so the scan never sees 101. Only the record
    // really deleted may be reported; 101 must not be deleted (and then re-created).
    const src = await source({ contacts: contacts(150) });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const hooks = {};
    for (const event of ['created', 'updated', 'deleted'])
      hooks[event] = await createWebhook(d, conn, event, { hook_url: `${stub.url}/shift/${event}` });
    const feed = await feedOf(hooks.deleted.id);
    await waitForBaseline(feed);
    let armed = true;
    src.beforeForward = async (r) => {
      if (armed && r.path === '/contacts' && r.query.get('_page') === '2') {
        armed = false;
        await src.remove('contacts', '50');
      }
    };
    const ids = Object.values(hooks).map((h) => h.id);
    await waitFor(async () => (await changeLog(feed)).some((e) => e.kind === 'deleted'), {
      what: 'the delete of record 50, confirmed by a second scan',
      timeoutMs: 30_000,
      detail: async () => describeRuns(await runs(ids)),
    });
    // Two more complete scans: nothing else may come.
    await waitForPolledRun(ids, Date.now());
    await waitForPolledRun(ids, Date.now());
    const log = await changeLog(feed);
    assert.deepEqual(log.map((e) => `${e.kind} ${e.id}`), ['deleted 50'], 'the change log holds only the real delete');
    const posted = (event) => stub.requests.filter((r) => r.url === `/shift/${event}`)
      .flatMap((r) => JSON.parse(r.body).data.map((x) => x.id));
    await waitFor(async () => posted('deleted').length > 0, { what: 'the deleted delivery' });
    assert.deepEqual(posted('deleted'), ['50'], 'the deleted webhook receives exactly record 50');
    assert.deepEqual(posted('created'), [], 'nothing is created');
    assert.deepEqual(posted('updated'), [], 'nothing is updated');
    assert.equal((await feedState(feed)).snapshotSize, 149);
  });

  test('a scan that finds records gone holds the deletes until a second complete scan agrees', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(40) });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const hook = await createWebhook(d, conn, 'deleted');
    const feed = await feedOf(hook.id);
    await waitForBaseline(feed);
    // Delete 30 of 40 while scans fail (so that no scan sees half of the deletions).
    src.fault = () => 503;
    await sleep(200);
    for (let i = 1; i <= 30; i++) await src.remove('contacts', String(i));
    const runsBefore = (await runs([hook.id])).length;
    src.fault = null;
    const gone = Array.from({ length: 30 }, (_, k) => String(k + 1)).sort();
    const held = await waitFor(async () => {
      const st = await feedState(feed);
      return st.pendingDeletes.length ? st : null;
    }, { what: 'deletes held by the guard', timeoutMs: 20_000 });
    assert.deepEqual([...held.pendingDeletes].sort(), gone, 'the 30 deletes wait');
    assert.deepEqual((await changeLog(feed)).filter((e) => e.kind === 'deleted'), [], 'and are not logged yet');
    await waitFor(async () => (await changeLog(feed)).filter((e) => e.kind === 'deleted').length === 30, {
      what: 'the second scan confirming the 30 deletes',
      timeoutMs: 20_000,
    });
    const st = await feedState(feed);
    assert.deepEqual(st.pendingDeletes, []);
    assert.equal(st.snapshotSize, 10);
    const okRuns = (await runs([hook.id])).slice(runsBefore).filter((r) => r.polled && r.status === 'ok');
    assert.ok(okRuns.length >= 2, 'two complete scans were needed');
  });

  test('an incremental poll that fails after its first page loses no change', { timeout: TEST_TIMEOUT }, async () => {
    // Only an "updated" webhook and no periodic full scans: every poll after the baseline is
    // incremental (updated_at_gte = high water - overlap).
    const src = await source({ contacts: contacts(250) });
    const d = await daemon({ HOOKD_FULL_SCAN_EVERY: '1000000' });
    const conn = await createConnection(d, src.url);
    const hook = await createWebhook(d, conn, 'updated');
    const feed = await feedOf(hook.id);
    await waitForBaseline(feed);
    await waitForPolledRun([hook.id], Date.now());

    // 150 changes: the 100 that come first (json-server sorts by id as text) are the newest;
    // the other 50 were changed an hour earlier (still after the last poll's high water).
    src.fault = () => 503;
    await sleep(200);
    const changed = Array.from({ length: 150 }, (_, k) => String(k + 1)).sort();
    const newest = new Date().toISOString();
    const older = new Date(Date.now() - 3_600_000).toISOString();
    for (const [k, id] of changed.entries()) {
      await src.patch('contacts', id, { title: `Changed ${id}`, updated_at: k < 100 ? newest : older });
    }
    // The next poll reads page 1 and fails on page 2.
    src.fault = (r) => (r.path === '/contacts' && r.query.get('_page') === '2' ? 500 : null);
    const failing = Date.now();
    const incomplete = await waitForPolledRun([hook.id], failing, { status: 'incomplete' });
    assert.equal(incomplete.fullScan, false, 'an incremental poll');
    src.fault = null;
    const recovered = Date.now();
    await waitForPolledRun([hook.id], recovered);
    await waitForPolledRun([hook.id], Date.now());
    const updatedIds = new Set((await changeLog(feed)).filter((e) => e.kind === 'updated').map((e) => e.id));
    const missing = changed.filter((id) => !updatedIds.has(id));
    assert.deepEqual(missing, [], `every change is logged (${missing.length} of 150 missing)`);
  });
});

// ---- many instances ----------------------------------------------------------------------------

describe('several hookd instances on one database', () => {
  test('each due slot of each webhook runs exactly once, with one source scan per feed and slot', { timeout: TEST_TIMEOUT }, async (t) => {
    const src = await source({ contacts: contacts(250), companies: contacts(30) });
    const apiKey = randomToken('key');
    const workspaceSecret = randomToken('wsec');
    const instances = [];
    for (const name of ['inst-a', 'inst-b', 'inst-c']) {
      instances.push(await daemon({ HOOKD_INSTANCE_ID: name, HOOKD_LEASE_SECONDS: '5' }, { apiKey, workspaceSecret }));
    }
    const [a, b] = instances;
    const conn = await createConnection(a, src.url);
    const contactHooks = [];
    for (const event of ['created', 'updated', 'deleted']) contactHooks.push((await createWebhook(b, conn, event)).id);
    const companyHook = (await createWebhook(a, conn, 'created', { object_type: 'crm_company' })).id;
    const ids = [...contactHooks, companyHook];

    await waitFor(async () => (await runs([contactHooks[0]])).length >= 4, { timeoutMs: 25_000, what: 'four slots' });
    await pause(a, ids);
    await sleep(1500);
    const all = await runs(ids);
    const detail = describeRuns(all);
    assertOncePerSlot(all, ids, detail);
    // One scan per feed and due time, whichever instance ran which webhook.
    const contactRuns = all.filter((r) => contactHooks.includes(r.webhookId));
    assert.equal(src.scans('/contacts').length, contactRuns.filter((r) => r.polled).length, detail);
    assert.equal(src.scans('/companies').length, all.filter((r) => r.webhookId === companyHook && r.polled).length, detail);
    const clusters = [];
    for (const r of contactRuns) {
      const c = clusters.find((x) => Math.abs(x.slot - r.scheduled) < 1000);
      if (c) c.runs.push(r);
      else clusters.push({ slot: r.scheduled, runs: [r] });
    }
    for (const c of clusters) {
      assert.ok(c.runs.filter((r) => r.polled).length <= 1, `one scan per due time\n${detail}`);
      if (c.runs.length === 3) assert.equal(c.runs.filter((r) => r.polled).length, 1, `one scan per due time\n${detail}`);
    }
    const owners = new Set(all.map((r) => r.owner));
    for (const o of owners) assert.ok(['inst-a', 'inst-b', 'inst-c'].includes(o), `owner ${o}`);
    const share = ['inst-a', 'inst-b', 'inst-c'].map((o) => `${o}: ${all.filter((r) => r.owner === o).length}`).join(', ');
    t.diagnostic(`${all.length} runs (${share}); ${src.scans('/contacts').length} contact scans, ${src.scans('/companies').length} company scans`);
    assert.ok(all.every((r) => r.status === 'ok'), detail);
  });

  test('kill -9 of the instance running a webhook: another instance runs that slot once the lease expires', { timeout: TEST_TIMEOUT }, async (t) => {
    const src = await source({ contacts: contacts(250) });
    const apiKey = randomToken('key');
    const workspaceSecret = randomToken('wsec');
    const byName = {};
    for (const name of ['kill-a', 'kill-b']) {
      byName[name] = await daemon({ HOOKD_INSTANCE_ID: name, HOOKD_LEASE_SECONDS: '5' }, { apiKey, workspaceSecret });
    }
    const conn = await createConnection(byName['kill-a'], src.url);
    src.delayMs = 2000; // a run takes three slow pages
    const hook = (await createWebhook(byName['kill-a'], conn, 'created')).id;
    const holder = await waitFor(async () => {
      const [r] = await sql(`select coalesce(lease_owner, ''), ${ms('next_run_at')}, ${ms('lease_expires_at')} from webhooks where id = ${q(hook)}`);
      return r[0] ? { owner: r[0], slot: Number(r[1]), leaseExpires: Number(r[2]) } : null;
    }, { what: 'a run in flight', timeoutMs: 15_000 });
    await src.waitForRequest((r) => r.path === '/contacts', 5_000);
    const [[leaseExpires]] = await sql(`select ${ms('lease_expires_at')} from webhooks where id = ${q(hook)}`);
    const killedAt = Date.now();
    byName[holder.owner].child.kill('SIGKILL');
    await byName[holder.owner].exited;
    src.delayMs = 0;
    const other = holder.owner === 'kill-a' ? 'kill-b' : 'kill-a';
    const takeover = await waitFor(async () => (await runs([hook])).find((r) => r.scheduled === holder.slot), {
      what: `the slot of the killed instance run by ${other}`,
      timeoutMs: 20_000,
      detail: async () => describeRuns(await runs([hook])),
    });
    t.diagnostic(`killed ${holder.owner} at +0; ${other} started the slot at +${takeover.started - killedAt} ms`);
    assert.equal(takeover.owner, other);
    assert.ok(takeover.polled, 'the other instance polled (the dead run\'s poll lease lapsed too)');
    assert.equal(takeover.status, 'ok');
    // Not before the lease could have lapsed (5 s after the last extension), and soon after.
    assert.ok(takeover.started >= killedAt, 'taken over after the kill');
    assert.ok(takeover.started >= Number(leaseExpires), `not before the dead instance's lease expired (${takeover.started} < ${leaseExpires})`);
    assert.ok(takeover.started - killedAt < 12_000, `taken over ${takeover.started - killedAt} ms after the kill`);
    const [lease] = await sql(`select count(*) from webhook_runs where webhook_id = ${q(hook)} and owner = ${q(holder.owner)} and ${ms('scheduled_for')} = ${holder.slot}`);
    assert.equal(Number(lease[0]), 0, 'the killed instance never recorded that slot');
  });

  test('kill -9 of one of two instances in the middle of its batches of runs: no slot of any webhook runs twice, every webhook keeps running', { timeout: TEST_TIMEOUT }, async (t) => {
    const sources = [];
    for (let i = 0; i < 10; i++) sources.push(await source({ contacts: contacts(5), companies: contacts(5) }));
    const apiKey = randomToken('key');
    const workspaceSecret = randomToken('wsec');
    const byName = {};
    for (const name of ['batch-a', 'batch-b']) {
      byName[name] = await daemon({ HOOKD_INSTANCE_ID: name, HOOKD_LEASE_SECONDS: '4' }, { apiKey, workspaceSecret });
    }
    const a = byName['batch-a'];
    // 10 connections x (3 contact webhooks on one feed + 1 company webhook): 40 webhooks, 20 feeds.
    const ids = [];
    for (const src of sources) {
      const conn = await createConnection(a, src.url);
      for (const event of ['created', 'updated', 'deleted']) ids.push((await createWebhook(a, conn, event)).id);
      ids.push((await createWebhook(a, conn, 'created', { object_type: 'crm_company' })).id);
    }
    await waitFor(async () => new Set((await runs(ids)).map((r) => r.webhookId)).size === ids.length,
      { timeoutMs: 20_000, what: 'every webhook ran once' });
    // Slow sources: the runs in flight at the kill are many, of many feeds, mid-poll.
    for (const src of sources) src.delayMs = 700;
    await waitFor(async () => {
      const [[n]] = await sql(`select count(*) from webhooks where lease_owner = 'batch-a' and id in (${ids.map(q).join(', ')})`);
      return Number(n) >= 4;
    }, { timeoutMs: 15_000, what: 'batch-a running several webhooks' });
    const [[inFlight]] = await sql(`select count(*) from webhooks where lease_owner = 'batch-a'`);
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await a.exited;
    for (const src of sources) src.delayMs = 0;
    // The survivor takes over once the leases lapse (4 s) and keeps every webhook on schedule.
    await waitFor(async () => {
      const after = (await runs(ids)).filter((r) => r.started > killedAt + 5_000 && r.owner === 'batch-b');
      return new Set(after.map((r) => r.webhookId)).size === ids.length;
    }, { timeoutMs: 30_000, what: 'every webhook run by batch-b after the kill', detail: async () => describeRuns(await runs(ids)) });
    await pause(byName['batch-b'], ids);
    await sleep(1000);
    const all = await runs(ids);
    const detail = describeRuns(all);
    assertOncePerSlot(all, ids, detail);
    const byOwner = (o) => all.filter((r) => r.owner === o).length;
    t.diagnostic(`${inFlight} runs of batch-a in flight at the kill; ${all.length} runs (batch-a ${byOwner('batch-a')}, batch-b ${byOwner('batch-b')})`);
    assert.ok(byOwner('batch-a') > 0 && byOwner('batch-b') > 0, 'both instances ran webhooks');
  });

  test('SIGTERM during a run: the run finishes, its lease is released, exit code 0', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(250) });
    const d = await daemon({ HOOKD_INSTANCE_ID: 'draining', HOOKD_DRAIN_SECONDS: '20' });
    const conn = await createConnection(d, src.url);
    src.delayMs = 1000;
    const hook = (await createWebhook(d, conn, 'created')).id;
    const feed = await feedOf(hook);
    await waitFor(async () => (await sql(`select coalesce(lease_owner, '') from webhooks where id = ${q(hook)}`))[0][0] === 'draining', {
      what: 'a run in flight',
      timeoutMs: 15_000,
    });
    await src.waitForRequest((r) => r.path === '/contacts', 5_000);
    const signalled = Date.now();
    const exit = await d.stop('SIGTERM');
    const exitedAt = Date.now();
    assert.equal(exit.code, 0, `exit code 0 after draining (got ${JSON.stringify(exit)})\n${d.logs().slice(-3000)}`);
    assert.ok(!exit.killedAfterTimeout);
    const rs = await runs([hook]);
    const finished = rs.find((r) => r.started <= signalled);
    assert.ok(finished, `the run in flight was recorded\n${describeRuns(rs)}`);
    assert.equal(finished.status, 'ok', 'it finished its scan');
    assert.ok(finished.polled);
    assert.ok(finished.finished >= signalled && finished.finished <= exitedAt, 'it finished after the signal, before the exit');
    const [w] = await sql(`select coalesce(lease_owner, '<null>'), coalesce(lease_expires_at::text, '<null>') from webhooks where id = ${q(hook)}`);
    assert.deepEqual(w, ['<null>', '<null>'], 'the webhook lease is released');
    assert.equal((await feedState(feed)).pollOwner, '', 'the feed poll lease is released');
    assert.equal((await sql(`select count(*) from webhooks where lease_owner = 'draining'`))[0][0], '0');
    assert.equal(rs.filter((r) => r.started > signalled).length, 0, 'nothing new was started after SIGTERM');
  });
});

// ---- the claim loop ----------------------------------------------------------------------------

describe('claim loop', () => {
  /** Transactions committed in the test database during `fn` (pg_stat_database), per second. */
  async function transactionRate(fn) {
    const count = async () => Number((await sql(`select xact_commit + xact_rollback from pg_stat_database where datname = current_database()`))[0][0]);
    const before = await count();
    const t0 = Date.now();
    await fn();
    const after = await count();
    return ((after - before) * 1000) / (Date.now() - t0);
  }

  test('paused connections and runs in flight do not make the scheduler query the database in a loop', { timeout: TEST_TIMEOUT }, async (t) => {
    const src = await source({ contacts: contacts(250) });
    const d = await daemon();
    // Idle: a handful of queries a second (claim, next due time).
    const idle = await transactionRate(() => sleep(4000));

    // A due webhook whose connection is paused: never run, and no reason to ask again and again.
    const paused = await createConnection(d, src.url);
    const r = await d.request('PATCH', `/unified/connection/${paused}`, { body: { is_paused: true } });
    assert.equal(r.status, 200, r.text);
    const hook = (await createWebhook(d, paused, 'created')).id;
    await sql(`update webhooks set next_run_at = now() - interval '1 minute', next_slot_at = now() - interval '1 minute' where id = ${q(hook)}`);
    await sleep(1500);
    const pausedRate = await transactionRate(() => sleep(4000));
    assert.equal((await runs([hook])).length, 0, 'the webhook of a paused connection never runs');
    await sql(`delete from connections where id = ${q(paused)}`);

    // A long run in flight (a slow source): its slot is past, its lease is live.
    const conn = await createConnection(d, src.url);
    src.delayMs = 2000;
    const slow = (await createWebhook(d, conn, 'created', { interval: 60 })).id;
    await sql(`update webhooks set next_run_at = now(), next_slot_at = now() where id = ${q(slow)}`);
    await waitFor(async () => (await sql(`select coalesce(lease_owner, '') from webhooks where id = ${q(slow)}`))[0][0] !== '', {
      what: 'the slow run in flight',
    });
    const runningRate = await transactionRate(() => sleep(4000));
    t.diagnostic(`transactions per second: idle ${idle.toFixed(1)}, paused connection due ${pausedRate.toFixed(1)}, run in flight ${runningRate.toFixed(1)}`);
    assert.ok(pausedRate < idle + 25, `a due webhook of a paused connection: ${pausedRate.toFixed(0)} transactions/s (idle: ${idle.toFixed(0)}/s)`);
    assert.ok(runningRate < idle + 25, `a run in flight: ${runningRate.toFixed(0)} transactions/s (idle: ${idle.toFixed(0)}/s)`);
  });
});

// ---- the schedule ------------------------------------------------------------------------------

describe('schedule', () => {
  test('an interval of 3 s gives runs exactly 3 s apart (no drift), each started within a second of its slot', { timeout: TEST_TIMEOUT }, async () => {
    const src = await source({ contacts: contacts(50) });
    const d = await daemon();
    const conn = await createConnection(d, src.url);
    const hook = (await createWebhook(d, conn, 'created')).id;
    await waitFor(async () => (await runs([hook])).length >= 6, { timeoutMs: 30_000, what: 'six runs' });
    const rs = (await runs([hook])).slice(0, 6);
    const detail = describeRuns(rs);
    for (let i = 1; i < rs.length; i++) assert.equal(rs[i].scheduled - rs[i - 1].scheduled, 3000, `slots 3000 ms apart\n${detail}`);
    for (const r of rs) {
      assert.ok(r.started >= r.scheduled, `not started before its slot\n${detail}`);
      assert.ok(r.started - r.scheduled < 1000, `started within 1 s of its slot\n${detail}`);
    }
    const g = await d.request('GET', `/unified/webhook/${hook}`);
    assert.ok(g.json.runs.length >= 6);
  });

  test('HOOKD_MIN_INTERVAL_SECONDS is enforced', { timeout: TEST_TIMEOUT }, async () => {
    const d = await daemon({ HOOKD_MIN_INTERVAL_SECONDS: '2' });
    const src = await source({ contacts: contacts(1) });
    const conn = await createConnection(d, src.url);
    const tooShort = await d.request('POST', '/unified/webhook', {
      body: { connection_id: conn, hook_url: `${stub.url}/hook`, object_type: 'crm_contact', event: 'created', interval: 0.02 },
    });
    assert.equal(tooShort.status, 400, tooShort.text);
    assert.match(tooShort.text, /interval/);
    const ok = await d.request('POST', '/unified/webhook', {
      body: { connection_id: conn, hook_url: `${stub.url}/hook`, object_type: 'crm_contact', event: 'created', interval: 0.04 },
    });
    assert.equal(ok.status, 200, ok.text);
  });
});
