// End-to-end tests of the delivery engine against the delivery contract (README "What the
// subscriber receives", DESIGN §1.2, §1.7, §2.1), whatever the engine does inside: many webhooks
// delivered at once with answers coming back out of order, mixed outcomes in one round, a
// kill -9 in the middle of a round, webhooks deleted or paused while their POST is in flight,
// and a slow receiver among fast ones. The real daemon, the real json-server@0.17.4 as the
// source, the receiver fixture (tests/fixtures/receiver.mjs), PostgreSQL read with psql for what
// the API does not show (cursors, deliveries, attempts).
//
//   HOOKD_TEST_DATABASE_URL=postgresql://... node --test --test-concurrency=1 tests/e2e/engine.test.mjs
//
// HOOKD_BIN selects the binary (tests/e2e/daemon.mjs); HOOKD_INTEGRATIONS_DIR, when set, is
// passed on to the daemons (for a binary that has no integrations/ beside it).
//
// What every webhook's requests must show, checked by assertOrdered(): POST k+1 arrives only
// after POST k was answered (or its connection died); after anything but a 2xx the next POST is
// the same delivery (same webhook-id); a webhook-id once left behind never comes back (within
// one daemon's life: after a kill -9, deliveries acknowledged just before it may be sent again,
// in order, under their webhook-ids); and, across all requests, one webhook-id carries one body
// (byte for byte).
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { createWorkspace, makeRequest, sleep, startDaemon, uniqueName } from './daemon.mjs';
import { startReceiver } from '../fixtures/receiver.mjs';
import { contact, startJsonServer } from '../fixtures/json_server.mjs';
import {
  assertPayloadShape, attempts, baseline, createWebhook, getWebhook, ids, moreRuns, nowIso, psql, q, sql, state,
  trigger, until, verifySignatures,
} from './delivery_helpers.mjs';

const TEST_TIMEOUT = 60_000; // each test takes well under 40 s
const FAST_RETRIES = Array(12).fill('1').join(','); // 12 retries, one second apart
const INTEGRATIONS = process.env.HOOKD_INTEGRATIONS_DIR ? { HOOKD_INTEGRATIONS_DIR: process.env.HOOKD_INTEGRATIONS_DIR } : {};

let ws; // the workspace this file works in (its own API key and whsec_ signing secret)

before(async () => {
  ws = await createWorkspace(uniqueName('engine-e2e'));
});

// ---------------------------------------------------------------------------------------------
// helpers

async function startHookd(env = {}, options = {}) {
  const daemon = await startDaemon({
    ...options,
    env: { HOOKD_MIN_INTERVAL_SECONDS: '1', HOOKD_RETRY_SCHEDULE: FAST_RETRIES, ...INTEGRATIONS, ...env },
  });
  daemon.api = makeRequest(daemon.url, ws.apiKey, daemon);
  return daemon;
}

/**
 * One test's world: a daemon, the real json-server with `collections`, a receiver, and
 * `connections` jsonserver connections to that json-server (w.connectionIds; w.connectionId is
 * the first). cleanup() removes everything (the connections directly in the database, which
 * deletes their webhooks, feeds, deliveries and runs).
 */
async function world({ env = {}, collections = { contacts: [] }, receiver = {}, connections = 1 } = {}) {
  const w = { cleanups: [], connectionIds: [] };
  w.cleanup = async () => {
    for (const fn of w.cleanups.reverse()) {
      try {
        await fn();
      } catch {
        /* best effort */
      }
    }
  };
  try {
    w.src = await startJsonServer(collections);
    w.cleanups.push(() => w.src.close());
    w.rx = await startReceiver(receiver);
    w.cleanups.push(() => w.rx.close());
    const daemon = await startHookd(env);
    w.daemon = daemon;
    w.cleanups.push(() => daemon.stop());
    w.api = w.daemon.api;
    for (let i = 0; i < connections; i++) {
      const c = await w.api('POST', '/unified/connection', {
        body: { integration_type: 'jsonserver', auth: { api_url: w.src.url } },
      });
      assert.equal(c.status, 200, `POST /unified/connection -> ${c.status} ${c.text}`);
      const id = c.json.id;
      w.connectionIds.push(id);
      w.cleanups.splice(1, 0, () => psql(`delete from connections where id = ${q(id)}`));
    }
    w.connectionId = w.connectionIds[0];
  } catch (e) {
    await w.cleanup();
    throw e;
  }
  return w;
}

/** Records in the Unified shapes of crm_company and crm_deal (json-server serves them as they are). */
const company = (id, name, extra = {}) => ({ id: String(id), name, domains: [`c${id}.example.com`], created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z', ...extra });
const deal = (id, name, extra = {}) => ({ id: String(id), name, amount: 1000 * Number(id), created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z', ...extra });
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));
const fresh = () => ({ created_at: nowIso(), updated_at: nowIso() });
const is2xx = (r) => r.status != null && r.status >= 200 && r.status < 300;
const sorted = (xs) => [...xs].sort((a, b) => Number(a) - Number(b) || String(a).localeCompare(String(b)));
const uniq = (xs) => sorted(new Set(xs));
const wid = (r) => r.headers['webhook-id'];
const show = (reqs) => reqs.map((r) => `  #${r.index} ${r.path} at=${r.at} answered=${r.respondedAt ?? (r.aborted ? 'aborted' : '-')} ${r.status ?? ''} id=${wid(r)} ${JSON.stringify((r.json?.data ?? []).map((x) => x.name ? `${x.id}:${x.name}` : x.id))}`).join('\n');

/** The acknowledged (2xx) requests' record ids. */
const ackedIds = (reqs) => ids(reqs.filter(is2xx));

/** The delivery contract's order for one webhook's requests (in arrival order); see the top. */
function assertOrdered(reqs, where) {
  const left = new Set();
  for (let k = 1; k < reqs.length; k++) {
    const prev = reqs[k - 1];
    const next = reqs[k];
    const ctx = () => `${where}: POST ${k} (of ${reqs.length}):\n${show(reqs)}`;
    if (prev.respondedAt != null) {
      assert.ok(next.at >= prev.respondedAt, `${where}: POST ${k} arrived ${prev.respondedAt - next.at} ms before POST ${k - 1} was answered\n${ctx()}`);
    } else if (prev.abortedAt != null) {
      assert.ok(next.at >= prev.abortedAt, `${where}: POST ${k} arrived while POST ${k - 1} was still open\n${ctx()}`);
    } else {
      assert.fail(`${where}: POST ${k} arrived while POST ${k - 1} was still unanswered\n${ctx()}`);
    }
    if (!is2xx(prev)) assert.equal(wid(next), wid(prev), `${where}: POST ${k - 1} was not acknowledged (${prev.status ?? 'no answer'}): the next POST must be the same delivery\n${ctx()}`);
    if (wid(next) !== wid(prev)) {
      left.add(wid(prev));
      assert.ok(!left.has(wid(next)), `${where}: webhook-id ${wid(next)} came back after later deliveries\n${ctx()}`);
    }
  }
}

/** One webhook-id, one body: every request carrying an id carries the same bytes. */
function assertOneBodyPerId(reqs, where) {
  const bodies = new Map();
  for (const r of reqs) {
    const seen = bodies.get(wid(r)) ?? new Set();
    seen.add(r.rawBody);
    bodies.set(wid(r), seen);
  }
  for (const [id, set] of bodies) assert.equal(set.size, 1, `${where}: webhook-id ${id} was sent with ${set.size} different bodies:\n${[...set].map((b) => b.slice(0, 300)).join('\n')}`);
}

function assertPageSizes(reqs, limit, where) {
  for (const r of reqs) {
    const n = r.json?.data?.length ?? -1;
    assert.ok(n >= 1 && n <= limit, `${where}: POST #${r.index} carries ${n} records (page_max_limit ${limit})`);
  }
}

/** Every webhook caught up: nothing outstanding in deliveries, each cursor at its feed's head. */
async function assertCaughtUp(webhookIds, where = '') {
  const outstanding = await sql(`select webhook_id, id from deliveries where webhook_id in (${webhookIds.map(q).join(',')})`);
  assert.deepEqual(outstanding, [], `${where}nothing left in deliveries`);
  for (const id of webhookIds) {
    const s = await state(id);
    assert.equal(Number(s.cursor_seq), Number(s.head_seq), `${where}webhook ${id}: the cursor is at its feed's head`);
  }
}

/** Waits for the end of the next poll of the webhook's feed (changes made right after it are
 *  all seen by one later poll, as polls are an interval apart). */
async function afterPoll(w, webhookId) {
  const polls = async () => Number((await sql(`select f.polls from webhooks w join feeds f on f.id = w.feed_id where w.id = ${q(webhookId)}`))[0]?.polls ?? -1);
  const p0 = await polls();
  await until(async () => (await polls()) > p0, { what: `the next poll of webhook ${webhookId}'s feed`, daemon: w.daemon, every: 25 });
}

function assertAlive(daemon) {
  assert.ok(daemon.child.exitCode === null && daemon.child.signalCode === null,
    `hookd is still running (exit ${daemon.child.exitCode}, signal ${daemon.child.signalCode})\n--- hookd log tail ---\n${daemon.logs().slice(-3000)}`);
}

// ---------------------------------------------------------------------------------------------

describe('delivery engine end to end', () => {
  test('1. twenty webhooks on four feeds, answers out of order: each webhook in order, every change exactly once, pages within page_max_limit', { timeout: TEST_TIMEOUT }, async () => {
    const baseRecords = (make, label) => range(1, 10).map((i) => make(i, `${label} Number${i}`));
    const w = await world({
      connections: 2,
      collections: {
        contacts: baseRecords(contact, 'Person'),
        companies: baseRecords(company, 'Company'),
        deals: baseRecords(deal, 'Deal'),
      },
    });
    try {
      // Every answer after a random 0-50 ms: answers come back out of order across webhooks.
      w.rx.reply = () => ({ status: 200, delayMs: Math.floor(Math.random() * 51) });
      const [c1, c2] = w.connectionIds;
      const feeds = [
        { name: 'c1-contacts', connection_id: c1, object_type: 'crm_contact', coll: 'contacts' },
        { name: 'c1-companies', connection_id: c1, object_type: 'crm_company', coll: 'companies' },
        { name: 'c2-contacts', connection_id: c2, object_type: 'crm_contact', coll: 'contacts' },
        { name: 'c2-deals', connection_id: c2, object_type: 'crm_deal', coll: 'deals' },
      ];
      const kinds = [['created', 2], ['created', 3], ['updated', 2], ['updated', 3], ['deleted', 2]];
      const subs = [];
      for (const f of feeds) {
        for (const [event, limit] of kinds) {
          const path = `/t1/${f.name}/${event}-${limit}`;
          const hook = await createWebhook(w, { connection_id: f.connection_id, object_type: f.object_type, event, page_max_limit: limit, hook_url: `${w.rx.url}${path}` });
          subs.push({ hook, path, feed: f, event, limit });
        }
      }
      const all = subs.map((s) => s.hook.id);
      for (const f of feeds) await baseline(w, subs.find((s) => s.feed === f).hook.id);
      await moreRuns(w, all, 1);
      assert.equal(w.rx.requests.length, 0, 'the baselines emit nothing');

      // 23 changes per collection, all at once: 14 created, 6 updated, 3 deleted. Each record
      // changes once, so each webhook must receive each of its records exactly once.
      const created = range(101, 114);
      const updated = range(1, 6);
      const deleted = range(8, 10);
      const make = { contacts: contact, companies: company, deals: deal };
      await Promise.all(Object.keys(make).flatMap((coll) => [
        ...created.map((i) => w.src.create(coll, make[coll](i, `New ${coll}${i}`, fresh()))),
        ...updated.map((i) => w.src.patch(coll, i, { name: `Renamed ${coll}${i}`, updated_at: nowIso() })),
        ...deleted.map((i) => w.src.remove(coll, i)),
      ]));
      const want = { created, updated, deleted };
      await w.rx.waitFor(
        () => subs.every((s) => uniq(ackedIds(w.rx.requestsTo(s.path))).length >= want[s.event].length),
        { timeoutMs: 30_000, what: 'every webhook to receive its changes', logs: w.daemon.logs },
      );
      await moreRuns(w, all, 2); // nothing more arrives
      await sleep(500);

      const everyId = new Set();
      for (const s of subs) {
        const where = `${s.path}`;
        const reqs = w.rx.requestsTo(s.path);
        assert.ok(reqs.every(is2xx), `${where}: every POST answered 2xx`);
        assertOrdered(reqs, where);
        assert.deepEqual(sorted(ids(reqs)), want[s.event], `${where}: each of its records exactly once:\n${show(reqs)}`);
        assertPageSizes(reqs, s.limit, where);
        assert.ok(reqs.length >= Math.ceil(want[s.event].length / s.limit), `${where}: ${reqs.length} POSTs`);
        for (const r of reqs) {
          assert.ok(!everyId.has(wid(r)), `${where}: webhook-id ${wid(r)} is used by one POST only`);
          everyId.add(wid(r));
          assertPayloadShape(r, s.hook);
          verifySignatures(r, ws.workspaceSecret);
        }
        const names = Object.fromEntries(reqs.flatMap((r) => r.json.data).map((x) => [x.id, x.name]));
        const coll = s.feed.coll;
        for (const id of want[s.event]) {
          const expected = s.event === 'created' ? `New ${coll}${id}` : s.event === 'updated' ? `Renamed ${coll}${id}` : names[id];
          assert.equal(names[id], expected, `${where}: record ${id} in its latest state`);
        }
        if (s.event === 'deleted') {
          const label = { contacts: 'Person', companies: 'Company', deals: 'Deal' }[coll];
          for (const id of deleted) assert.equal(names[id], `${label} Number${id}`, `${where}: a deleted record carries its last known state`);
        }
      }
      // The test did put the engine under concurrency: POSTs of different webhooks were open at once.
      const overlaps = w.rx.requests.filter((a) => w.rx.requests.some((b) => b.path !== a.path && b.at < a.respondedAt && a.at < b.respondedAt));
      assert.ok(overlaps.length > 0, 'POSTs of several webhooks were in flight at the same time');
      await assertCaughtUp(all);
    } finally {
      await w.cleanup();
    }
  });

  test('2. mixed outcomes in one round: 500s then 200, 410, 429 with Retry-After, 200; each webhook keeps its own order, health and pause', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const subs = {};
      for (const [name, limit] of [['retry', 2], ['gone', 2], ['busy', 2], ['ok', 2], ['ok1', 1]]) {
        const path = `/t2/${name}`;
        subs[name] = { path, limit, hook: await createWebhook(w, { event: 'created', page_max_limit: limit, hook_url: `${w.rx.url}${path}` }) };
      }
      const all = Object.values(subs).map((s) => s.hook.id);
      await baseline(w, subs.ok.hook.id);
      await moreRuns(w, all, 1);

      // Each webhook's health as seen when the retried delivery finally succeeds.
      let healthAtRecovery = null;
      w.rx.script('/t2/retry', 500, 500, 500, async () => {
        healthAtRecovery = {};
        for (const [name, s] of Object.entries(subs)) healthAtRecovery[name] = (await getWebhook(w, s.hook.id)).is_healthy;
        return { status: 200 };
      });
      w.rx.route('/t2/gone', 410);
      w.rx.script('/t2/busy', { status: 429, headers: { 'retry-after': '2' }, body: '{"error":"slow down"}' });
      // Six records right after a poll: the next poll sees them all, and every webhook's first
      // POST goes out in the same round.
      await afterPoll(w, subs.ok.hook.id);
      const news = range(11, 16);
      for (const i of news) await w.src.create('contacts', contact(i, `New Person${i}`, fresh()));
      await w.rx.waitFor(
        () => ['retry', 'busy', 'ok', 'ok1'].every((n) => uniq(ackedIds(w.rx.requestsTo(subs[n].path))).length >= news.length) &&
          w.rx.requestsTo('/t2/gone').length >= 1,
        { timeoutMs: 30_000, what: 'the deliveries of the round', logs: w.daemon.logs },
      );
      const reqs = Object.fromEntries(Object.entries(subs).map(([n, s]) => [n, w.rx.requestsTo(s.path)]));

      // 500, 500, 500, then 200: one delivery, the same webhook-id and bytes; the next POSTs wait for it.
      const retry = reqs.retry;
      assert.deepEqual(retry.slice(0, 4).map((r) => r.status), [500, 500, 500, 200], `/t2/retry:\n${show(retry)}`);
      assert.equal(new Set(retry.slice(0, 4).map(wid)).size, 1, '/t2/retry: the same webhook-id at every attempt');
      for (const r of retry.slice(1, 4)) assert.ok(r.raw.equals(retry[0].raw), '/t2/retry: byte-identical bodies at every attempt');
      assert.ok(retry.length > 4, '/t2/retry: more POSTs followed');
      assert.ok(retry[4].at >= retry[3].respondedAt, '/t2/retry: the next POST only after the retried one was acknowledged');
      assert.ok(healthAtRecovery, 'the recovering attempt was observed');
      assert.deepEqual(healthAtRecovery, { retry: false, gone: true, busy: true, ok: true, ok1: true },
        'after 3 consecutive failures only the failing webhook is unhealthy');

      // 410: paused at once, nothing more.
      assert.equal(reqs.gone.length, 1, `/t2/gone: one attempt only:\n${show(reqs.gone)}`);
      assert.equal(reqs.gone[0].status, 410);

      // 429 with Retry-After: 2: the same delivery after at least 2 s, then the rest in order.
      const busy = reqs.busy;
      assert.equal(busy[0].status, 429);
      assert.equal(wid(busy[1]), wid(busy[0]), '/t2/busy: the retry is the same delivery');
      assert.ok(busy[1].raw.equals(busy[0].raw), '/t2/busy: with the same body');
      const waited = busy[1].at - busy[0].respondedAt;
      assert.ok(waited >= 2000, `/t2/busy: the retry came ${waited} ms after the 429 (Retry-After: 2)`);
      assert.ok(waited < 15_000, `/t2/busy: the retry came ${waited} ms after the 429`);

      // The always-200 webhooks got everything before the 429 one was retried: nobody waited for it.
      for (const n of ['ok', 'ok1']) {
        assert.ok(reqs[n].every(is2xx), `/t2/${n}: every POST acknowledged`);
        const last = Math.max(...reqs[n].map((r) => r.respondedAt));
        assert.ok(last <= busy[1].at, `/t2/${n}: all its POSTs were answered (${last}) before /t2/busy was retried (${busy[1].at}):\n${show([...reqs[n], ...busy])}`);
      }

      for (const [n, s] of Object.entries(subs)) {
        const where = s.path;
        assertOrdered(reqs[n], where);
        assertOneBodyPerId(reqs[n], where);
        assertPageSizes(reqs[n], s.limit, where);
        for (const r of reqs[n]) verifySignatures(r, ws.workspaceSecret);
        if (n !== 'gone') assert.deepEqual(sorted(ackedIds(reqs[n])), news, `${where}: every record once:\n${show(reqs[n])}`);
      }

      // Later changes: everyone but the paused webhook gets them; the 410 one stays paused.
      const later = range(17, 18);
      for (const i of later) await w.src.create('contacts', contact(i, `Later Person${i}`, fresh()));
      await w.rx.waitFor(
        () => ['retry', 'busy', 'ok', 'ok1'].every((n) => later.every((id) => ackedIds(w.rx.requestsTo(subs[n].path)).includes(id))),
        { timeoutMs: 20_000, what: 'the later changes', logs: w.daemon.logs },
      );
      await moreRuns(w, [subs.ok.hook.id], 2);
      assert.equal(w.rx.requestsTo('/t2/gone').length, 1, 'the 410 webhook got nothing more');

      // Each webhook's outcome is its own: health, pause and attempts.
      for (const [n, s] of Object.entries(subs)) {
        const g = await getWebhook(w, s.hook.id);
        const st = await state(s.hook.id);
        const got = w.rx.requestsTo(s.path);
        assert.equal(g.is_paused, n === 'gone', `${s.path}: is_paused`);
        assert.equal(g.is_healthy, true, `${s.path}: is_healthy (fewer than 3 consecutive failures, or recovered)`);
        assert.deepEqual((await attempts(s.hook.id)).map((a) => a.status), got.map((r) => r.status), `${s.path}: every attempt recorded, with its status`);
        if (n === 'gone') {
          assert.match(st.paused_reason, /410/, 'the pause names the 410');
          assert.ok(Number(st.cursor_seq) < Number(st.head_seq), 'the paused webhook did not move past the refused delivery');
        } else {
          assert.equal(st.consecutive_failures, 0, `${s.path}: no failures outstanding`);
          assert.deepEqual(sorted(ackedIds(got)), [...news, ...later], `${s.path}: every record once`);
        }
      }
      await assertCaughtUp(all.filter((id) => id !== subs.gone.hook.id));
    } finally {
      await w.cleanup();
    }
  });

  test('3. kill -9 in the middle of a round, restart: every change delivered, resends byte-identical, each webhook in order', { timeout: TEST_TIMEOUT }, async () => {
    const env = { HOOKD_LEASE_SECONDS: '3' }; // the dead instance's leases lapse quickly
    const w = await world({ env, connections: 2, collections: { contacts: range(1, 10).map((i) => contact(i, `Person${i} v0`)) } });
    try {
      // Per connection (feed): four `updated` and one `created` webhook, one record per POST,
      // and a `deleted` webhook (nothing is deleted) that is triggered to poll.
      const subs = [];
      const pollers = [];
      for (const [n, connection_id] of w.connectionIds.entries()) {
        for (let k = 0; k < 5; k++) {
          const event = k < 4 ? 'updated' : 'created';
          const path = `/t3/${n}/${event}-${k}`;
          subs.push({ path, event, hook: await createWebhook(w, { connection_id, event, page_max_limit: 1, hook_url: `${w.rx.url}${path}` }) });
        }
        pollers.push(await createWebhook(w, { connection_id, event: 'deleted', hook_url: `${w.rx.url}/t3/${n}/poller` }));
      }
      const all = [...subs.map((s) => s.hook.id), ...pollers.map((p) => p.id)];
      for (const p of pollers) await baseline(w, p.id);
      await moreRuns(w, all, 1);

      // Until the backlog is in place every POST is held; then answers take 40 ms, and the
      // 31st request after that kills the daemon before it is answered.
      let phase = 'hold';
      let served = 0;
      let killer = null;
      w.rx.reply = (req) => {
        if (phase === 'hold') return { hold: true };
        if (phase === 'after') return { status: 200, delayMs: Math.floor(Math.random() * 11) };
        served++;
        if (!killer && served > 30) {
          killer = req;
          w.daemon.child.kill('SIGKILL');
          return { hold: true };
        }
        return { status: 200, delayMs: 40 };
      };

      // Three versions of each record, each logged by its own poll: v1 (and five new records), v2, v3.
      const heads = () => Promise.all(pollers.map(async (p) => Number((await state(p.id)).head_seq)));
      let target = await heads();
      for (let v = 1; v <= 3; v++) {
        const changes = range(1, 10).map((i) => w.src.patch('contacts', i, { name: `Person${i} v${v}`, updated_at: nowIso() }));
        if (v === 1) changes.push(...range(101, 105).map((i) => w.src.create('contacts', contact(i, `Person${i} v0`, fresh()))));
        await Promise.all(changes);
        target = target.map((t) => t + (v === 1 ? 15 : 10));
        for (const p of pollers) await trigger(w, p.id);
        await until(async () => (await heads()).every((h, i) => h >= target[i]), { what: `version ${v} logged in both feeds`, daemon: w.daemon });
      }
      const first = w.daemon;
      phase = 'run';
      w.rx.releaseHeld();
      await until(() => killer, { timeoutMs: 20_000, what: 'the kill in the middle of the round', daemon: first });
      const exit = await first.exited;
      assert.equal(exit.signal, 'SIGKILL');
      await until(() => killer.aborted, { timeoutMs: 5000, what: 'the request in flight to be cut by the kill' });
      const behind = [];
      for (const s of subs) {
        const st = await state(s.hook.id);
        if (Number(st.cursor_seq) < Number(st.head_seq)) behind.push(s.path);
      }
      assert.ok(behind.length >= 5, `the kill came mid-round: ${behind.length} webhooks had changes left to deliver`);
      // A change while hookd is down.
      await w.src.patch('contacts', '1', { name: 'Person1 v4', updated_at: nowIso() });

      phase = 'after';
      const restarted = Date.now();
      const second = await startHookd(env, { apiKey: first.apiKey, workspaceSecret: first.workspaceSecret, encryptionKey: first.encryptionKey });
      w.cleanups.push(() => second.stop());
      w.daemon = second;
      w.api = second.api;
      const finalName = (id) => (id === '1' ? 'Person1 v4' : `Person${id} v3`);
      const done = (s) => {
        const got = w.rx.requestsTo(s.path).filter(is2xx).flatMap((r) => r.json.data);
        if (s.event === 'created') return range(101, 105).every((id) => got.some((x) => x.id === id));
        return range(1, 10).every((id) => got.some((x) => x.id === id && x.name === finalName(id)));
      };
      await w.rx.waitFor(() => subs.every(done), { timeoutMs: 40_000, what: 'every change after the restart', logs: second.logs });
      await moreRuns(w, all, 1);
      assertAlive(second);

      assertOneBodyPerId(w.rx.requests, 'all webhooks');
      const version = (x) => Number(/ v(\d+)$/.exec(x.name)?.[1] ?? NaN);
      for (const s of subs) {
        const reqs = w.rx.requestsTo(s.path);
        const beforeKill = reqs.filter((r) => r.at < restarted);
        const afterRestart = reqs.filter((r) => r.at >= restarted);
        assertOrdered(beforeKill, `${s.path} before the kill`);
        assertOrdered(afterRestart, `${s.path} after the restart`);
        // At least once: the restart may send again deliveries that were acknowledged just
        // before the kill (their acknowledgement not yet committed), but only the last ones,
        // in their original order, each under its webhook-id with its body, before anything new.
        const order = (xs) => [...new Set(xs.map(wid))];
        const sentBefore = order(beforeKill);
        const sentAfter = order(afterRestart);
        const again = sentAfter.filter((id) => sentBefore.includes(id));
        assert.deepEqual(again, sentBefore.slice(sentBefore.length - again.length), `${s.path}: only the last deliveries are sent again, in order:\n${show(reqs)}`);
        assert.deepEqual(sentAfter.slice(0, again.length), again, `${s.path}: what is sent again comes first:\n${show(reqs)}`);
        assert.ok(again.length <= 32, `${s.path}: at most one prepared batch is sent again (${again.length})`);
        assertPageSizes(reqs, 1, s.path);
        // What a receiver that keys on webhook-id (its idempotency key) applies: each delivery
        // once, at its first acknowledgement. No record's older state after a newer one.
        const applied = [];
        const appliedIds = new Set();
        for (const r of reqs)
          if (is2xx(r) && !appliedIds.has(wid(r))) {
            appliedIds.add(wid(r));
            applied.push(r);
          }
        const seen = new Map();
        for (const r of applied) {
          for (const x of r.json.data) {
            const v = version(x);
            assert.ok(Number.isFinite(v), `${s.path}: a record with a version: ${JSON.stringify(x)}`);
            assert.ok(v >= (seen.get(x.id) ?? -1), `${s.path}: record ${x.id} v${v} was delivered after v${seen.get(x.id)}:\n${show(reqs)}`);
            seen.set(x.id, v);
          }
        }
        assert.deepEqual(uniq(ids(reqs)), s.event === 'created' ? range(101, 105) : range(1, 10), `${s.path}: exactly its records`);
        // A delivery cut by the kill is sent again under its webhook-id, and acknowledged.
        for (const cut of reqs.filter((r) => r.aborted)) {
          assert.ok(reqs.some((r) => r.index > cut.index && wid(r) === wid(cut) && is2xx(r)), `${s.path}: the delivery cut by the kill (${wid(cut)}) was sent again and acknowledged:\n${show(reqs)}`);
        }
        for (const r of reqs) {
          assertPayloadShape(r, s.hook);
          verifySignatures(r, ws.workspaceSecret);
        }
      }
      assert.ok(w.rx.requests.some((r) => r.aborted), 'POSTs were in flight when hookd was killed');
      for (const p of pollers) assert.deepEqual(w.rx.requestsTo(`/t3/${w.connectionIds.indexOf(p.connection_id)}/poller`), [], 'nothing was deleted');
      await assertCaughtUp(all);
    } finally {
      await w.cleanup();
    }
  });

  test('4. a webhook deleted and another paused while their POST is in flight: nothing more for them, the others go on; unpausing resumes in order', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const mk = async (name) => ({ path: `/t4/${name}`, hook: await createWebhook(w, { event: 'created', page_max_limit: 1, hook_url: `${w.rx.url}/t4/${name}` }) });
      const gone = await mk('deleted');
      const paused = await mk('paused');
      const other = await mk('other');
      await baseline(w, other.hook.id);
      await moreRuns(w, [gone.hook.id, paused.hook.id, other.hook.id], 1);

      // Three records, one per POST: the first POST of the two webhooks is held.
      w.rx.script(gone.path, { hold: true });
      w.rx.script(paused.path, { hold: true });
      const firstBatch = range(11, 13);
      for (const i of firstBatch) await w.src.create('contacts', contact(i, `New Person${i}`, fresh()));
      await w.rx.waitFor(() => [gone.path, paused.path].every((p) => w.rx.held().some((r) => r.path === p)), { what: 'the two held POSTs', logs: w.daemon.logs });

      const del = await w.api('DELETE', `/unified/webhook/${gone.hook.id}`);
      assert.equal(del.status, 200, `DELETE -> ${del.status} ${del.text}`);
      const pause = await w.api('PATCH', `/unified/webhook/${paused.hook.id}`, { body: { is_paused: true } });
      assert.equal(pause.status, 200, `PATCH is_paused -> ${pause.status} ${pause.text}`);
      assert.equal(pause.json.is_paused, true);
      await sleep(1500); // the delete and the pause take effect
      w.rx.releaseHeld();
      // Changes after the delete and the pause.
      const secondBatch = range(14, 15);
      for (const i of secondBatch) await w.src.create('contacts', contact(i, `Later Person${i}`, fresh()));
      await w.rx.waitFor(() => uniq(ackedIds(w.rx.requestsTo(other.path))).length >= 5, { timeoutMs: 20_000, what: 'the other webhook to get every change', logs: w.daemon.logs });
      await moreRuns(w, [other.hook.id], 2); // a few poll intervals
      await sleep(1000);
      assertAlive(w.daemon);

      for (const s of [gone, paused]) {
        const got = w.rx.requestsTo(s.path);
        assert.equal(got.length, 1, `${s.path}: only the POST that was in flight:\n${show(got)}`);
        assert.deepEqual(ids(got), ['11']);
      }
      assert.equal((await w.api('GET', `/unified/webhook/${gone.hook.id}`)).status, 404, 'the deleted webhook is gone');
      assert.deepEqual(await sql(`select id from webhooks where id = ${q(gone.hook.id)}`), []);
      assert.deepEqual(await sql(`select id from deliveries where webhook_id = ${q(gone.hook.id)}`), [], 'no delivery of the deleted webhook remains');
      assert.deepEqual(await sql(`select id from delivery_attempts where webhook_id = ${q(gone.hook.id)}`), [], 'no attempt of the deleted webhook remains');
      assert.equal((await getWebhook(w, paused.hook.id)).is_paused, true, 'still paused');

      const otherReqs = w.rx.requestsTo(other.path);
      assertOrdered(otherReqs, other.path);
      assert.deepEqual(sorted(ids(otherReqs)), [...firstBatch, ...secondBatch], `${other.path}: every record once`);

      // Unpause: what was outstanding goes first, under its webhook-id, then the rest, in order.
      const outstanding = await sql(`select id, body from deliveries where webhook_id = ${q(paused.hook.id)} order by seq_to, created_at, id`);
      const resume = await w.api('PATCH', `/unified/webhook/${paused.hook.id}`, { body: { is_paused: false } });
      assert.equal(resume.status, 200, `PATCH is_paused false -> ${resume.status} ${resume.text}`);
      await w.rx.waitFor(() => [...firstBatch, ...secondBatch].every((id) => ackedIds(w.rx.requestsTo(paused.path)).includes(id)),
        { timeoutMs: 25_000, what: 'the paused webhook to resume', logs: w.daemon.logs });
      await moreRuns(w, [paused.hook.id, other.hook.id], 1);
      const got = w.rx.requestsTo(paused.path);
      if (outstanding.length) {
        assert.equal(wid(got[1]), outstanding[0].id, `the outstanding delivery first:\n${show(got)}`);
        assert.equal(got[1].rawBody, outstanding[0].body, 'with its recorded body');
      }
      assertOrdered(got, paused.path);
      assertOneBodyPerId(got, paused.path);
      assertPageSizes(got, 1, paused.path);
      assert.deepEqual(uniq(ids(got)), [...firstBatch, ...secondBatch], `${paused.path}: every record`);
      const idsOf = new Map();
      for (const r of got) for (const x of r.json.data) idsOf.set(x.id, new Set([...(idsOf.get(x.id) ?? []), wid(r)]));
      for (const [id, set] of idsOf) assert.equal(set.size, 1, `${paused.path}: record ${id} sent again only as the same delivery`);
      for (const r of [...got, ...otherReqs]) verifySignatures(r, ws.workspaceSecret);
      await assertCaughtUp([paused.hook.id, other.hook.id]);
    } finally {
      await w.cleanup();
    }
  });

  test('5. a receiver that takes 3 s per answer holds up only its own webhook', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const slow = { path: '/t5/slow', limit: 2 };
      slow.hook = await createWebhook(w, { event: 'created', page_max_limit: slow.limit, hook_url: `${w.rx.url}${slow.path}` });
      const fast = [];
      for (let k = 0; k < 10; k++) {
        const path = `/t5/fast-${k}`;
        fast.push({ path, hook: await createWebhook(w, { event: 'created', page_max_limit: 1, hook_url: `${w.rx.url}${path}` }) });
      }
      const all = [slow.hook.id, ...fast.map((f) => f.hook.id)];
      w.rx.route(slow.path, { status: 200, delayMs: 3000 });
      await baseline(w, slow.hook.id);
      await moreRuns(w, all, 1);

      await afterPoll(w, slow.hook.id);
      const news = range(21, 25);
      for (const i of news) await w.src.create('contacts', contact(i, `New Person${i}`, fresh()));
      // Five POSTs for each fast webhook, three for the slow one (3 s each). Behind the slow
      // receiver, the fast webhooks would need at least 4 x 3 s.
      await w.rx.waitFor(() => fast.every((f) => uniq(ackedIds(w.rx.requestsTo(f.path))).length >= news.length),
        { timeoutMs: 30_000, what: 'the fast webhooks to get every change', logs: w.daemon.logs });
      const fastDone = Math.max(...fast.flatMap((f) => w.rx.requestsTo(f.path).map((r) => r.respondedAt)));
      await w.rx.waitFor(() => uniq(ackedIds(w.rx.requestsTo(slow.path))).length >= news.length,
        { timeoutMs: 30_000, what: 'the slow webhook to get every change', logs: w.daemon.logs });
      await moreRuns(w, all, 1);

      const slowReqs = w.rx.requestsTo(slow.path);
      assert.ok(slowReqs.length >= 3, `the slow webhook: ${slowReqs.length} POSTs`);
      assert.ok(fastDone < slowReqs[2].at,
        `the fast webhooks had all their POSTs answered (${fastDone - slowReqs[0].at} ms after the slow one's first POST) before the slow webhook's third POST (${slowReqs[2].at - slowReqs[0].at} ms)`);
      for (const s of [slow, ...fast]) {
        const reqs = w.rx.requestsTo(s.path);
        assertOrdered(reqs, s.path);
        assertPageSizes(reqs, s.limit ?? 1, s.path);
        assert.deepEqual(sorted(ids(reqs)), news, `${s.path}: every record once`);
        assert.ok(reqs.every(is2xx), `${s.path}: no attempt failed (the slow answers are within the timeout)`);
        for (const r of reqs) verifySignatures(r, ws.workspaceSecret);
      }
      await assertCaughtUp(all);
    } finally {
      await w.cleanup();
    }
  });
});
