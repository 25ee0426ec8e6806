// End-to-end tests of delivery (issue 5): the real daemon, the real json-server@0.17.4 as the
// source, a real HTTP(S) receiver (tests/fixtures/receiver.mjs), PostgreSQL (HOOKD_TEST_DATABASE_URL)
// queried with psql for what the API does not show (cursors, deliveries, attempts).
//
//   HOOKD_TEST_DATABASE_URL=postgresql://... node --test --test-concurrency=1 tests/e2e/delivery.test.mjs
//
// Every test starts its own daemon (with the configuration it needs: retry schedule, CA file,
// private destinations), its own json-server and receiver, and removes what it made. Webhooks
// poll every 0.05 minute (HOOKD_MIN_INTERVAL_SECONDS=1); retries wait about a second.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';

import {
  createWorkspace, makeRequest, makeTempDir, removeDir, sleep, startDaemon, uniqueName,
} from './daemon.mjs';
import { startReceiver } from '../fixtures/receiver.mjs';
import { contact, startJsonServer } from '../fixtures/json_server.mjs';
import { makeTestPki } from '../fixtures/tls.mjs';
import {
  assertPayloadShape, attempts, baseline, createWebhook, dataArrayText, getWebhook, ids, moreRuns, nowIso, psql, q,
  sql, state, trigger, until, verifySignatures,
} from './delivery_helpers.mjs';

const TEST_TIMEOUT = 60_000;
const INTERVAL = 0.05; // minutes: a poll every 3 s
const FAST_RETRIES = Array(12).fill('1').join(','); // 12 retries, one second apart
const LONG_RETRIES = Array(60).fill('1').join(','); // 60 retries, one second apart

let ws; // the workspace this file works in (its own API key and whsec_ signing secret)

before(async () => {
  ws = await createWorkspace(uniqueName('delivery-e2e'));
  assert.match(ws.workspaceSecret, /^whsec_[A-Za-z0-9+/]+=*$/, 'hookd workspace create prints a whsec_ secret');
});

/**
 * One test's world: a daemon (env overrides on top of the fast defaults), the real json-server
 * with `collections`, a receiver, a jsonserver connection. Everything is removed by cleanup().
 */
async function world({ env = {}, collections = { contacts: [] }, receiver = {} } = {}) {
  const w = { cleanups: [] };
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
    const c = await w.api('POST', '/unified/connection', {
      body: { integration_type: 'jsonserver', auth: { api_url: w.src.url } },
    });
    assert.equal(c.status, 200, `POST /unified/connection -> ${c.status} ${c.text}`);
    w.connectionId = c.json.id;
    // Deleting the connection deletes its webhooks, deliveries and runs: the shared database
    // stays clean. Directly in the database, as the daemon may have been killed or restarted.
    w.cleanups.splice(1, 0, () => psql(`delete from connections where id = ${q(w.connectionId)}`));
  } catch (e) {
    await w.cleanup();
    throw e;
  }
  return w;
}

async function startHookd(env = {}, options = {}) {
  const daemon = await startDaemon({
    ...options,
    env: { HOOKD_MIN_INTERVAL_SECONDS: '1', HOOKD_RETRY_SCHEDULE: FAST_RETRIES, ...env },
  });
  daemon.api = makeRequest(daemon.url, ws.apiKey, daemon);
  return daemon;
}

// ---------------------------------------------------------------------------------------------

// Tests 1-10 are the list of issue 5 item 9; 2b, 2c, 6b and 11-16 check further promises of
// DESIGN §1.2/§1.6/§1.7 and the issue (hand-over without duplicates, empty initial sync, Retry-After
// from the response, trigger, paging, redirects, exhausted schedule, big responses, timeouts).
describe('delivery end to end (issue 5)', () => {
  test('1. created, updated and deleted webhooks each receive exactly their changes; payload shape, raw and fields', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({
      collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing'), contact(3, 'Edsger Dijkstra'), contact(4, 'Barbara Liskov')] },
    });
    try {
      const hooks = {};
      for (const event of ['created', 'updated', 'deleted']) {
        hooks[event] = await createWebhook(w, { event, hook_url: `${w.rx.url}/${event}` });
        assert.equal(hooks[event].event, event);
      }
      hooks.fields = await createWebhook(w, { event: 'updated', hook_url: `${w.rx.url}/fields`, fields: 'name,raw' });
      hooks.emails = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/emails`, fields: 'emails' });
      const all = Object.values(hooks).map((h) => h.id);
      await baseline(w, hooks.created.id);
      await moreRuns(w, all, 1); // every webhook ran once after the baseline: nothing was sent
      assert.equal(w.rx.requests.length, 0, `the baseline emits nothing: ${w.rx.requests.map((r) => r.rawBody).join('\n')}`);

      // Changes through json-server's own API.
      const grace = contact(100, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() });
      await w.src.create('contacts', grace);
      await w.src.patch('contacts', '1', { name: 'Ada King', updated_at: nowIso() });
      const ada = await w.src.get('contacts', '1');
      const alan = await w.src.get('contacts', '2');
      await w.src.remove('contacts', '2');

      const want = { created: ['100'], updated: ['1'], deleted: ['2'], fields: ['1'], emails: ['100'] };
      await w.rx.waitFor(
        () => Object.entries(want).every(([k, v]) => ids(w.rx.requestsTo(`/${k}`)).length >= v.length),
        { timeoutMs: 25_000, what: 'the created, updated and deleted deliveries', logs: w.daemon.logs },
      );
      // Nothing else arrives in the next runs.
      await moreRuns(w, all, 2);
      for (const [k, v] of Object.entries(want)) {
        assert.deepEqual(ids(w.rx.requestsTo(`/${k}`)), v, `/${k} received exactly its changes`);
      }
      assert.equal(w.rx.requests.length, 5, `one POST per webhook:\n${w.rx.requests.map((r) => `${r.path} ${r.rawBody.slice(0, 200)}`).join('\n')}`);

      for (const k of Object.keys(want)) assertPayloadShape(w.rx.requestsTo(`/${k}`)[0], hooks[k]);

      const [created] = w.rx.requestsTo('/created')[0].json.data;
      assert.equal(created.name, 'Grace Hopper');
      assert.deepEqual(created.emails, grace.emails);
      assert.deepEqual(created.telephones, grace.telephones);
      assert.ok(!('raw' in created), 'raw is absent by default');
      const [updated] = w.rx.requestsTo('/updated')[0].json.data;
      assert.equal(updated.name, 'Ada King', 'the updated record in its new state');
      assert.deepEqual(updated.emails, ada.emails);
      assert.ok(!('raw' in updated), 'raw is absent by default');
      const [deleted] = w.rx.requestsTo('/deleted')[0].json.data;
      assert.equal(deleted.name, 'Alan Turing', 'a deleted record carries its last known state');
      assert.deepEqual(deleted.emails, alan.emails, 'a deleted record carries its last known state');
      assert.ok(!('raw' in deleted), 'raw is absent by default');

      // fields "name,raw": id always, name, raw (the source's own record); nothing else.
      const [projected] = w.rx.requestsTo('/fields')[0].json.data;
      assert.deepEqual(Object.keys(projected).sort(), ['id', 'name', 'raw'], `fields=name,raw: ${JSON.stringify(projected)}`);
      assert.equal(projected.name, 'Ada King');
      assert.deepEqual(projected.raw, ada, 'raw is the json-server record');
      const [emailsOnly] = w.rx.requestsTo('/emails')[0].json.data;
      assert.deepEqual(emailsOnly, { id: '100', emails: grace.emails }, 'fields=emails: id and emails only');

      // Every change acknowledged: each cursor at its feed's head, nothing outstanding.
      for (const id of all) {
        const s = await state(id);
        assert.equal(Number(s.cursor_seq), Number(s.head_seq), `webhook ${id}: the cursor reached the head`);
      }
      assert.deepEqual(await sql(`select id from deliveries where webhook_id in (${all.map(q).join(',')})`), []);
    } finally {
      await w.cleanup();
    }
  });

  test('2. include_all with 5 records and page_max_limit 2: PARTIAL, PARTIAL, COMPLETE, then VIRTUAL with nothing repeated or missed', { timeout: TEST_TIMEOUT }, async () => {
    const five = [1, 2, 3, 4, 5].map((i) => contact(i, `Person Number${i}`));
    const w = await world({ collections: { contacts: five } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/all`, page_max_limit: 2 }, '?include_all=true');
      assert.equal(hook.page_max_limit, 2);
      const initial = await w.rx.waitFor((r) => r.length >= 3 && r.slice(0, 3), { timeoutMs: 25_000, what: 'three initial pages', logs: w.daemon.logs });
      assert.deepEqual(initial.map((r) => r.json?.type), ['INITIAL-PARTIAL', 'INITIAL-PARTIAL', 'INITIAL-COMPLETE']);
      assert.deepEqual(initial.map((r) => r.json.data.length), [2, 2, 1]);
      const initialIds = ids(initial);
      assert.deepEqual([...initialIds].sort(), ['1', '2', '3', '4', '5'], `every record exactly once: ${initialIds}`);
      assert.equal(new Set(initial.map((r) => r.headers['webhook-id'])).size, 3, 'three deliveries, three webhook-ids');
      for (const r of initial) assertPayloadShape(r, hook, r.json.type);
      const byId = Object.fromEntries(initial.flatMap((r) => r.json.data).map((x) => [x.id, x]));
      for (const c of five) assert.equal(byId[c.id].name, c.name);

      // A later change arrives as VIRTUAL; nothing is repeated.
      await w.src.create('contacts', contact(6, 'Person Number6', { created_at: nowIso(), updated_at: nowIso() }));
      await w.src.patch('contacts', '3', { name: 'Person Renamed', updated_at: nowIso() }); // not a creation
      await w.rx.waitFor((r) => r.length >= 4, { timeoutMs: 20_000, what: 'the VIRTUAL delivery', logs: w.daemon.logs });
      await moreRuns(w, [hook.id], 2);
      assert.equal(w.rx.requests.length, 4, `3 initial pages and one VIRTUAL:\n${w.rx.requests.map((r) => r.rawBody.slice(0, 200)).join('\n')}`);
      const [virtual] = w.rx.requests.slice(3);
      assertPayloadShape(virtual, hook, 'VIRTUAL');
      assert.deepEqual(ids([virtual]), ['6']);
      assert.deepEqual([...ids(w.rx.requests)].sort(), ['1', '2', '3', '4', '5', '6'], 'nothing repeated or missed');
    } finally {
      await w.cleanup();
    }
  });

  test('2b. include_all: a record created while the initial sync is under way is delivered exactly once', { timeout: TEST_TIMEOUT }, async () => {
    const five = [1, 2, 3, 4, 5].map((i) => contact(i, `Person Number${i}`));
    const w = await world({ collections: { contacts: five } });
    try {
      // A second webhook on the same feed keeps polling it while the first page is unanswered.
      const poller = await createWebhook(w, { event: 'updated', hook_url: `${w.rx.url}/poller` });
      await baseline(w, poller.id);
      const head0 = Number((await state(poller.id)).head_seq);
      let created = false;
      w.rx.script('/all', async () => {
        // Page 1 arrived: create record 9 (it sorts after the records of page 1) and answer
        // only once the feed has seen it.
        await w.src.create('contacts', contact(9, 'Person Number9', { created_at: nowIso(), updated_at: nowIso() }));
        created = true;
        await until(async () => Number((await state(poller.id)).head_seq) > head0, { what: 'the feed to see record 9', daemon: w.daemon });
        return { status: 200 };
      });
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/all`, page_max_limit: 2 }, '?include_all=true');
      await w.rx.waitFor((r) => created && r.some((x) => x.json?.type === 'INITIAL-COMPLETE'), { timeoutMs: 30_000, what: 'the initial sync', logs: w.daemon.logs });
      await moreRuns(w, [hook.id], 2);
      const got = w.rx.requestsTo('/all');
      const types = got.map((r) => r.json.type);
      assert.deepEqual(types.filter((t) => t !== 'VIRTUAL'), ['INITIAL-PARTIAL', 'INITIAL-PARTIAL', 'INITIAL-COMPLETE'], `types: ${types}`);
      const all = ids(got);
      assert.deepEqual([...all].sort(), ['1', '2', '3', '4', '5', '9'],
        `every record exactly once across the hand-over to VIRTUAL:\n${got.map((r) => `${r.json.type} ${JSON.stringify(r.json.data.map((x) => x.id))}`).join('\n')}`);
    } finally {
      await w.cleanup();
    }
  });

  test('2c. include_all with no records: one empty INITIAL-COMPLETE, then VIRTUAL', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/empty`, page_max_limit: 2 }, '?include_all=true');
      const [first] = await w.rx.waitFor((r) => r.length >= 1 && r, { what: 'the empty INITIAL-COMPLETE', logs: w.daemon.logs });
      assertPayloadShape(first, hook, 'INITIAL-COMPLETE');
      assert.deepEqual(first.json.data, []);
      verifySignatures(first, ws.workspaceSecret);
      await w.src.create('contacts', contact(1, 'Ada Lovelace', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => r.length >= 2, { what: 'the VIRTUAL delivery', logs: w.daemon.logs });
      await moreRuns(w, [hook.id], 1);
      assert.deepEqual(w.rx.requests.map((r) => r.json.type), ['INITIAL-COMPLETE', 'VIRTUAL']);
      assert.deepEqual(ids(w.rx.requests), ['1']);
    } finally {
      await w.cleanup();
    }
  });

  test('3. webhook-signature verifies with standardwebhooks; sig and sig256 are HMAC-SHA1/SHA256 of data + nonce', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/sig` });
      const upd = await createWebhook(w, { event: 'updated', hook_url: `${w.rx.url}/sig-updated`, fields: 'name,raw' });
      await baseline(w, hook.id);
      // Non-ASCII text, quotes, backslashes, slashes: the signatures cover the exact bytes sent.
      await w.src.create('contacts', contact(7, 'Zoë Ågren-Łukasiewicz', {
        title: 'Chief "Quotes" \\ Officer </script> ✓ 🚀',
        created_at: nowIso(),
        updated_at: nowIso(),
      }));
      await w.src.patch('contacts', '1', { name: 'Ada 😀 King', updated_at: nowIso() });
      await w.rx.waitFor((r) => r.length >= 2, { what: 'the two deliveries', logs: w.daemon.logs });
      for (const r of w.rx.requests) {
        verifySignatures(r, ws.workspaceSecret);
        const ts = Number(r.headers['webhook-timestamp']);
        assert.ok(Math.abs(ts - r.at / 1000) < 30, `webhook-timestamp ${ts} is unix seconds, now`);
      }
      const created = w.rx.requestsTo('/sig')[0].json.data[0];
      assert.equal(created.name, 'Zoë Ågren-Łukasiewicz');
      assert.equal(created.title, 'Chief "Quotes" \\ Officer </script> ✓ 🚀');
      assert.equal(w.rx.requestsTo('/sig-updated')[0].json.data[0].name, 'Ada 😀 King');

      // The check is real: another secret, or a changed byte, fails.
      const r = w.rx.requests[0];
      const headers = { 'webhook-id': r.headers['webhook-id'], 'webhook-timestamp': r.headers['webhook-timestamp'], 'webhook-signature': r.headers['webhook-signature'] };
      assert.throws(() => new Webhook(`whsec_${crypto.randomBytes(24).toString('base64')}`).verify(r.rawBody, headers));
      assert.throws(() => new Webhook(ws.workspaceSecret).verify(r.rawBody.replace('"data":[', '"data":[ '), headers));
      // Signed with the webhook's workspace secret, not the bootstrap workspace's.
      const data = dataArrayText(r.rawBody);
      const withBootstrap = crypto.createHmac('sha1', w.daemon.workspaceSecret).update(data + r.json.nonce).digest('base64');
      assert.notEqual(r.json.sig, withBootstrap);
    } finally {
      await w.cleanup();
    }
  });

  test('4. 500, 500, 200: same webhook-id and body three times, the cursor moves once; is_healthy after 3 failures and back', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/retry` });
      await baseline(w, hook.id);
      const c0 = Number((await state(hook.id)).cursor_seq);
      const seen = []; // the webhook's state when each attempt arrives (the previous one is recorded)
      const observe = (status) => async () => {
        const s = await state(hook.id);
        const g = await getWebhook(w, hook.id);
        seen.push({ cursor: Number(s.cursor_seq), head: Number(s.head_seq), failures: s.consecutive_failures, healthy: g.is_healthy });
        return { status };
      };
      w.rx.script('/retry', observe(500), observe(500), observe(200));
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      const three = await w.rx.waitFor((r) => r.length >= 3 && seen.length >= 3 && r, { what: 'three attempts', logs: w.daemon.logs });
      const ok = await until(async () => {
        const s = await state(hook.id);
        return Number(s.cursor_seq) !== c0 && s;
      }, { what: 'the cursor to move after the 2xx', daemon: w.daemon });
      await moreRuns(w, [hook.id], 2);
      assert.equal(w.rx.requests.length, 3, 'acknowledged: not sent again');
      assert.deepEqual(three.map((r) => r.status), [500, 500, 200]);
      assert.equal(new Set(three.map((r) => r.headers['webhook-id'])).size, 1, 'the same webhook-id at every attempt');
      assert.ok(three[1].raw.equals(three[0].raw) && three[2].raw.equals(three[0].raw), 'byte-identical bodies at every attempt');
      assert.deepEqual(ids(three.slice(0, 1)), ['10']);
      for (const r of three) verifySignatures(r, ws.workspaceSecret);
      // The cursor did not move while the delivery failed, and moved once, to the head, after the 2xx.
      assert.equal(seen[0].cursor, c0);
      assert.equal(seen[1].cursor, c0, 'after one failure the cursor has not moved');
      assert.equal(seen[2].cursor, c0, 'after two failures the cursor has not moved');
      assert.equal(Number(ok.cursor_seq), Number(ok.head_seq), 'after the 2xx the cursor is at the head');
      assert.ok(Number(ok.cursor_seq) > c0);
      assert.deepEqual(seen.map((s) => s.failures), [0, 1, 2]);
      assert.deepEqual(seen.map((s) => s.healthy), [true, true, true], 'fewer than 3 failures: still healthy');
      assert.equal((await getWebhook(w, hook.id)).is_healthy, true);
      const a = await attempts(hook.id);
      assert.deepEqual(a.map((x) => [x.delivery_id, x.attempt, x.status]), [
        [three[0].headers['webhook-id'], 1, 500],
        [three[0].headers['webhook-id'], 2, 500],
        [three[0].headers['webhook-id'], 3, 200],
      ], 'every attempt recorded with its status');
      assert.ok(a.slice(0, 2).every((x) => x.error !== ''), 'failed attempts carry an error');
      assert.deepEqual(await sql(`select id from deliveries where webhook_id = ${q(hook.id)}`), [], 'nothing outstanding');

      // Three consecutive failures: unhealthy; the next success: healthy again.
      const healthy = [];
      const look = (status) => async () => {
        healthy.push((await getWebhook(w, hook.id)).is_healthy);
        return { status };
      };
      w.rx.script('/retry', look(500), look(503), look(500), look(200));
      await w.src.create('contacts', contact(11, 'Margaret Hamilton', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => r.length >= 7 && healthy.length >= 4, { what: 'four more attempts', logs: w.daemon.logs });
      assert.deepEqual(healthy, [true, true, true, false], 'is_healthy false after the third consecutive failure');
      await until(async () => (await getWebhook(w, hook.id)).is_healthy === true, { timeoutMs: 5000, what: 'is_healthy true after the success', daemon: w.daemon });
      assert.equal(new Set(w.rx.requests.slice(3).map((r) => r.headers['webhook-id'])).size, 1);
      assert.deepEqual(ids(w.rx.requests.slice(6)), ['11']);
    } finally {
      await w.cleanup();
    }
  });

  test('5. 410 Gone pauses the webhook at once; nothing more is sent', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/gone` });
      await baseline(w, hook.id);
      w.rx.reply = () => ({ status: 410 });
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => r.length >= 1, { what: 'the first attempt', logs: w.daemon.logs });
      const paused = await until(async () => {
        const g = await getWebhook(w, hook.id);
        return g.is_paused === true && g;
      }, { timeoutMs: 5000, what: 'is_paused true after 410', daemon: w.daemon });
      assert.equal(paused.is_paused, true);
      const s = await state(hook.id);
      assert.match(s.paused_reason, /410/, 'the reason names the 410');
      // More changes, a trigger, several retry delays and poll intervals: nothing is sent.
      await w.src.create('contacts', contact(11, 'Margaret Hamilton', { created_at: nowIso(), updated_at: nowIso() }));
      await trigger(w, hook.id);
      await sleep(7000);
      assert.equal(w.rx.requests.length, 1, `one attempt only:\n${w.rx.requests.map((r) => r.rawBody.slice(0, 200)).join('\n')}`);
      const a = await attempts(hook.id);
      assert.deepEqual(a.map((x) => x.status), [410]);
      assert.equal((await getWebhook(w, hook.id)).is_paused, true);
    } finally {
      await w.cleanup();
    }
  });

  test('6. 429 with Retry-After: 2 delays the retry at least 2 s (the schedule says 1 s)', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/busy` });
      await baseline(w, hook.id);
      w.rx.script('/busy', { status: 429, headers: { 'retry-after': '2' }, body: '{"error":"slow down"}' }, 200);
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      const [first, second] = await w.rx.waitFor((r) => r.length >= 2 && r, { what: 'the retry', logs: w.daemon.logs });
      const waited = second.at - first.respondedAt;
      assert.ok(waited >= 2000, `the retry came ${waited} ms after the 429 (Retry-After: 2)`);
      assert.ok(waited < 10_000, `the retry came ${waited} ms after the 429 (capped to about Retry-After)`);
      assert.equal(second.headers['webhook-id'], first.headers['webhook-id']);
      assert.ok(second.raw.equals(first.raw));
      assert.equal(second.status, 200);
      // 503 with Retry-After is honoured the same way.
      w.rx.script('/busy', { status: 503, headers: { 'retry-after': '2' } }, 200);
      await w.src.create('contacts', contact(11, 'Margaret Hamilton', { created_at: nowIso(), updated_at: nowIso() }));
      const [third, fourth] = await w.rx.waitFor((r) => r.length >= 4 && r.slice(2), { what: 'the retry after 503', logs: w.daemon.logs });
      const waited503 = fourth.at - third.respondedAt;
      assert.equal(third.status, 503);
      assert.ok(waited503 >= 2000, `the retry came ${waited503} ms after the 503 (Retry-After: 2)`);
      assert.ok(waited503 < 10_000, `the retry came ${waited503} ms after the 503`);
      assert.equal(fourth.headers['webhook-id'], third.headers['webhook-id']);
      const a = await attempts(hook.id);
      assert.deepEqual(a.map((x) => x.status), [429, 200, 503, 200]);
    } finally {
      await w.cleanup();
    }
  });

  test('6b. Retry-After counts from the response: a 429 answered after 1.5 s still waits 2 s before the retry', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/busy` });
      await baseline(w, hook.id);
      w.rx.script('/busy', { status: 429, delayMs: 1500, headers: { 'retry-after': '2' } }, 200);
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      const [first, second] = await w.rx.waitFor((r) => r.length >= 2 && r, { what: 'the retry', logs: w.daemon.logs });
      const waited = second.at - first.respondedAt;
      assert.ok(waited >= 2000, `the retry came ${waited} ms after the 429 response (Retry-After: 2)`);
    } finally {
      await w.cleanup();
    }
  });

  test('10. changes made while the receiver is down are delivered, coalesced and in order, when it recovers', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ env: { HOOKD_RETRY_SCHEDULE: LONG_RETRIES }, collections: { contacts: [1, 2, 3, 4].map((i) => contact(i, `Person Number${i}`)) } });
    try {
      const hook = await createWebhook(w, { event: 'updated', hook_url: `${w.rx.url}/down`, interval: 0.025 });
      const created = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/down-created`, interval: 0.025 });
      await baseline(w, hook.id);
      w.rx.reply = () => ({ status: 503 });
      const step = async (fn) => {
        const head = Number((await state(hook.id)).head_seq);
        await fn();
        await until(async () => Number((await state(hook.id)).head_seq) > head, { what: 'the change to be polled', daemon: w.daemon });
      };
      await step(() => w.src.patch('contacts', '1', { name: 'One v1', updated_at: nowIso() }));
      const firstDown = await w.rx.waitFor((r) => r.find((x) => x.path === '/down'), { what: 'the first attempt', logs: w.daemon.logs });
      await step(() => w.src.create('contacts', contact(8, 'Eight v0', { created_at: nowIso(), updated_at: nowIso() })));
      const firstDownCreated = await w.rx.waitFor((r) => r.find((x) => x.path === '/down-created'), { what: 'the first created attempt', logs: w.daemon.logs });
      await step(() => w.src.patch('contacts', '1', { name: 'One v2', updated_at: nowIso() }));
      await step(() => w.src.patch('contacts', '2', { name: 'Two v1', updated_at: nowIso() }));
      await step(() => w.src.create('contacts', contact(9, 'Nine v0', { created_at: nowIso(), updated_at: nowIso() })));
      await step(() => w.src.patch('contacts', '1', { name: 'One v3', updated_at: nowIso() }));
      await step(() => w.src.patch('contacts', '9', { name: 'Nine v1', updated_at: nowIso() }));
      await step(() => w.src.patch('contacts', '2', { name: 'Two v2', updated_at: nowIso() }));
      const downAttempts = w.rx.requestsTo('/down').length;
      assert.ok(downAttempts >= 3, `several attempts while down (${downAttempts})`);
      assert.equal(new Set(w.rx.requestsTo('/down').map((r) => r.headers['webhook-id'])).size, 1, 'while down: one delivery, retried');
      assert.equal((await getWebhook(w, hook.id)).is_healthy, false, 'unhealthy while down');

      const recovered = w.rx.requests.length;
      w.rx.reply = () => ({ status: 200 });
      await w.rx.waitFor(
        (r) => r.slice(recovered).filter((x) => x.status === 200 && x.path === '/down').length >= 2 &&
          r.slice(recovered).filter((x) => x.status === 200 && x.path === '/down-created').length >= 2,
        { what: 'the deliveries after recovery', logs: w.daemon.logs },
      );
      await moreRuns(w, [hook.id, created.id], 2);
      const ok = w.rx.requestsTo('/down').filter((r) => r.status === 200);
      assert.equal(ok.length, 2, `two deliveries after recovery:\n${ok.map((r) => r.rawBody.slice(0, 300)).join('\n')}`);
      // First the delivery that was outstanding (same webhook-id, same body), then the rest coalesced.
      assert.equal(ok[0].headers['webhook-id'], firstDown.headers['webhook-id']);
      assert.ok(ok[0].raw.equals(firstDown.raw), 'the outstanding delivery is sent unchanged');
      assert.deepEqual(ok[0].json.data.map((x) => [x.id, x.name]), [['1', 'One v1']]);
      assert.notEqual(ok[1].headers['webhook-id'], ok[0].headers['webhook-id']);
      assert.ok(ok[1].at >= ok[0].respondedAt, 'in order: the next delivery after the previous one is acknowledged');
      const latest = Object.fromEntries(ok[1].json.data.map((x) => [x.id, x.name]));
      assert.equal(ok[1].json.data.length, Object.keys(latest).length, `each record once: ${JSON.stringify(ok[1].json.data)}`);
      assert.deepEqual(latest, { 1: 'One v3', 2: 'Two v2', 9: 'Nine v1' }, 'coalesced to the latest state per record');
      const names = w.rx.requestsTo('/down').flatMap((r) => r.json.data.map((x) => x.name));
      assert.ok(!names.includes('One v2') && !names.includes('Two v1'), 'intermediate states are coalesced away');
      // The created webhook: its outstanding delivery (record 8), then record 9 once, in its latest state.
      const createdOk = w.rx.requestsTo('/down-created').filter((r) => r.status === 200);
      assert.equal(createdOk[0].headers['webhook-id'], firstDownCreated.headers['webhook-id']);
      assert.ok(createdOk[0].raw.equals(firstDownCreated.raw));
      assert.deepEqual(createdOk.map((r) => r.json.data.map((x) => [x.id, x.name])), [[['8', 'Eight v0']], [['9', 'Nine v1']]]);
      assert.equal((await getWebhook(w, hook.id)).is_healthy, true, 'healthy again');
      const s = await state(hook.id);
      assert.equal(Number(s.cursor_seq), Number(s.head_seq));
      for (const r of w.rx.requests) verifySignatures(r, ws.workspaceSecret);
    } finally {
      await w.cleanup();
    }
  });
  test('11. PUT trigger runs the webhook now: a webhook polling every 10 minutes polls and delivers at once', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/now`, interval: 10 });
      await trigger(w, hook.id);
      await until(async () => (await state(hook.id)).baseline_done, { timeoutMs: 10_000, what: 'the triggered run to poll (the baseline)', daemon: w.daemon });
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      await trigger(w, hook.id);
      await w.rx.waitFor((r) => r.length >= 1, { timeoutMs: 10_000, what: 'the triggered delivery', logs: w.daemon.logs });
      assert.deepEqual(ids(w.rx.requests), ['10']);
    } finally {
      await w.cleanup();
    }
  });
  test('12. more changes than page_max_limit: several VIRTUAL POSTs in order; client-side filters', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const paged = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/paged`, page_max_limit: 2 });
      const filtered = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/filtered`, filters: { title: 'Engineer' } });
      await baseline(w, paged.id);
      await moreRuns(w, [paged.id, filtered.id], 1);
      const fresh = [11, 12, 13, 14, 15].map((i) => contact(i, `New Person${i}`, { title: i % 2 ? 'Engineer' : 'Manager', created_at: nowIso(), updated_at: nowIso() }));
      for (const c of fresh) await w.src.create('contacts', c);
      await w.rx.waitFor((r) => ids(r.filter((x) => x.path === '/paged')).length >= 5, { what: 'five created records', logs: w.daemon.logs });
      await moreRuns(w, [paged.id, filtered.id], 2);
      const pages = w.rx.requestsTo('/paged');
      assert.ok(pages.every((r) => r.json.data.length <= 2), `at most page_max_limit records per POST: ${pages.map((r) => r.json.data.length)}`);
      assert.ok(pages.length >= 3, `several POSTs: ${pages.length}`);
      assert.deepEqual([...ids(pages)].sort(), ['11', '12', '13', '14', '15'], 'each record exactly once');
      assert.equal(new Set(pages.map((r) => r.headers['webhook-id'])).size, pages.length, 'one webhook-id per POST');
      for (let i = 1; i < pages.length; i++) assert.ok(pages[i].at >= pages[i - 1].respondedAt, 'one after the other');
      for (const r of pages) assertPayloadShape(r, paged);
      assert.deepEqual([...ids(w.rx.requestsTo('/filtered'))].sort(), ['11', '13', '15'], 'filters: only the matching records');
    } finally {
      await w.cleanup();
    }
  });

  test('13. a redirect is not followed: a 3xx is a failed attempt', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/moved` });
      await baseline(w, hook.id);
      w.rx.script('/moved', { status: 307, headers: { location: `${w.rx.url}/elsewhere` } }, { status: 301, headers: { location: '/elsewhere' } }, 200);
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => r.length >= 3, { what: 'three attempts', logs: w.daemon.logs });
      await moreRuns(w, [hook.id], 1);
      assert.deepEqual(w.rx.requests.map((r) => `${r.path} ${r.status}`), ['/moved 307', '/moved 301', '/moved 200'], 'never to the Location');
      const a = await attempts(hook.id);
      assert.deepEqual(a.map((x) => x.status), [307, 301, 200]);
      assert.ok(a[0].error !== '' && a[1].error !== '', 'the 3xx attempts are failures');
    } finally {
      await w.cleanup();
    }
  });

  test('14. the retry schedule exhausted pauses the webhook with the reason', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ env: { HOOKD_RETRY_SCHEDULE: '1,1' }, collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/fail` });
      await baseline(w, hook.id);
      w.rx.reply = () => ({ status: 500 });
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      const g = await until(async () => {
        const x = await getWebhook(w, hook.id);
        return x.is_paused && x;
      }, { what: 'the webhook to be paused', daemon: w.daemon });
      assert.equal(w.rx.requests.length, 3, 'the first attempt and two retries');
      assert.equal(g.is_healthy, false, 'three consecutive failures: unhealthy');
      const s = await state(hook.id);
      assert.match(s.paused_reason, /exhausted|retr/i, `paused_reason: ${s.paused_reason}`);
      assert.ok(g.runs.some((r) => /exhausted|paused|retr/i.test(r)), `the reason is in the runs: ${JSON.stringify(g.runs)}`);
      await sleep(3000);
      assert.equal(w.rx.requests.length, 3, 'nothing more once paused');

      // Unpausing starts a fresh schedule: three more attempts (not one), then paused again.
      const p = await w.api('PATCH', `/unified/webhook/${hook.id}`, { body: { is_paused: false } });
      assert.equal(p.status, 200, p.text);
      await until(async () => (await getWebhook(w, hook.id)).is_paused && w.rx.requests.length >= 6,
        { what: 'three more attempts, then paused again', daemon: w.daemon });
      assert.equal(w.rx.requests.length, 6, 'the first attempt and two retries, again');
      assert.equal(new Set(w.rx.requests.map((r) => r.headers['webhook-id'])).size, 1, 'the same delivery throughout');
    } finally {
      await w.cleanup();
    }
  });

  test('15. a huge 2xx response body is dropped, a "gzip" one not inflated: both acknowledge the delivery', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/big` });
      await baseline(w, hook.id);
      // hookd reads at most 64 KiB of an answer: 32 MiB is cut, not buffered nor a failure;
      // and a body labelled gzip (here not even gzip) is never inflated.
      w.rx.script('/big', { status: 200, body: 'x'.repeat(32 * 1024 * 1024) },
        { status: 200, headers: { 'content-encoding': 'gzip' }, body: 'not gzip at all' });
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => r.length >= 1, { what: 'the delivery', logs: w.daemon.logs });
      await w.src.create('contacts', contact(11, 'Margaret Hamilton', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => ids(r).includes('11'), { what: 'the next delivery', logs: w.daemon.logs });
      await moreRuns(w, [hook.id], 1);
      assert.deepEqual(w.rx.requests.map((r) => ids([r])), [['10'], ['11']], 'the first was acknowledged: not sent again');
      const a = await attempts(hook.id);
      assert.deepEqual(a.map((x) => [x.status, x.error]), [[200, ''], [200, '']]);
    } finally {
      await w.cleanup();
    }
  });

  test('16. a receiver that does not answer in time: the attempt times out and is retried under the same webhook-id', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ env: { HOOKD_SOURCE_TIMEOUT_SECONDS: '2' }, collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/slow` });
      await baseline(w, hook.id);
      w.rx.script('/slow', { hold: true }, 200);
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      const [first, second] = await w.rx.waitFor((r) => r.length >= 2 && r, { timeoutMs: 20_000, what: 'the retry after the timeout', logs: w.daemon.logs });
      assert.ok(first.aborted, 'hookd gave up on the first attempt');
      assert.ok(second.at - first.at >= 1900, `the first attempt was given about 2 s (${second.at - first.at} ms)`);
      assert.ok(second.at - first.at < 10_000, `the total timeout applies (${second.at - first.at} ms)`);
      assert.equal(second.headers['webhook-id'], first.headers['webhook-id']);
      assert.ok(second.raw.equals(first.raw));
      const a = await attempts(hook.id);
      assert.equal(a[0].status, null);
      assert.match(a[0].error, /time/i, `the attempt names the timeout: ${a[0].error}`);
      assert.equal(a[1].status, 200);
    } finally {
      await w.cleanup();
    }
  });

});

describe('crash and SSRF (daemons restarted with other settings)', () => {
  test('7. kill -9 of hookd mid-delivery, restart: the change is delivered under the same webhook-id; nothing is lost', { timeout: TEST_TIMEOUT }, async () => {
    const env = { HOOKD_LEASE_SECONDS: '3' }; // the dead instance's lease lapses quickly
    const w = await world({ env, collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/crash` });
      await baseline(w, hook.id);
      w.rx.script('/crash', { hold: true }); // the first attempt never gets an answer
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      const [held] = await w.rx.waitFor((r) => r.length >= 1 && r, { what: 'the first attempt', logs: w.daemon.logs });
      assert.deepEqual(ids([held]), ['10']);
      // Recorded before it was sent: the stored body is the one on the wire.
      const stored = await sql(`select id, body, attempts from deliveries where webhook_id = ${q(hook.id)}`);
      assert.equal(stored.length, 1, 'the delivery in flight is recorded');
      assert.equal(stored[0].id, held.headers['webhook-id']);
      assert.equal(stored[0].body, held.rawBody, 'the recorded body is the exact body sent');

      const first = w.daemon;
      first.child.kill('SIGKILL');
      const exit = await first.exited;
      assert.equal(exit.signal, 'SIGKILL');
      await until(() => held.aborted, { timeoutMs: 5000, what: 'the held request to be cut by the kill' });
      // A change while hookd is down.
      await w.src.create('contacts', contact(11, 'Margaret Hamilton', { created_at: nowIso(), updated_at: nowIso() }));

      const second = await startHookd(env, { apiKey: first.apiKey, workspaceSecret: first.workspaceSecret, encryptionKey: first.encryptionKey });
      w.cleanups.push(() => second.stop());
      w.daemon = second;
      w.api = second.api;
      await w.rx.waitFor((r) => ids(r).includes('11'), { timeoutMs: 30_000, what: 'the deliveries after the restart', logs: second.logs });
      await moreRuns(w, [hook.id], 2);
      const after = w.rx.requests.slice(1);
      assert.equal(after[0].headers['webhook-id'], held.headers['webhook-id'], 'the interrupted delivery is sent again under the same webhook-id');
      assert.ok(after[0].raw.equals(held.raw), 'with the same body');
      assert.equal(after[0].status, 200);
      // Every change arrived; a change sent twice was sent under one webhook-id.
      const byId = new Map();
      for (const r of w.rx.requests) {
        for (const rec of r.json.data) {
          const seen = byId.get(rec.id) ?? new Set();
          seen.add(r.headers['webhook-id']);
          byId.set(rec.id, seen);
        }
      }
      assert.deepEqual([...byId.keys()].sort(), ['10', '11'], 'nothing lost, nothing extra');
      for (const [id, deliveries] of byId) assert.equal(deliveries.size, 1, `record ${id} under one webhook-id`);
      assert.equal(w.rx.requests.length, 3, `the interrupted one, its resend, and the next:\n${w.rx.requests.map((r) => r.rawBody.slice(0, 160)).join('\n')}`);
      for (const r of w.rx.requests) verifySignatures(r, ws.workspaceSecret);
      const s = await state(hook.id);
      assert.equal(Number(s.cursor_seq), Number(s.head_seq));
      assert.deepEqual(await sql(`select id from deliveries where webhook_id = ${q(hook.id)}`), []);
    } finally {
      await w.cleanup();
    }
  });

  test('8. private, loopback and metadata hook_urls are refused with 400 (hook_url) without allow_private_destinations', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ env: { HOOKD_ALLOW_PRIVATE_DESTINATIONS: undefined } });
    try {
      assert.ok(!('HOOKD_ALLOW_PRIVATE_DESTINATIONS' in w.daemon.env));
      const refused = [
        ['http://169.254.169.254/x', '169.254.169.254'],
        ['http://10.0.0.1/x', '10.0.0.1'],
        [`${w.rx.url}/x`, '127.0.0.1'],
        ['http://192.168.1.20:8080/x', '192.168.1.20'],
        ['http://[::1]:8080/x', '::1'],
        ['http://[::ffff:169.254.169.254]/x', '169.254.169.254'],
        ['http://[fd00:ec2::254]/x', 'fd00:ec2::254'],
        ['http://localhost:9/x', null],
      ];
      for (const [url, address] of refused) {
        const r = await w.api('POST', '/unified/webhook', {
          body: { connection_id: w.connectionId, object_type: 'crm_contact', event: 'created', interval: INTERVAL, hook_url: url },
        });
        assert.equal(r.status, 400, `hook_url ${url} -> ${r.status} ${r.text}`);
        assert.equal(r.json?.error?.field, 'hook_url', `hook_url ${url}: the error names the field: ${r.text}`);
        if (address) assert.ok(r.json.error.message.includes(address), `hook_url ${url}: the message names ${address}: ${r.json.error.message}`);
      }
      const list = await w.api('GET', `/unified/webhook?connection_id=${w.connectionId}`);
      assert.equal(list.status, 200);
      assert.deepEqual(list.json, [], 'nothing was written');

      // At update too: a public hook_url (paused: never called) cannot be changed to a private one.
      const hook = await createWebhook(w, { event: 'created', hook_url: 'http://93.184.215.14/hook', is_paused: true, interval: 60 });
      for (const [url] of refused.slice(0, 2)) {
        const r = await w.api('PATCH', `/unified/webhook/${hook.id}`, {
          body: { connection_id: w.connectionId, object_type: 'crm_contact', event: 'created', hook_url: url },
        });
        assert.equal(r.status, 400, `PATCH hook_url ${url} -> ${r.status} ${r.text}`);
        assert.equal(r.json?.error?.field, 'hook_url');
      }
      assert.equal((await getWebhook(w, hook.id)).hook_url, 'http://93.184.215.14/hook', 'unchanged');
    } finally {
      await w.cleanup();
    }
  });

  test('8b. a webhook created while private destinations were allowed is refused at connect once they are not', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({ collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] } });
    try {
      const hook = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/private` });
      await baseline(w, hook.id);
      const first = w.daemon;
      await first.stop();
      const second = await startHookd({ HOOKD_ALLOW_PRIVATE_DESTINATIONS: undefined }, { apiKey: first.apiKey, workspaceSecret: first.workspaceSecret });
      w.cleanups.push(() => second.stop());
      w.daemon = second;
      w.api = second.api;
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      await trigger(w, hook.id);
      const a = await until(async () => {
        const rows = await attempts(hook.id);
        return rows.length >= 1 && rows;
      }, { what: 'a refused attempt', daemon: second });
      assert.equal(a[0].status, null, 'no HTTP status: never connected');
      assert.match(a[0].error, /127\.0\.0\.1/, `the attempt's error names the address: ${a[0].error}`);
      await sleep(1500);
      assert.equal(w.rx.requests.length, 0, 'the receiver got nothing');
      const s = await state(hook.id);
      assert.ok(Number(s.cursor_seq) < Number(s.head_seq), 'the cursor did not move');
    } finally {
      await w.cleanup();
    }
  });
});

describe('TLS receivers', () => {
  let dir;
  let pki;
  before(() => {
    dir = makeTempDir('hookd-e2e-dlv-tls-');
    pki = makeTestPki(dir);
    pki.selfSigned = selfSigned(dir);
  });
  after(() => removeDir(dir));

  test('9. a receiver with a test-CA certificate gets the delivery with HOOKD_CA_FILE; a self-signed or wrong-host one gets nothing', { timeout: TEST_TIMEOUT }, async () => {
    const w = await world({
      env: { HOOKD_CA_FILE: pki.caFile },
      receiver: { tls: pki.localhost },
      collections: { contacts: [contact(1, 'Ada Lovelace'), contact(2, 'Alan Turing')] },
    });
    const untrusted = await startReceiver({ tls: pki.selfSigned });
    const wrongHost = await startReceiver({ tls: pki.wronghost });
    w.cleanups.push(() => untrusted.close(), () => wrongHost.close());
    try {
      assert.match(w.rx.url, /^https:\/\/localhost:\d+$/);
      const good = await createWebhook(w, { event: 'created', hook_url: `${w.rx.url}/tls` });
      const byIp = await createWebhook(w, { event: 'created', hook_url: `https://127.0.0.1:${w.rx.port}/tls-ip` });
      const bad = await createWebhook(w, { event: 'created', hook_url: `${untrusted.url}/self-signed` });
      const wrong = await createWebhook(w, { event: 'created', hook_url: `${wrongHost.url}/wrong-host` });
      await baseline(w, good.id);
      await w.src.create('contacts', contact(10, 'Grace Hopper', { created_at: nowIso(), updated_at: nowIso() }));
      await w.rx.waitFor((r) => r.length >= 2, { what: 'the deliveries over TLS', logs: w.daemon.logs });
      assert.deepEqual(ids(w.rx.requestsTo('/tls')), ['10']);
      assert.deepEqual(ids(w.rx.requestsTo('/tls-ip')), ['10']);
      verifySignatures(w.rx.requestsTo('/tls')[0], ws.workspaceSecret);

      for (const [hook, rx, what] of [[bad, untrusted, 'self-signed'], [wrong, wrongHost, 'wrong host']]) {
        const a = await until(async () => {
          const rows = await attempts(hook.id);
          return rows.length >= 1 && rows;
        }, { what: `an attempt to the ${what} receiver`, daemon: w.daemon });
        assert.equal(a[0].status, null, `${what}: no HTTP status`);
        assert.match(a[0].error, /tls|ssl|certificate|handshake|verif/i, `${what}: the attempt names the TLS failure: ${a[0].error}`);
        assert.equal(rx.requests.length, 0, `${what}: the receiver got no request`);
        assert.ok(rx.tlsErrors.length >= 1, `${what}: hookd did try a handshake`);
        const s = await state(hook.id);
        assert.ok(Number(s.cursor_seq) < Number(s.head_seq), `${what}: the cursor did not move`);
      }
    } finally {
      await w.cleanup();
    }
  });
});

/** A self-signed certificate for localhost / 127.0.0.1: valid names, but no CA hookd trusts. */
function selfSigned(dir) {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'self.key', '-out', 'self.pem', '-days', '2', '-sha256', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  return { key: readFileSync(path.join(dir, 'self.key')), cert: readFileSync(path.join(dir, 'self.pem')) };
}
