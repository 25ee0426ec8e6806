// End-to-end tests of hookd's REST API (Unified.to compatible) against the real daemon binary
// and a real PostgreSQL (HOOKD_TEST_DATABASE_URL).
//
//   HOOKD_TEST_DATABASE_URL=postgresql://... node --test --test-concurrency=1 tests/e2e tests/compat
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ISO_MS_Z,
  createWorkspace,
  deleteCreatedConnections,
  hookdEnvOf,
  makeRequest,
  randomToken,
  responseLog,
  sleep,
  startDaemon,
  startStub,
  testDatabaseUrl,
  uniqueName,
} from './daemon.mjs';

// Fail loudly at load time when the database is not configured.
const DATABASE_URL = testDatabaseUrl();

/** @type {Awaited<ReturnType<typeof startDaemon>>} */
let d;
/** @type {ReturnType<typeof makeRequest>} */
let req;
let stub;
// The workspace this file works in. The daemon's bootstrap workspace is shared by every
// HOOKD_API_KEY given to any daemon on the database (see the isolation test below), so this file
// makes its own workspace with `hookd workspace create` to stay exact even when other suites use
// the same database at the same time.
let ws;
let KEY;

// Strings that must never appear in any response body (and never in the logs).
const SECRETS = new Set();
function secret(prefix = 'secret') {
  const s = randomToken(prefix);
  SECRETS.add(s);
  return s;
}

const SUPPORTED_TYPES = [
  'crm_contact',
  'crm_company',
  'crm_deal',
  'ats_candidate',
  'ats_job',
  'ats_application',
  'hris_employee',
  'ticketing_ticket',
];

before(async () => {
  stub = await startStub();
  d = await startDaemon({ env: { HOOKD_LOG_FORMAT: 'json' } });
  ws = await createWorkspace(uniqueName('api-e2e'), hookdEnvOf(d));
  KEY = ws.apiKey;
  req = makeRequest(d.url, KEY, d);
});

after(async () => {
  await d?.stop();
  await stub?.close();
});

// ---------------------------------------------------------------- helpers

function show(r) {
  return `HTTP ${r.status} ${r.text.length > 2000 ? r.text.slice(0, 2000) + '…' : r.text}`;
}

function expectOk(r, status = 200) {
  assert.equal(r.status, status, `expected HTTP ${status}; got ${show(r)}`);
}

function expectError(r, status, code, field) {
  assert.equal(r.status, status, `expected HTTP ${status} ${code}${field ? ` (field ${field})` : ''}; got ${show(r)}`);
  assert.ok(r.json && typeof r.json === 'object' && r.json.error && typeof r.json.error === 'object',
    `expected {"error":{...}}; got ${show(r)}`);
  const e = r.json.error;
  assert.equal(e.status, status, `error.status; got ${show(r)}`);
  assert.equal(e.code, code, `error.code; got ${show(r)}`);
  assert.equal(typeof e.message, 'string', `error.message must be a string; got ${show(r)}`);
  assert.ok(e.message.length > 0, `error.message must not be empty; got ${show(r)}`);
  if (field !== undefined) {
    assert.equal(e.field, field, `error.field; got ${show(r)}`);
    assert.ok(e.message.includes(field), `error.message should name the field "${field}"; got ${show(r)}`);
  }
  assert.match(r.headers.get('content-type') || '', /^application\/json/i, 'error responses are JSON');
  return e;
}

function expectEmpty200(r) {
  assert.equal(r.status, 200, `expected HTTP 200 with an empty body; got ${show(r)}`);
  assert.equal(r.text, '', `expected an empty body; got ${show(r)}`);
}

function assertTimestamp(v, name) {
  assert.equal(typeof v, 'string', `${name} must be a string, got ${JSON.stringify(v)}`);
  assert.match(v, ISO_MS_Z, `${name} must look like 2026-11-27T15:54:53.123Z, got ${v}`);
  const t = Date.parse(v);
  assert.ok(Math.abs(t - Date.now()) < 10 * 60_000, `${name} ${v} should be close to now`);
}

function assertNoNulls(obj, where) {
  for (const [k, v] of Object.entries(obj)) {
    assert.notEqual(v, null, `${where}.${k} is null (omit the key instead: the SDK rejects null)`);
  }
}

async function listAll(kind, query = '') {
  const r = await req('GET', `/unified/${kind}?limit=1000${query ? `&${query}` : ''}`);
  expectOk(r);
  assert.ok(Array.isArray(r.json), `GET /unified/${kind} must return a bare JSON array; got ${show(r)}`);
  return r.json;
}

// Fields the scheduler maintains while tests run (polls of the stub source, runs).
const SCHEDULER_FIELDS = ['checked_at', 'runs', 'is_healthy', 'last_healthy_at', 'last_unhealthy_at', 'last_unhealthy_code'];

// Everything in the workspace, to prove that a rejected request wrote nothing.
async function snapshot(request = req) {
  const get = async (kind) => {
    const r = await request('GET', `/unified/${kind}?limit=1000`);
    expectOk(r);
    assert.ok(Array.isArray(r.json), show(r));
    const items = r.json.map((o) => Object.fromEntries(Object.entries(o).filter(([k]) => !SCHEDULER_FIELDS.includes(k))));
    return items.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  };
  return { connections: await get('connection'), webhooks: await get('webhook') };
}

async function assertNothingWritten(before, request = req) {
  const now = await snapshot(request);
  assert.deepEqual(now, before, 'a rejected request must not write anything');
}

/** Sends a request that must be rejected; checks the error and that nothing changed. */
async function rejected(method, path, opts, status, code, field) {
  const before = await snapshot();
  const r = await req(method, path, opts);
  const e = expectError(r, status, code, field);
  await assertNothingWritten(before);
  return e;
}

async function createConnection(extra = {}) {
  const r = await req('POST', '/unified/connection', {
    body: { integration_type: 'jsonserver', auth: { api_url: stub.url }, external_xref: uniqueName('xref'), ...extra },
  });
  expectOk(r);
  return r.json;
}

function hookBody(conn, extra = {}) {
  return {
    connection_id: conn.id,
    hook_url: `${stub.url}/hook`,
    object_type: 'crm_contact',
    event: 'created',
    ...extra,
  };
}

async function createWebhook(conn, extra = {}, query = '') {
  const r = await req('POST', `/unified/webhook${query}`, { body: hookBody(conn, extra) });
  expectOk(r);
  return r.json;
}

function ids(list) {
  return list.map((x) => x.id);
}

function sameIdSet(a, b) {
  return JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
}

// ---------------------------------------------------------------- health

describe('health endpoints', () => {
  test('GET /healthz without a key is 200 with a JSON body', async () => {
    const r = await req('GET', '/healthz', { auth: null });
    expectOk(r);
    assert.ok(r.json !== null && typeof r.json === 'object', `JSON body expected; got ${show(r)}`);
  });

  test('GET /readyz without a key is 200 with a JSON body (database reachable and migrated)', async () => {
    const r = await req('GET', '/readyz', { auth: null });
    expectOk(r);
    assert.ok(r.json !== null && typeof r.json === 'object', `JSON body expected; got ${show(r)}`);
  });

  test('a fresh workspace starts empty', async () => {
    assert.deepEqual(await listAll('connection'), []);
    assert.deepEqual(await listAll('webhook'), []);
  });
});

// ---------------------------------------------------------------- auth

describe('authentication', () => {
  let conn;
  let hook;
  before(async () => {
    conn = await createConnection();
    hook = await createWebhook(conn);
  });

  test('the bootstrap HOOKD_API_KEY authenticates (plain and Bearer)', async () => {
    const boot = makeRequest(d.url, d.apiKey, d);
    expectOk(await boot('GET', '/unified/connection'));
    expectOk(await boot('GET', '/unified/webhook', { auth: `Bearer ${d.apiKey}` }));
  });

  test('plain key in authorization is accepted', async () => {
    expectOk(await req('GET', '/unified/connection', { auth: KEY }));
  });

  test('"Bearer <key>" is accepted', async () => {
    expectOk(await req('GET', '/unified/connection', { auth: `Bearer ${KEY}` }));
  });

  test('"bearer <key>" (lowercase) is accepted', async () => {
    expectOk(await req('GET', '/unified/webhook', { auth: `bearer ${KEY}` }));
  });

  test('"BeArEr <key>" (mixed case) is accepted', async () => {
    expectOk(await req('GET', `/unified/webhook/${hook.id}`, { auth: `BeArEr ${KEY}` }));
  });

  const routes = () => [
    ['GET', '/unified/connection'],
    ['POST', '/unified/connection', { body: { integration_type: 'jsonserver' } }],
    ['GET', `/unified/connection/${conn.id}`],
    ['PUT', `/unified/connection/${conn.id}`, { body: { integration_type: 'jsonserver', integration_name: 'x' } }],
    ['PATCH', `/unified/connection/${conn.id}`, { body: { integration_name: 'x' } }],
    ['DELETE', `/unified/connection/${conn.id}`],
    ['GET', '/unified/connection/does-not-exist'],
    ['GET', '/unified/webhook'],
    ['POST', '/unified/webhook', { body: hookBody(conn) }],
    ['GET', `/unified/webhook/${hook.id}`],
    ['PUT', `/unified/webhook/${hook.id}`, { body: hookBody(conn, { event: 'updated' }) }],
    ['PATCH', `/unified/webhook/${hook.id}`, { body: { interval: 120 } }],
    ['DELETE', `/unified/webhook/${hook.id}`],
    ['PUT', `/unified/webhook/${hook.id}/trigger`],
    ['PATCH', `/unified/webhook/${hook.id}/trigger`],
    ['GET', '/unified/webhook/does-not-exist'],
  ];

  for (const [label, auth] of [
    ['missing authorization', () => null],
    ['a wrong key', () => 'wrong-key-' + randomToken('x')],
    ['a wrong Bearer key', () => 'Bearer wrong-key-' + randomToken('x')],
    ['"Bearer" with no key', () => 'Bearer'],
    ['Basic credentials', () => 'Basic ' + Buffer.from('user:pass').toString('base64')],
    ['the key with a suffix', () => `${KEY}x`],
    ['a prefix of the key', () => KEY.slice(0, -1)],
    ["the workspace's secret instead of its key", () => ws.workspaceSecret],
  ]) {
    test(`${label} -> 401 unauthorized on every API route, nothing written`, async () => {
      const a = auth();
      const before = await snapshot();
      for (const [method, path, opts] of routes()) {
        const r = await req(method, path, { ...(opts || {}), auth: a });
        assert.equal(r.status, 401, `${method} ${path} with ${label}: ${show(r)}`);
        expectError(r, 401, 'unauthorized');
      }
      await assertNothingWritten(before);
    });
  }
});

// ---------------------------------------------------------------- connections

describe('connections', () => {
  test('POST minimal connection -> 200 with defaults', async () => {
    const r = await req('POST', '/unified/connection', { body: { integration_type: 'jsonserver' } });
    expectOk(r);
    const c = r.json;
    assert.equal(typeof c.id, 'string');
    assert.ok(c.id.length > 0);
    assertTimestamp(c.created_at, 'created_at');
    assertTimestamp(c.updated_at, 'updated_at');
    assert.equal(typeof c.workspace_id, 'string');
    assert.ok(c.workspace_id.length > 0);
    assert.equal(c.integration_type, 'jsonserver');
    assert.ok(Array.isArray(c.categories), 'categories is an array');
    assert.ok(Array.isArray(c.permissions), 'permissions is an array');
    assert.equal(c.environment, 'Production');
    assert.equal(c.is_paused, false);
    assertNoNulls(c, 'connection');
    const g = await req('GET', `/unified/connection/${c.id}`);
    expectOk(g);
    assert.deepEqual(g.json, c);
  });

  test('POST full connection: fields echoed, auth redacted, secrets never returned', async () => {
    const s = {
      token: secret('token'),
      access_token: secret('access'),
      refresh_token: secret('refresh'),
      client_secret: secret('clientsecret'),
      key: secret('key'),
      meta: secret('meta'),
    };
    const clientId = uniqueName('client-id'); // not a secret (OAuth client ids are public)
    const body = {
      integration_type: 'jsonserver',
      integration_name: uniqueName('name'),
      categories: ['crm', 'ats'],
      permissions: ['crm_contact_read', 'ats_candidate_read'],
      auth: {
        api_url: stub.url,
        token_url: `${stub.url}/oauth/token`,
        authorize_url: `${stub.url}/oauth/authorize`,
        refresh_url: `${stub.url}/oauth/refresh`,
        token: s.token,
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        client_id: clientId,
        client_secret: s.client_secret,
        key: s.key,
        expires_in: 3600,
        meta: { nested: s.meta },
        emails: ['someone@example.test'],
      },
      environment: 'Sandbox',
      external_xref: uniqueName('xref'),
      is_paused: true,
    };
    const r = await req('POST', '/unified/connection', { body });
    expectOk(r);
    const c = r.json;
    assert.equal(c.integration_type, 'jsonserver');
    assert.equal(c.integration_name, body.integration_name);
    assert.deepEqual(c.categories, body.categories);
    assert.deepEqual(c.permissions, body.permissions);
    assert.equal(c.environment, 'Sandbox');
    assert.equal(c.external_xref, body.external_xref);
    assert.equal(c.is_paused, true);
    // URLs in clear; secret strings as "********"; never a secret value.
    const { client_id: cid, expires_in: exp, emails, meta, ...auth } = c.auth;
    assert.deepEqual(auth, {
      api_url: body.auth.api_url,
      token_url: body.auth.token_url,
      authorize_url: body.auth.authorize_url,
      refresh_url: body.auth.refresh_url,
      token: '********',
      access_token: '********',
      refresh_token: '********',
      client_secret: '********',
      key: '********',
    });
    // Non-secret, typed values: omitted (the contract) or shown as given (SDK-friendly).
    assert.ok(cid === '********' || cid === clientId, `client_id: ${cid}`);
    assert.ok(exp === undefined || exp === 3600, `expires_in: ${exp}`);
    assert.ok(emails === undefined || JSON.stringify(emails) === JSON.stringify(body.auth.emails), `emails: ${emails}`);
    assert.equal(meta, undefined, 'meta (an object that may hold secrets) must not be returned');
    for (const v of Object.values(s)) assert.ok(!r.text.includes(v), `secret ${v} leaked in POST response`);
    assertNoNulls(c, 'connection');

    const g = await req('GET', `/unified/connection/${c.id}`);
    expectOk(g);
    assert.deepEqual(g.json, c);
    const l = await req('GET', '/unified/connection?limit=1000');
    for (const resp of [g, l]) {
      for (const v of Object.values(s)) assert.ok(!resp.text.includes(v), `secret ${v} leaked`);
    }
  });

  test('POST with content-type "application/json; charset=utf-8" and "Application/JSON" is accepted', async () => {
    for (const ct of ['application/json; charset=utf-8', 'Application/JSON']) {
      const r = await req('POST', '/unified/connection', {
        rawBody: JSON.stringify({ integration_type: 'jsonserver' }),
        headers: { 'content-type': ct },
      });
      expectOk(r);
    }
  });

  describe('POST /unified/connection rejects bad input and writes nothing', () => {
    const xref = () => uniqueName('rejected');
    const cases = [
      ['missing integration_type', () => ({ body: { integration_name: 'x', external_xref: xref() } }), 400, 'invalid_field', 'integration_type'],
      ['unknown integration_type', () => ({ body: { integration_type: 'no-such-integration', external_xref: xref() } }), 400, 'invalid_field', 'integration_type'],
      ['integration_type not a string', () => ({ body: { integration_type: 42, external_xref: xref() } }), 400, 'invalid_field', 'integration_type'],
      ['categories not an array', () => ({ body: { integration_type: 'jsonserver', categories: 'crm', external_xref: xref() } }), 400, 'invalid_field', 'categories'],
      ['permissions not an array', () => ({ body: { integration_type: 'jsonserver', permissions: { a: 1 }, external_xref: xref() } }), 400, 'invalid_field', 'permissions'],
      ['auth not an object', () => ({ body: { integration_type: 'jsonserver', auth: 'token', external_xref: xref() } }), 400, 'invalid_field', 'auth'],
      ['is_paused not a boolean', () => ({ body: { integration_type: 'jsonserver', is_paused: 'yes', external_xref: xref() } }), 400, 'invalid_field', 'is_paused'],
      ['integration_name not a string', () => ({ body: { integration_type: 'jsonserver', integration_name: 7, external_xref: xref() } }), 400, 'invalid_field', 'integration_name'],
      ['unknown field', () => ({ body: { integration_type: 'jsonserver', bogus_field: 1, external_xref: xref() } }), 400, 'unknown_field', 'bogus_field'],
      ['body is an array', () => ({ body: [{ integration_type: 'jsonserver' }] }), 400, 'invalid_body'],
      ['body is a string', () => ({ body: 'jsonserver' }), 400, 'invalid_body'],
      ['body is null', () => ({ rawBody: 'null' }), 400, 'invalid_body'],
      ['body is a number', () => ({ rawBody: '42' }), 400, 'invalid_body'],
      ['malformed JSON (truncated)', () => ({ rawBody: `{"integration_type":"jsonserver","external_xref":"${xref()}",` }), 400, 'invalid_json'],
      ['malformed JSON (trailing garbage)', () => ({ rawBody: `{"integration_type":"jsonserver"} trailing` }), 400, 'invalid_json'],
      ['malformed JSON (single quotes)', () => ({ rawBody: `{'integration_type':'jsonserver'}` }), 400, 'invalid_json'],
      ['content-type text/plain', () => ({ rawBody: JSON.stringify({ integration_type: 'jsonserver' }), headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
      ['content-type application/x-www-form-urlencoded', () => ({ rawBody: 'integration_type=jsonserver', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type'],
    ];
    for (const [name, opts, status, code, field] of cases) {
      test(name, async () => {
        await rejected('POST', '/unified/connection', opts(), status, code, field);
      });
    }

    test('unknown integration_type: message names integration_type and lists the known ones (jsonserver)', async () => {
      const e = await rejected('POST', '/unified/connection', { body: { integration_type: 'nope-nope' } }, 400, 'invalid_field', 'integration_type');
      assert.ok(e.message.includes('jsonserver'), `message should list known integrations: ${e.message}`);
    });

    test('2 MiB body -> 413 payload_too_large, nothing written, daemon still serves', async () => {
      const big = JSON.stringify({ integration_type: 'jsonserver', integration_name: 'x'.repeat(2 * 1024 * 1024) });
      await rejected('POST', '/unified/connection', { rawBody: big }, 413, 'payload_too_large');
      expectOk(await req('GET', '/healthz', { auth: null }));
    });
  });

  describe('list: filters, sort, order, limit, offset', () => {
    let c1, c2, c3;
    const tag = uniqueName('list');
    before(async () => {
      c1 = await createConnection({ integration_name: `aaa-${tag}`, categories: ['crm'], environment: 'Production' });
      await sleep(30);
      c2 = await createConnection({ integration_name: `ccc-${tag}`, categories: ['ats'], environment: 'Sandbox' });
      await sleep(30);
      c3 = await createConnection({ integration_name: `bbb-${tag}`, categories: ['crm', 'ats'], environment: 'Production' });
    });

    test('GET /unified/connection is a bare array containing the created connections', async () => {
      const all = await listAll('connection');
      for (const c of [c1, c2, c3]) {
        const found = all.find((x) => x.id === c.id);
        assert.ok(found, `connection ${c.id} missing from list`);
        assert.deepEqual(found, c);
      }
    });

    test('sort=created_at order=asc / desc', async () => {
      const asc = await listAll('connection', 'sort=created_at&order=asc');
      const desc = await listAll('connection', 'sort=created_at&order=desc');
      const times = (l) => l.map((x) => Date.parse(x.created_at));
      const ta = times(asc);
      for (let i = 1; i < ta.length; i++) assert.ok(ta[i - 1] <= ta[i], 'asc must be non-decreasing');
      const td = times(desc);
      for (let i = 1; i < td.length; i++) assert.ok(td[i - 1] >= td[i], 'desc must be non-increasing');
      const mine = (l) => ids(l).filter((id) => [c1.id, c2.id, c3.id].includes(id));
      assert.deepEqual(mine(asc), [c1.id, c2.id, c3.id]);
      assert.deepEqual(mine(desc), [c3.id, c2.id, c1.id]);
    });

    test('sort=name orders by name', async () => {
      const mine = (l) => ids(l).filter((id) => [c1.id, c2.id, c3.id].includes(id));
      assert.deepEqual(mine(await listAll('connection', 'sort=name&order=asc')), [c1.id, c3.id, c2.id]);
      assert.deepEqual(mine(await listAll('connection', 'sort=name&order=desc')), [c2.id, c3.id, c1.id]);
    });

    test('sort=updated_at follows updates', async () => {
      await sleep(20);
      const p = await req('PATCH', `/unified/connection/${c1.id}`, { body: { integration_name: `aaa-${tag}-patched` } });
      expectOk(p);
      const asc = await listAll('connection', 'sort=updated_at&order=asc');
      const mine = ids(asc).filter((id) => [c1.id, c2.id, c3.id].includes(id));
      assert.deepEqual(mine, [c2.id, c3.id, c1.id]);
      const desc = await listAll('connection', 'sort=updated_at&order=desc');
      assert.equal(desc[0].id, c1.id, 'most recently updated first in desc');
      c1 = p.json;
    });

    test('limit and offset page through the sorted list', async () => {
      const all = await listAll('connection', 'sort=created_at&order=asc');
      assert.ok(all.length >= 3);
      const r1 = await req('GET', '/unified/connection?sort=created_at&order=asc&limit=2');
      expectOk(r1);
      assert.deepEqual(ids(r1.json), ids(all.slice(0, 2)));
      const r2 = await req('GET', '/unified/connection?sort=created_at&order=asc&limit=2&offset=1');
      expectOk(r2);
      assert.deepEqual(ids(r2.json), ids(all.slice(1, 3)));
      const r3 = await req('GET', `/unified/connection?sort=created_at&order=asc&offset=${all.length}`);
      expectOk(r3);
      assert.deepEqual(r3.json, []);
    });

    test('updated_gte and created_lte (inclusive, using the timestamps the API returned)', async () => {
      const g = await listAll('connection', `updated_gte=${encodeURIComponent(c2.updated_at)}`);
      assert.ok(ids(g).includes(c2.id), 'updated_gte is inclusive of the returned updated_at');
      assert.ok(ids(g).includes(c3.id));
      const l = await listAll('connection', `created_lte=${encodeURIComponent(c2.created_at)}`);
      assert.ok(ids(l).includes(c1.id));
      assert.ok(ids(l).includes(c2.id), `created_lte=${c2.created_at} must include the connection created at exactly that (returned) time`);
      assert.ok(!ids(l).includes(c3.id), 'created_lte excludes later connections');
      const future = await listAll('connection', `updated_gte=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`);
      assert.deepEqual(future, []);
    });

    test('env filter', async () => {
      const sb = await listAll('connection', 'env=Sandbox');
      assert.ok(ids(sb).includes(c2.id));
      assert.ok(!ids(sb).includes(c1.id) && !ids(sb).includes(c3.id));
      for (const c of sb) assert.equal(c.environment, 'Sandbox');
      const prod = await listAll('connection', 'env=Production');
      assert.ok(ids(prod).includes(c1.id) && ids(prod).includes(c3.id));
      assert.ok(!ids(prod).includes(c2.id));
    });

    test('categories filter', async () => {
      const ats = await listAll('connection', 'categories=ats');
      assert.ok(ids(ats).includes(c2.id) && ids(ats).includes(c3.id));
      assert.ok(!ids(ats).includes(c1.id));
      for (const c of ats) assert.ok(c.categories.includes('ats'));
    });

    test('external_xref filter', async () => {
      const x = await listAll('connection', `external_xref=${encodeURIComponent(c3.external_xref)}`);
      assert.deepEqual(ids(x), [c3.id]);
      assert.deepEqual(await listAll('connection', `external_xref=${uniqueName('none')}`), []);
    });

    for (const [q, field] of [
      ['bogus=1', 'bogus'],
      ['limit=abc', 'limit'],
      ['limit=-1', 'limit'],
      ['offset=-1', 'offset'],
      ['offset=abc', 'offset'],
      ['sort=colour', 'sort'],
      ['order=sideways', 'order'],
      ['updated_gte=yesterday', 'updated_gte'],
      ['created_lte=not-a-date', 'created_lte'],
    ]) {
      test(`GET /unified/connection?${q} -> 400 invalid_query (field ${field})`, async () => {
        const r = await req('GET', `/unified/connection?${q}`);
        expectError(r, 400, 'invalid_query', field);
      });
    }
  });

  describe('update', () => {
    test('PATCH changes only the given fields and bumps updated_at', async () => {
      const tok = secret('patchtok');
      const c = await createConnection({
        integration_name: 'before',
        categories: ['crm'],
        permissions: ['crm_contact_read'],
        auth: { api_url: stub.url, token: tok },
      });
      await sleep(20);
      const r = await req('PATCH', `/unified/connection/${c.id}`, { body: { integration_name: 'after' } });
      expectOk(r);
      const p = r.json;
      assert.equal(p.integration_name, 'after');
      assert.equal(p.id, c.id);
      assert.equal(p.created_at, c.created_at);
      assert.ok(Date.parse(p.updated_at) > Date.parse(c.updated_at), 'updated_at must advance');
      const { integration_name: _a, updated_at: _b, ...restBefore } = c;
      const { integration_name: _c, updated_at: _d, ...restAfter } = p;
      assert.deepEqual(restAfter, restBefore, 'other fields unchanged (auth still redacted the same way)');
      assert.ok(!r.text.includes(tok));
      const g = await req('GET', `/unified/connection/${c.id}`);
      assert.deepEqual(g.json, p);
    });

    test('PATCH auth replaces secrets, still redacted', async () => {
      const c = await createConnection({ auth: { api_url: stub.url, token: secret('old') } });
      const tok = secret('new');
      const r = await req('PATCH', `/unified/connection/${c.id}`, { body: { auth: { api_url: stub.url, token: tok } } });
      expectOk(r);
      assert.equal(r.json.auth.token, '********');
      assert.equal(r.json.auth.api_url, stub.url);
      assert.ok(!r.text.includes(tok));
    });

    test('PUT replaces the connection', async () => {
      const c = await createConnection({ integration_name: 'put-before', categories: ['crm'], is_paused: true });
      const xref = uniqueName('putxref');
      const r = await req('PUT', `/unified/connection/${c.id}`, {
        body: {
          integration_type: 'jsonserver',
          integration_name: 'put-after',
          categories: ['ats'],
          permissions: [],
          auth: { api_url: stub.url },
          external_xref: xref,
          is_paused: false,
        },
      });
      expectOk(r);
      assert.equal(r.json.id, c.id);
      assert.equal(r.json.created_at, c.created_at);
      assert.equal(r.json.integration_name, 'put-after');
      assert.deepEqual(r.json.categories, ['ats']);
      assert.equal(r.json.external_xref, xref);
      assert.equal(r.json.is_paused, false);
      const g = await req('GET', `/unified/connection/${c.id}`);
      assert.deepEqual(g.json, r.json);
    });

    describe('rejected updates change nothing', () => {
      let c;
      before(async () => {
        c = await createConnection({ integration_name: 'stable' });
      });
      const cases = [
        ['PATCH', 'unknown field', () => ({ body: { nope: 1 } }), 400, 'unknown_field', 'nope'],
        ['PATCH', 'unknown integration_type', () => ({ body: { integration_type: 'nope' } }), 400, 'invalid_field', 'integration_type'],
        ['PATCH', 'categories not an array', () => ({ body: { categories: 'crm' } }), 400, 'invalid_field', 'categories'],
        ['PATCH', 'malformed JSON', () => ({ rawBody: '{"integration_name":' }), 400, 'invalid_json'],
        ['PATCH', 'array body', () => ({ body: [] }), 400, 'invalid_body'],
        ['PATCH', 'text/plain', () => ({ rawBody: '{"integration_name":"x"}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
        ['PUT', 'unknown field', () => ({ body: { integration_type: 'jsonserver', nope: 1 } }), 400, 'unknown_field', 'nope'],
        ['PUT', 'unknown integration_type', () => ({ body: { integration_type: 'nope' } }), 400, 'invalid_field', 'integration_type'],
        ['PUT', 'malformed JSON', () => ({ rawBody: '{' }), 400, 'invalid_json'],
      ];
      for (const [method, name, opts, status, code, field] of cases) {
        test(`${method} ${name} -> ${status} ${code}`, async () => {
          await rejected(method, `/unified/connection/${c.id}`, opts(), status, code, field);
        });
      }
      test('PATCH with a 2 MiB body -> 413', async () => {
        const big = JSON.stringify({ integration_name: 'y'.repeat(2 * 1024 * 1024) });
        await rejected('PATCH', `/unified/connection/${c.id}`, { rawBody: big }, 413, 'payload_too_large');
      });
    });

    test('GET/PUT/PATCH/DELETE unknown id -> 404 not_found', async () => {
      const id = uniqueName('missing');
      const before = await snapshot();
      expectError(await req('GET', `/unified/connection/${id}`), 404, 'not_found');
      expectError(await req('PATCH', `/unified/connection/${id}`, { body: { integration_name: 'x' } }), 404, 'not_found');
      expectError(await req('PUT', `/unified/connection/${id}`, { body: { integration_type: 'jsonserver' } }), 404, 'not_found');
      expectError(await req('DELETE', `/unified/connection/${id}`), 404, 'not_found');
      await assertNothingWritten(before);
    });
  });

  test('DELETE a connection -> 200 empty body, deletes its webhooks, leaves others alone', async () => {
    const victim = await createConnection();
    const other = await createConnection();
    const h1 = await createWebhook(victim, { event: 'created' });
    const h2 = await createWebhook(victim, { event: 'deleted', object_type: 'crm_company' });
    const h3 = await createWebhook(other, { event: 'updated' });
    expectEmpty200(await req('DELETE', `/unified/connection/${victim.id}`));
    expectError(await req('GET', `/unified/connection/${victim.id}`), 404, 'not_found');
    expectError(await req('GET', `/unified/webhook/${h1.id}`), 404, 'not_found');
    expectError(await req('GET', `/unified/webhook/${h2.id}`), 404, 'not_found');
    assert.deepEqual(await listAll('webhook', `connection_id=${victim.id}`), []);
    assert.ok(!ids(await listAll('webhook')).some((id) => id === h1.id || id === h2.id));
    assert.ok(!ids(await listAll('connection')).includes(victim.id));
    const g = await req('GET', `/unified/webhook/${h3.id}`);
    expectOk(g);
    assert.deepEqual(g.json, h3);
    expectOk(await req('GET', `/unified/connection/${other.id}`));
    expectError(await req('DELETE', `/unified/connection/${victim.id}`), 404, 'not_found');
  });
});

// ---------------------------------------------------------------- webhooks

describe('webhooks', () => {
  let conn;
  before(async () => {
    conn = await createConnection();
  });

  test('POST minimal webhook -> 200 with every field and the defaults', async () => {
    const r = await req('POST', '/unified/webhook', { body: hookBody(conn) });
    expectOk(r);
    const w = r.json;
    assert.equal(typeof w.id, 'string');
    assert.ok(w.id.length > 0);
    assertTimestamp(w.created_at, 'created_at');
    assertTimestamp(w.updated_at, 'updated_at');
    assert.equal(w.workspace_id, conn.workspace_id);
    assert.equal(w.connection_id, conn.id);
    assert.equal(w.hook_url, `${stub.url}/hook`);
    assert.equal(w.object_type, 'crm_contact');
    assert.equal(w.interval, 60);
    assert.equal(w.integration_type, 'jsonserver');
    assert.equal(w.environment, 'Production');
    assert.equal(w.event, 'created');
    assert.ok(Array.isArray(w.runs), 'runs is an array');
    assert.equal(w.webhook_type, 'virtual');
    assert.equal(w.is_healthy, true);
    assert.equal(w.page_max_limit, 100);
    assert.deepEqual(w.filters, {});
    assert.equal(w.is_paused, false);
    assert.equal(w.is_beta, false);
    assert.ok(!('db_url' in w));
    assertNoNulls(w, 'webhook');
    if ('checked_at' in w) assertTimestamp(w.checked_at, 'checked_at');
    const g = await req('GET', `/unified/webhook/${w.id}`);
    expectOk(g);
    assert.deepEqual(g.json, w);
  });

  test('POST full webhook (include_all=true) echoes every writable field', async () => {
    const body = hookBody(conn, {
      object_type: 'ats_candidate',
      event: 'updated',
      interval: 120,
      fields: 'id,name,emails',
      webhook_type: 'virtual',
      page_max_limit: 50,
      filters: { name: 'Ada', status: 'active' },
      is_paused: true,
      is_beta: true,
    });
    const r = await req('POST', '/unified/webhook?include_all=true', { body });
    expectOk(r);
    const w = r.json;
    for (const k of ['connection_id', 'hook_url', 'object_type', 'event', 'interval', 'fields', 'webhook_type', 'page_max_limit', 'is_paused', 'is_beta']) {
      assert.deepEqual(w[k], body[k], k);
    }
    assert.deepEqual(w.filters, body.filters);
    assert.equal(w.integration_type, 'jsonserver');
    assert.equal(w.environment, 'Production');
    assertNoNulls(w, 'webhook');
    const r2 = await req('POST', '/unified/webhook?include_all=false', { body: hookBody(conn) });
    expectOk(r2);
  });

  test('fractional interval down to the minimum (1 minute by default) is accepted', async () => {
    for (const interval of [1, 1.5, 60.25, 1440]) {
      const w = await createWebhook(conn, { interval });
      assert.equal(w.interval, interval);
    }
  });

  test('every object type jsonserver supports can be subscribed', async () => {
    for (const object_type of SUPPORTED_TYPES) {
      for (const event of ['created', 'updated', 'deleted']) {
        const w = await createWebhook(conn, { object_type, event });
        assert.equal(w.object_type, object_type);
        assert.equal(w.event, event);
      }
    }
  });

  test('page_max_limit bounds 1 and 1000 are accepted', async () => {
    assert.equal((await createWebhook(conn, { page_max_limit: 1 })).page_max_limit, 1);
    assert.equal((await createWebhook(conn, { page_max_limit: 1000 })).page_max_limit, 1000);
  });

  test('db_type + db_url without hook_url is accepted; db_url (and its password) never returned', async () => {
    const pw = secret('dbpw');
    const u = new URL(DATABASE_URL);
    u.username = u.username || 'postgres';
    u.password = pw;
    const dbUrl = u.toString();
    SECRETS.add(dbUrl);
    for (const db_type of ['postgres', 'supabase']) {
      const body = {
        connection_id: conn.id,
        object_type: 'crm_contact',
        event: 'created',
        db_type,
        db_url: dbUrl,
        db_schema: 'public',
        db_name_prefix: 'e2e_',
      };
      const r = await req('POST', '/unified/webhook', { body });
      expectOk(r);
      assert.ok(!('db_url' in r.json), 'db_url must not be returned');
      assert.ok(!r.text.includes(pw), 'db_url password leaked');
      if ('db_type' in r.json) assert.equal(r.json.db_type, db_type);
      const g = await req('GET', `/unified/webhook/${r.json.id}`);
      expectOk(g);
      assert.ok(!('db_url' in g.json));
      assert.ok(!g.text.includes(pw));
      const p = await req('PATCH', `/unified/webhook/${r.json.id}`, { body: { interval: 90 } });
      expectOk(p);
      assert.ok(!p.text.includes(pw));
      assert.ok(!('db_url' in p.json));
    }
  });

  test('read-only fields in the body are ignored', async () => {
    const r = await req('POST', '/unified/webhook', {
      body: hookBody(conn, {
        id: 'client-chosen-id',
        created_at: '2000-01-01T00:00:00.000Z',
        updated_at: '2000-01-01T00:00:00.000Z',
        workspace_id: 'someone-elses-workspace',
        checked_at: '2000-01-01T00:00:00.000Z',
        integration_type: 'hubspot',
        environment: 'Sandbox',
        runs: ['fake run'],
        is_healthy: false,
      }),
    });
    expectOk(r);
    const w = r.json;
    assert.notEqual(w.id, 'client-chosen-id');
    assertTimestamp(w.created_at, 'created_at');
    assertTimestamp(w.updated_at, 'updated_at');
    assert.equal(w.workspace_id, conn.workspace_id);
    assert.equal(w.integration_type, 'jsonserver');
    assert.equal(w.environment, 'Production');
    assert.ok(!w.runs.includes('fake run'));
    assert.equal(w.is_healthy, true);
    if ('checked_at' in w) assert.notEqual(w.checked_at, '2000-01-01T00:00:00.000Z');
    expectError(await req('GET', '/unified/webhook/client-chosen-id'), 404, 'not_found');
  });

  describe('POST /unified/webhook rejects bad input and writes nothing', () => {
    const body = (extra = {}) => hookBody(conn, extra);
    const without = (k) => {
      const b = body();
      delete b[k];
      return b;
    };
    const cases = [
      ['missing connection_id', () => ({ body: without('connection_id') }), 400, 'invalid_field', 'connection_id'],
      ['unknown connection_id', () => ({ body: body({ connection_id: uniqueName('nope') }) }), 400, 'invalid_field', 'connection_id'],
      ['connection_id not a string', () => ({ body: body({ connection_id: 12 }) }), 400, 'invalid_field', 'connection_id'],
      ['missing object_type', () => ({ body: without('object_type') }), 400, 'invalid_field', 'object_type'],
      ['object_type not a Unified type', () => ({ body: body({ object_type: 'crm_spaceship' }) }), 400, 'invalid_field', 'object_type'],
      ['object_type the integration lacks (accounting_invoice)', () => ({ body: body({ object_type: 'accounting_invoice' }) }), 400, 'invalid_field', 'object_type'],
      ['object_type the integration lacks (crm_lead)', () => ({ body: body({ object_type: 'crm_lead' }) }), 400, 'invalid_field', 'object_type'],
      ['missing event', () => ({ body: without('event') }), 400, 'invalid_field', 'event'],
      ['event not in the enum', () => ({ body: body({ event: 'exploded' }) }), 400, 'invalid_field', 'event'],
      ['event wrong case', () => ({ body: body({ event: 'Created' }) }), 400, 'invalid_field', 'event'],
      ['missing hook_url (no db)', () => ({ body: without('hook_url') }), 400, 'invalid_field', 'hook_url'],
      ['hook_url not a URL', () => ({ body: body({ hook_url: 'not a url' }) }), 400, 'invalid_field', 'hook_url'],
      ['hook_url relative', () => ({ body: body({ hook_url: '/hook' }) }), 400, 'invalid_field', 'hook_url'],
      ['hook_url ftp scheme', () => ({ body: body({ hook_url: 'ftp://127.0.0.1/hook' }) }), 400, 'invalid_field', 'hook_url'],
      ['hook_url without host', () => ({ body: body({ hook_url: 'http://' }) }), 400, 'invalid_field', 'hook_url'],
      ['hook_url empty', () => ({ body: body({ hook_url: '' }) }), 400, 'invalid_field', 'hook_url'],
      ['hook_url not a string', () => ({ body: body({ hook_url: 5 }) }), 400, 'invalid_field', 'hook_url'],
      ['interval below the minimum (0.5 min)', () => ({ body: body({ interval: 0.5 }) }), 400, 'invalid_field', 'interval'],
      ['interval 0', () => ({ body: body({ interval: 0 }) }), 400, 'invalid_field', 'interval'],
      ['interval negative', () => ({ body: body({ interval: -60 }) }), 400, 'invalid_field', 'interval'],
      ['interval a string', () => ({ body: body({ interval: '60' }) }), 400, 'invalid_field', 'interval'],
      ['webhook_type not in the enum', () => ({ body: body({ webhook_type: 'telepathic' }) }), 400, 'invalid_field', 'webhook_type'],
      ['page_max_limit 0', () => ({ body: body({ page_max_limit: 0 }) }), 400, 'invalid_field', 'page_max_limit'],
      ['page_max_limit 1001', () => ({ body: body({ page_max_limit: 1001 }) }), 400, 'invalid_field', 'page_max_limit'],
      ['page_max_limit fractional', () => ({ body: body({ page_max_limit: 2.5 }) }), 400, 'invalid_field', 'page_max_limit'],
      ['page_max_limit a string', () => ({ body: body({ page_max_limit: '10' }) }), 400, 'invalid_field', 'page_max_limit'],
      ['filters not an object', () => ({ body: body({ filters: 'name=Ada' }) }), 400, 'invalid_field', 'filters'],
      ['filters an array', () => ({ body: body({ filters: ['a'] }) }), 400, 'invalid_field', 'filters'],
      ['fields not a string', () => ({ body: body({ fields: ['id', 'name'] }) }), 400, 'invalid_field', 'fields'],
      ['is_paused not a boolean', () => ({ body: body({ is_paused: 'true' }) }), 400, 'invalid_field', 'is_paused'],
      ['is_beta not a boolean', () => ({ body: body({ is_beta: 1 }) }), 400, 'invalid_field', 'is_beta'],
      ['db_type not in the enum', () => ({ body: { ...without('hook_url'), db_type: 'mysql', db_url: 'mysql://u:p@127.0.0.1/x' } }), 400, 'invalid_field', 'db_type'],
      ['unknown field', () => ({ body: body({ colour: 'blue' }) }), 400, 'unknown_field', 'colour'],
      ['body is an array', () => ({ body: [body()] }), 400, 'invalid_body'],
      ['body is null', () => ({ rawBody: 'null' }), 400, 'invalid_body'],
      ['malformed JSON', () => ({ rawBody: `{"connection_id":"${conn.id}","object_type":"crm_contact"` }), 400, 'invalid_json'],
      ['content-type text/plain', () => ({ rawBody: JSON.stringify(body()), headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
    ];
    for (const [name, opts, status, code, field] of cases) {
      test(name, async () => {
        await rejected('POST', '/unified/webhook', opts(), status, code, field);
      });
    }

    test('db_type without db_url and without hook_url -> 400 invalid_field (hook_url or db_url)', async () => {
      const before = await snapshot();
      const b = without('hook_url');
      const r = await req('POST', '/unified/webhook', { body: { ...b, db_type: 'postgres' } });
      const e = expectError(r, 400, 'invalid_field');
      assert.ok(['hook_url', 'db_url'].includes(e.field), `field should be hook_url or db_url, got ${e.field}`);
      await assertNothingWritten(before);
    });

    test('enum errors list the valid values', async () => {
      let e = await rejected('POST', '/unified/webhook', { body: body({ event: 'exploded' }) }, 400, 'invalid_field', 'event');
      for (const v of ['created', 'updated', 'deleted']) assert.ok(e.message.includes(v), `event message lists ${v}: ${e.message}`);
      assert.match(e.message, /event must be one of: created, updated, deleted/);
      e = await rejected('POST', '/unified/webhook', { body: body({ webhook_type: 'telepathic' }) }, 400, 'invalid_field', 'webhook_type');
      for (const v of ['virtual', 'native']) assert.ok(e.message.includes(v), `webhook_type message lists ${v}: ${e.message}`);
      e = await rejected('POST', '/unified/webhook', { body: { ...without('hook_url'), db_type: 'mysql', db_url: 'mysql://u:p@127.0.0.1/x' } }, 400, 'invalid_field', 'db_type');
      for (const v of ['postgres', 'supabase']) assert.ok(e.message.includes(v), `db_type message lists ${v}: ${e.message}`);
    });

    test('filters with a non-string value -> 400 invalid_field (field filters or filters.<key>)', async () => {
      const before = await snapshot();
      const r = await req('POST', '/unified/webhook', { body: body({ filters: { age: 3 } }) });
      const e = expectError(r, 400, 'invalid_field');
      assert.ok(e.field === 'filters' || e.field === 'filters.age', `field: ${e.field}`);
      assert.ok(e.message.includes('filters'), e.message);
      await assertNothingWritten(before);
    });

    test('include_all=maybe -> 400 invalid_query include_all', async () => {
      await rejected('POST', '/unified/webhook?include_all=maybe', { body: body() }, 400, 'invalid_query', 'include_all');
    });

    test('unknown query parameter on POST -> 400 invalid_query', async () => {
      await rejected('POST', '/unified/webhook?colour=blue', { body: body() }, 400, 'invalid_query', 'colour');
    });

    test('2 MiB body -> 413 payload_too_large', async () => {
      const big = JSON.stringify(body({ fields: 'f'.repeat(2 * 1024 * 1024) }));
      await rejected('POST', '/unified/webhook', { rawBody: big }, 413, 'payload_too_large');
      expectOk(await req('GET', '/healthz', { auth: null }));
    });
  });

  describe('list: filters, sort, order, limit, offset', () => {
    let a, b, hooks;
    before(async () => {
      a = await createConnection();
      b = await createConnection();
      hooks = [];
      const specs = [
        [a, { object_type: 'crm_contact', event: 'created' }],
        [a, { object_type: 'crm_company', event: 'updated' }],
        [a, { object_type: 'crm_contact', event: 'deleted' }],
        [b, { object_type: 'crm_contact', event: 'created' }],
        [b, { object_type: 'ats_job', event: 'created' }],
      ];
      for (const [c, extra] of specs) {
        hooks.push(await createWebhook(c, extra));
        await sleep(25);
      }
    });

    test('GET /unified/webhook is a bare array containing the webhooks', async () => {
      const all = await listAll('webhook');
      for (const h of hooks) assert.deepEqual(all.find((x) => x.id === h.id), h);
      for (const w of all) assert.ok(!('db_url' in w));
    });

    test('connection_id filter', async () => {
      const la = await listAll('webhook', `connection_id=${a.id}`);
      assert.ok(sameIdSet(ids(la), ids(hooks.slice(0, 3))), JSON.stringify(ids(la)));
      const lb = await listAll('webhook', `connection_id=${b.id}`);
      assert.ok(sameIdSet(ids(lb), ids(hooks.slice(3))));
    });

    test('object filter', async () => {
      const l = await listAll('webhook', `object=crm_contact&connection_id=${a.id}`);
      assert.ok(sameIdSet(ids(l), [hooks[0].id, hooks[2].id]));
      const all = await listAll('webhook', 'object=crm_contact');
      for (const w of all) assert.equal(w.object_type, 'crm_contact');
      assert.ok(ids(all).includes(hooks[3].id));
    });

    test('integration_type filter', async () => {
      const l = await listAll('webhook', 'integration_type=jsonserver');
      for (const h of hooks) assert.ok(ids(l).includes(h.id));
      for (const w of l) assert.equal(w.integration_type, 'jsonserver');
    });

    test('env filter', async () => {
      const p = await listAll('webhook', `env=Production&connection_id=${a.id}`);
      assert.equal(p.length, 3);
      assert.deepEqual(await listAll('webhook', `env=Sandbox&connection_id=${a.id}`), []);
    });

    test('is_healthy filter', async () => {
      const h = await listAll('webhook', `is_healthy=true&connection_id=${b.id}`);
      assert.equal(h.length, 2);
      assert.deepEqual(await listAll('webhook', `is_healthy=false&connection_id=${b.id}`), []);
    });

    test('sort=created_at order=asc/desc, limit and offset', async () => {
      const asc = await listAll('webhook', `connection_id=${a.id}&sort=created_at&order=asc`);
      assert.deepEqual(ids(asc), ids(hooks.slice(0, 3)));
      const desc = await listAll('webhook', `connection_id=${a.id}&sort=created_at&order=desc`);
      assert.deepEqual(ids(desc), ids(hooks.slice(0, 3)).reverse());
      const p1 = await req('GET', `/unified/webhook?connection_id=${a.id}&sort=created_at&order=asc&limit=2`);
      expectOk(p1);
      assert.deepEqual(ids(p1.json), ids(hooks.slice(0, 2)));
      const p2 = await req('GET', `/unified/webhook?connection_id=${a.id}&sort=created_at&order=asc&limit=2&offset=2`);
      expectOk(p2);
      assert.deepEqual(ids(p2.json), [hooks[2].id]);
      const p3 = await req('GET', `/unified/webhook?connection_id=${a.id}&limit=2&offset=3`);
      expectOk(p3);
      assert.deepEqual(p3.json, []);
      const all = await listAll('webhook', 'sort=created_at&order=asc');
      const t = all.map((w) => Date.parse(w.created_at));
      for (let i = 1; i < t.length; i++) assert.ok(t[i - 1] <= t[i]);
    });

    test('limit bounds: 1 and 1000 accepted', async () => {
      const r1 = await req('GET', '/unified/webhook?limit=1');
      expectOk(r1);
      assert.equal(r1.json.length, 1);
      expectOk(await req('GET', '/unified/webhook?limit=1000'));
    });

    test('sort=updated_at follows updates', async () => {
      await sleep(20);
      const p = await req('PATCH', `/unified/webhook/${hooks[0].id}`, { body: { interval: 75 } });
      expectOk(p);
      hooks[0] = p.json;
      const desc = await listAll('webhook', `connection_id=${a.id}&sort=updated_at&order=desc`);
      assert.equal(desc[0].id, hooks[0].id);
      const asc = await listAll('webhook', `connection_id=${a.id}&sort=updated_at&order=asc`);
      assert.equal(asc[asc.length - 1].id, hooks[0].id);
    });

    test('sort=name is accepted', async () => {
      const l = await listAll('webhook', `connection_id=${a.id}&sort=name&order=asc`);
      assert.ok(sameIdSet(ids(l), ids(hooks.slice(0, 3))));
    });

    test('updated_gte and created_lte (inclusive, using the timestamps the API returned)', async () => {
      const ref = hooks[1];
      const g = await listAll('webhook', `connection_id=${a.id}&updated_gte=${encodeURIComponent(ref.updated_at)}`);
      assert.ok(ids(g).includes(ref.id), 'updated_gte is inclusive');
      assert.ok(ids(g).includes(hooks[2].id));
      const l = await listAll('webhook', `connection_id=${a.id}&created_lte=${encodeURIComponent(ref.created_at)}`);
      assert.ok(ids(l).includes(hooks[0].id));
      assert.ok(ids(l).includes(ref.id), `created_lte=${ref.created_at} must include the webhook created at exactly that (returned) time`);
      assert.ok(!ids(l).includes(hooks[2].id));
    });

    for (const [q, field] of [
      ['bogus=1', 'bogus'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=2.5', 'limit'],
      ['offset=-1', 'offset'],
      ['offset=abc', 'offset'],
      ['sort=colour', 'sort'],
      ['order=up', 'order'],
      ['is_healthy=maybe', 'is_healthy'],
      ['updated_gte=yesterday', 'updated_gte'],
      ['created_lte=2026-13-45', 'created_lte'],
    ]) {
      test(`GET /unified/webhook?${q} -> 400 invalid_query (field ${field})`, async () => {
        expectError(await req('GET', `/unified/webhook?${q}`), 400, 'invalid_query', field);
      });
    }
  });

  describe('PATCH vs PUT', () => {
    let full;
    const fullExtra = {
      object_type: 'crm_deal',
      event: 'updated',
      interval: 120,
      fields: 'id,name',
      page_max_limit: 50,
      filters: { stage: 'won' },
      is_paused: true,
      is_beta: true,
    };
    before(async () => {
      full = await createWebhook(conn, fullExtra);
    });

    test('PATCH changes only the given fields', async () => {
      await sleep(20);
      const r = await req('PATCH', `/unified/webhook/${full.id}`, { body: { interval: 180 } });
      expectOk(r);
      const p = r.json;
      assert.equal(p.interval, 180);
      assert.equal(p.id, full.id);
      assert.equal(p.created_at, full.created_at);
      assert.ok(Date.parse(p.updated_at) > Date.parse(full.updated_at), 'updated_at advances');
      for (const k of ['connection_id', 'hook_url', 'object_type', 'event', 'fields', 'page_max_limit', 'filters', 'is_paused', 'is_beta', 'webhook_type', 'integration_type', 'environment', 'workspace_id']) {
        assert.deepEqual(p[k], full[k], `PATCH {interval} must keep ${k}`);
      }
      const g = await req('GET', `/unified/webhook/${full.id}`);
      assert.deepEqual(g.json, p);
      full = p;
    });

    test('PATCH several fields, including SDK-style repeated connection_id/object_type/event', async () => {
      const r = await req('PATCH', `/unified/webhook/${full.id}`, {
        body: {
          connection_id: full.connection_id,
          object_type: full.object_type,
          event: full.event,
          environment: 'Production',
          hook_url: `${stub.url}/other-hook`,
          is_paused: false,
          filters: { stage: 'lost' },
        },
      });
      expectOk(r);
      assert.equal(r.json.hook_url, `${stub.url}/other-hook`);
      assert.equal(r.json.is_paused, false);
      assert.deepEqual(r.json.filters, { stage: 'lost' });
      assert.equal(r.json.interval, 180);
      assert.equal(r.json.fields, 'id,name');
      assert.equal(r.json.page_max_limit, 50);
      assert.equal(r.json.is_beta, true);
      full = r.json;
    });

    test('PATCH object_type / event to another valid value', async () => {
      const r = await req('PATCH', `/unified/webhook/${full.id}`, { body: { object_type: 'crm_company', event: 'deleted' } });
      expectOk(r);
      assert.equal(r.json.object_type, 'crm_company');
      assert.equal(r.json.event, 'deleted');
      assert.equal(r.json.interval, 180);
      full = r.json;
    });

    test('PATCH read-only fields only: ignored', async () => {
      const r = await req('PATCH', `/unified/webhook/${full.id}`, {
        body: { id: 'other', created_at: '2000-01-01T00:00:00.000Z', workspace_id: 'x', is_healthy: false, runs: ['x'], integration_type: 'hubspot' },
      });
      expectOk(r);
      assert.equal(r.json.id, full.id);
      assert.equal(r.json.created_at, full.created_at);
      assert.equal(r.json.workspace_id, full.workspace_id);
      assert.equal(r.json.integration_type, 'jsonserver');
      assert.equal(r.json.is_healthy, true);
      full = r.json;
    });

    describe('rejected PATCH/PUT change nothing', () => {
      const cases = [
        ['PATCH', 'event not in the enum', () => ({ body: { event: 'exploded' } }), 400, 'invalid_field', 'event'],
        ['PATCH', 'unknown connection_id', () => ({ body: { connection_id: uniqueName('nope') } }), 400, 'invalid_field', 'connection_id'],
        ['PATCH', 'object_type the integration lacks', () => ({ body: { object_type: 'accounting_invoice' } }), 400, 'invalid_field', 'object_type'],
        ['PATCH', 'interval below minimum', () => ({ body: { interval: 0.1 } }), 400, 'invalid_field', 'interval'],
        ['PATCH', 'page_max_limit 5000', () => ({ body: { page_max_limit: 5000 } }), 400, 'invalid_field', 'page_max_limit'],
        ['PATCH', 'hook_url invalid', () => ({ body: { hook_url: 'nope' } }), 400, 'invalid_field', 'hook_url'],
        ['PATCH', 'unknown field', () => ({ body: { colour: 'red' } }), 400, 'unknown_field', 'colour'],
        ['PATCH', 'malformed JSON', () => ({ rawBody: '{"interval":' }), 400, 'invalid_json'],
        ['PATCH', 'array body', () => ({ body: [1] }), 400, 'invalid_body'],
        ['PATCH', 'text/plain', () => ({ rawBody: '{"interval":90}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
        ['PUT', 'missing event', () => ({ body: { connection_id: conn.id, hook_url: `${stub.url}/h`, object_type: 'crm_contact' } }), 400, 'invalid_field', 'event'],
        ['PUT', 'missing connection_id', () => ({ body: { hook_url: `${stub.url}/h`, object_type: 'crm_contact', event: 'created' } }), 400, 'invalid_field', 'connection_id'],
        ['PUT', 'missing object_type', () => ({ body: { connection_id: conn.id, hook_url: `${stub.url}/h`, event: 'created' } }), 400, 'invalid_field', 'object_type'],
        ['PUT', 'missing hook_url (no db)', () => ({ body: { connection_id: conn.id, object_type: 'crm_contact', event: 'created' } }), 400, 'invalid_field', 'hook_url'],
        ['PUT', 'unknown field', () => ({ body: { ...hookBody(conn), colour: 'red' } }), 400, 'unknown_field', 'colour'],
        ['PUT', 'malformed JSON', () => ({ rawBody: '[' }), 400, 'invalid_json'],
        ['PUT', 'text/plain', () => ({ rawBody: JSON.stringify(hookBody(conn)), headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
      ];
      for (const [method, name, opts, status, code, field] of cases) {
        test(`${method} ${name} -> ${status} ${code}`, async () => {
          await rejected(method, `/unified/webhook/${full.id}`, opts(), status, code, field);
        });
      }
      test('PUT with a 2 MiB body -> 413', async () => {
        const big = JSON.stringify(hookBody(conn, { fields: 'z'.repeat(2 * 1024 * 1024) }));
        await rejected('PUT', `/unified/webhook/${full.id}`, { rawBody: big }, 413, 'payload_too_large');
      });
    });

    test('PUT replaces the writable fields; unspecified ones reset to defaults', async () => {
      await sleep(20);
      const r = await req('PUT', `/unified/webhook/${full.id}`, {
        body: { connection_id: conn.id, hook_url: `${stub.url}/put-hook`, object_type: 'crm_contact', event: 'created' },
      });
      expectOk(r);
      const w = r.json;
      assert.equal(w.id, full.id);
      assert.equal(w.created_at, full.created_at);
      assert.ok(Date.parse(w.updated_at) > Date.parse(full.updated_at));
      assert.equal(w.hook_url, `${stub.url}/put-hook`);
      assert.equal(w.object_type, 'crm_contact');
      assert.equal(w.event, 'created');
      assert.equal(w.interval, 60, 'interval reset to the default');
      assert.ok(w.fields === undefined || w.fields === '', `fields reset, got ${JSON.stringify(w.fields)}`);
      assert.equal(w.page_max_limit, 100, 'page_max_limit reset');
      assert.deepEqual(w.filters, {}, 'filters reset');
      assert.equal(w.is_paused, false, 'is_paused reset');
      assert.equal(w.is_beta, false, 'is_beta reset');
      assert.equal(w.webhook_type, 'virtual', 'webhook_type reset');
      assert.equal(w.integration_type, 'jsonserver');
      assert.equal(w.environment, 'Production');
      const g = await req('GET', `/unified/webhook/${full.id}`);
      assert.deepEqual(g.json, w);
      full = w;
    });

    test('PUT with a full SDK-style body (read-only fields included) is accepted', async () => {
      const r = await req('PUT', `/unified/webhook/${full.id}`, { body: { ...full, interval: 240 } });
      expectOk(r);
      assert.equal(r.json.interval, 240);
      assert.equal(r.json.id, full.id);
    });

    test('PUT/PATCH/DELETE/GET unknown id -> 404 not_found', async () => {
      const id = uniqueName('missing');
      const before = await snapshot();
      expectError(await req('GET', `/unified/webhook/${id}`), 404, 'not_found');
      expectError(await req('PATCH', `/unified/webhook/${id}`, { body: { interval: 90 } }), 404, 'not_found');
      expectError(await req('PUT', `/unified/webhook/${id}`, { body: hookBody(conn) }), 404, 'not_found');
      expectError(await req('DELETE', `/unified/webhook/${id}`), 404, 'not_found');
      await assertNothingWritten(before);
    });
  });

  describe('trigger', () => {
    let w;
    before(async () => {
      w = await createWebhook(conn);
    });

    test('PUT /unified/webhook/{id}/trigger -> 200 empty body', async () => {
      expectEmpty200(await req('PUT', `/unified/webhook/${w.id}/trigger`));
    });

    test('PATCH /unified/webhook/{id}/trigger -> 200 empty body', async () => {
      expectEmpty200(await req('PATCH', `/unified/webhook/${w.id}/trigger`));
    });

    test('trigger does not change the webhook configuration', async () => {
      const g = await req('GET', `/unified/webhook/${w.id}`);
      expectOk(g);
      for (const k of ['id', 'connection_id', 'hook_url', 'object_type', 'event', 'interval', 'created_at', 'is_paused']) {
        assert.deepEqual(g.json[k], w[k], k);
      }
    });

    test('trigger unknown id -> 404 not_found', async () => {
      const id = uniqueName('missing');
      expectError(await req('PUT', `/unified/webhook/${id}/trigger`), 404, 'not_found');
      expectError(await req('PATCH', `/unified/webhook/${id}/trigger`), 404, 'not_found');
    });
  });

  test('DELETE a webhook -> 200 empty body; then 404', async () => {
    const w = await createWebhook(conn);
    expectEmpty200(await req('DELETE', `/unified/webhook/${w.id}`));
    expectError(await req('GET', `/unified/webhook/${w.id}`), 404, 'not_found');
    expectError(await req('DELETE', `/unified/webhook/${w.id}`), 404, 'not_found');
    expectError(await req('PUT', `/unified/webhook/${w.id}/trigger`), 404, 'not_found');
    assert.ok(!ids(await listAll('webhook')).includes(w.id));
    expectOk(await req('GET', `/unified/connection/${conn.id}`));
  });
});

// ---------------------------------------------------------------- routing

describe('routing', () => {
  let conn, hook;
  before(async () => {
    conn = await createConnection();
    hook = await createWebhook(conn);
  });

  const wrong = () => [
    ['DELETE', '/unified/webhook'],
    ['PUT', '/unified/webhook', { body: hookBody(conn) }],
    ['PATCH', '/unified/webhook', { body: { interval: 90 } }],
    ['POST', `/unified/webhook/${hook.id}`, { body: hookBody(conn) }],
    ['GET', `/unified/webhook/${hook.id}/trigger`],
    ['POST', `/unified/webhook/${hook.id}/trigger`],
    ['DELETE', `/unified/webhook/${hook.id}/trigger`],
    ['DELETE', '/unified/connection'],
    ['PUT', '/unified/connection', { body: { integration_type: 'jsonserver' } }],
    ['PATCH', '/unified/connection', { body: { integration_type: 'jsonserver' } }],
    ['POST', `/unified/connection/${conn.id}`, { body: { integration_type: 'jsonserver' } }],
    ['POST', '/healthz'],
  ];

  test('wrong method on a known path -> 405 method_not_allowed, nothing written', async () => {
    const before = await snapshot();
    for (const [method, path, opts] of wrong()) {
      const r = await req(method, path, opts || {});
      assert.equal(r.status, 405, `${method} ${path}: ${show(r)}`);
      expectError(r, 405, 'method_not_allowed');
    }
    await assertNothingWritten(before);
    expectOk(await req('GET', `/unified/webhook/${hook.id}`));
  });

  test('unknown path -> 404 not_found', async () => {
    for (const path of ['/unified/nope', '/nope', '/unified', `/unified/webhook/${hook.id}/nope`, `/unified/connection/${conn.id}/trigger`, '/unified/webhooks']) {
      const r = await req('GET', path);
      assert.equal(r.status, 404, `GET ${path}: ${show(r)}`);
      expectError(r, 404, 'not_found');
    }
  });
});

// ---------------------------------------------------------------- isolation

describe('workspace isolation', () => {
  let ws2, req2, conn1, hook1, conn2, hook2;
  before(async () => {
    ws2 = await createWorkspace(uniqueName('ws2'), hookdEnvOf(d));
    req2 = makeRequest(d.url, ws2.apiKey, d);
    conn1 = await createConnection({ integration_name: 'ws1-conn' });
    hook1 = await createWebhook(conn1);
  });

  test('a new HOOKD_API_KEY on the same database replaces the configured key of the bootstrap workspace', async (t) => {
    const boot = makeRequest(d.url, d.apiKey, d);
    const created = await boot('POST', '/unified/connection', {
      body: { integration_type: 'jsonserver', integration_name: 'bootstrap-rotation', auth: { api_url: stub.url } },
    });
    expectOk(created);
    const mine = created.json;
    const other = await startDaemon();
    t.after(async () => {
      await other.request('DELETE', `/unified/connection/${mine.id}`).catch(() => null);
      await other.stop();
    });
    // Same bootstrap workspace, new key: the data is there under the new key...
    const theirs = await other.request('GET', `/unified/connection/${mine.id}`);
    expectOk(theirs);
    assert.equal(theirs.json.workspace_id, mine.workspace_id);
    // ...and the previously configured key is revoked, on every instance.
    expectError(await boot('GET', '/unified/connection'), 401, 'unauthorized');
  });

  test('workspace create printed workspace_id, api_key, workspace_secret', () => {
    assert.ok(ws2.workspaceId && ws2.apiKey && ws2.workspaceSecret);
    assert.notEqual(ws2.apiKey, KEY);
    assert.notEqual(ws2.workspaceId, ws.workspaceId);
  });

  test('the new workspace key works and starts empty', async () => {
    const c = await req2('GET', '/unified/connection?limit=1000');
    expectOk(c);
    assert.deepEqual(c.json, []);
    const w = await req2('GET', '/unified/webhook?limit=1000');
    expectOk(w);
    assert.deepEqual(w.json, []);
    const b = await req2('GET', '/unified/webhook', { auth: `Bearer ${ws2.apiKey}` });
    expectOk(b);
  });

  test("another workspace's connection: 404 on get/update/delete, excluded from lists, unchanged", async () => {
    const before = await snapshot();
    expectError(await req2('GET', `/unified/connection/${conn1.id}`), 404, 'not_found');
    expectError(await req2('PATCH', `/unified/connection/${conn1.id}`, { body: { integration_name: 'stolen' } }), 404, 'not_found');
    expectError(await req2('PUT', `/unified/connection/${conn1.id}`, { body: { integration_type: 'jsonserver', integration_name: 'stolen' } }), 404, 'not_found');
    expectError(await req2('DELETE', `/unified/connection/${conn1.id}`), 404, 'not_found');
    const l = await req2('GET', `/unified/connection?external_xref=${encodeURIComponent(conn1.external_xref)}`);
    expectOk(l);
    assert.deepEqual(l.json, []);
    await assertNothingWritten(before);
  });

  test("another workspace's webhook: 404 on get/update/delete/trigger, excluded from lists, unchanged", async () => {
    const before = await snapshot();
    expectError(await req2('GET', `/unified/webhook/${hook1.id}`), 404, 'not_found');
    expectError(await req2('PATCH', `/unified/webhook/${hook1.id}`, { body: { interval: 90 } }), 404, 'not_found');
    expectError(await req2('PUT', `/unified/webhook/${hook1.id}`, { body: hookBody(conn1) }), 404, 'not_found');
    expectError(await req2('DELETE', `/unified/webhook/${hook1.id}`), 404, 'not_found');
    expectError(await req2('PUT', `/unified/webhook/${hook1.id}/trigger`), 404, 'not_found');
    expectError(await req2('PATCH', `/unified/webhook/${hook1.id}/trigger`), 404, 'not_found');
    const l = await req2('GET', `/unified/webhook?connection_id=${conn1.id}`);
    expectOk(l);
    assert.deepEqual(l.json, []);
    await assertNothingWritten(before);
  });

  test("creating a webhook on another workspace's connection -> 400 invalid_field connection_id", async () => {
    const before = await snapshot();
    const before2 = await snapshot(req2);
    const r = await req2('POST', '/unified/webhook', { body: hookBody(conn1) });
    expectError(r, 400, 'invalid_field', 'connection_id');
    await assertNothingWritten(before);
    await assertNothingWritten(before2, req2);
  });

  test('objects created in workspace 2 are invisible to workspace 1', async () => {
    const rc = await req2('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: stub.url } } });
    expectOk(rc);
    conn2 = rc.json;
    assert.equal(conn2.workspace_id, ws2.workspaceId);
    assert.notEqual(conn2.workspace_id, conn1.workspace_id);
    const rw = await req2('POST', '/unified/webhook', { body: hookBody(conn2) });
    expectOk(rw);
    hook2 = rw.json;
    assert.equal(hook2.workspace_id, ws2.workspaceId);

    assert.ok(!ids(await listAll('connection')).includes(conn2.id));
    assert.ok(!ids(await listAll('webhook')).includes(hook2.id));
    expectError(await req('GET', `/unified/connection/${conn2.id}`), 404, 'not_found');
    expectError(await req('GET', `/unified/webhook/${hook2.id}`), 404, 'not_found');
    expectError(await req('PUT', `/unified/webhook/${hook2.id}/trigger`), 404, 'not_found');
    expectError(await req('DELETE', `/unified/webhook/${hook2.id}`), 404, 'not_found');
    expectError(await req('DELETE', `/unified/connection/${conn2.id}`), 404, 'not_found');
    const still = await req2('GET', `/unified/webhook/${hook2.id}`);
    expectOk(still);
    assert.deepEqual(still.json, hook2);

    const l2 = await req2('GET', '/unified/webhook?limit=1000');
    assert.deepEqual(ids(l2.json), [hook2.id]);
    expectEmpty200(await req2('DELETE', `/unified/connection/${conn2.id}`));
  });
});

// ---------------------------------------------------------------- secrets, logs, shutdown

describe('secrets and logs', () => {
  test('no response body ever contained a secret (auth values, db_url, the keys)', () => {
    assert.ok(responseLog.length > 50, 'the suite made requests');
    assert.ok(SECRETS.size > 5);
    for (const { method, path, text } of responseLog) {
      for (const s of SECRETS) assert.ok(!text.includes(s), `${method} ${path} returned secret ${s}`);
      for (const k of [d.apiKey, d.workspaceSecret, KEY, ws.workspaceSecret]) {
        assert.ok(!text.includes(k), `${method} ${path} returned an API key or workspace secret`);
      }
    }
  });

  test('with HOOKD_LOG_FORMAT=json every request gets a JSON log line with method, path, status and latency', async () => {
    const m = [uniqueName('m1'), uniqueName('m2'), uniqueName('m3'), uniqueName('m4')];
    const sent = [
      ['GET', `/unified/webhook/${m[0]}`, {}, 404],
      ['PATCH', `/unified/connection/${m[1]}`, { body: { integration_name: 'x' } }, 404],
      ['DELETE', `/unified/webhook/${m[2]}`, {}, 404],
      ['GET', `/unified/connection/${m[3]}`, { auth: null }, 401],
    ];
    for (const [method, path, opts, status] of sent) {
      const r = await req(method, path, opts);
      assert.equal(r.status, status, show(r));
    }
    const find = (method, path, status) =>
      requestLogEntries().filter((e) => e.path.startsWith(path) && e.method === method && Number(e.status) === status);
    const deadline = Date.now() + 5000;
    let missing;
    do {
      missing = sent.filter(([method, path, , status]) => find(method, path, status).length === 0);
      if (!missing.length) break;
      await sleep(200);
    } while (Date.now() < deadline);
    assert.deepEqual(
      missing.map(([m1, p]) => `${m1} ${p}`),
      [],
      `missing JSON request log lines (need method, path, status).\n--- log tail ---\n${d.logs().slice(-3000)}`,
    );
    for (const [method, path, , status] of sent) {
      const [e] = find(method, path, status);
      const latencyKey = Object.keys(e).find((k) => /latency|duration|elapsed/i.test(k));
      assert.ok(latencyKey, `request log line has no latency field: ${JSON.stringify(e)}`);
      assert.ok(Number.isFinite(Number(e[latencyKey])), `latency must be numeric: ${JSON.stringify(e)}`);
    }
  });

  test('exactly one request log line per HTTP request', async () => {
    const sent = responseLog.filter((e) => e.baseUrl === d.url);
    const deadline = Date.now() + 5000;
    while (requestLogEntries().length < sent.length && Date.now() < deadline) await sleep(200);
    const logged = requestLogEntries();
    if (logged.length !== sent.length) {
      const tally = (list) => {
        const m = {};
        for (const k of list) m[k] = (m[k] || 0) + 1;
        return m;
      };
      const a = tally(sent.map((e) => `${e.method} ${e.status}`));
      const b = tally(logged.map((e) => `${e.method} ${Number(e.status)}`));
      const diff = Object.keys({ ...a, ...b })
        .filter((k) => a[k] !== b[k])
        .map((k) => `${k}: sent ${a[k] || 0}, logged ${b[k] || 0}`);
      assert.fail(`${sent.length} requests but ${logged.length} request log lines; by method and status: ${diff.join('; ')}`);
    }
  });

  test('the logs contain no API key, workspace secret, encryption key or connection secret', () => {
    const logs = d.logs();
    assert.ok(!logs.includes(d.apiKey), 'bootstrap API key in logs');
    assert.ok(!logs.includes(d.workspaceSecret), 'bootstrap workspace secret in logs');
    assert.ok(!logs.includes(KEY), 'workspace API key in logs');
    assert.ok(!logs.includes(ws.workspaceSecret), 'workspace secret in logs');
    assert.ok(!logs.includes(d.encryptionKey), 'encryption key in logs');
    for (const s of SECRETS) assert.ok(!logs.includes(s), `secret ${s} in logs`);
  });

  test('cleanup: deleting every connection this file created (and so their webhooks)', async () => {
    const n = await deleteCreatedConnections();
    assert.ok(n > 10, `deleted ${n} connections`);
  });

  test('SIGTERM stops the daemon with exit code 0', async () => {
    const r = await d.stop('SIGTERM');
    assert.equal(r.killedAfterTimeout, undefined, 'hookd did not exit within 30 s of SIGTERM');
    assert.equal(r.signal, null, `hookd died of signal ${r.signal}`);
    assert.equal(r.code, 0, `exit code after SIGTERM\n--- log tail ---\n${d.logs().slice(-2000)}`);
  });
});

/** The daemon's JSON log lines that describe an HTTP request (method, path and status), flattened. */
function requestLogEntries() {
  return d
    .logs()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return flatten(JSON.parse(l));
      } catch {
        return null;
      }
    })
    .filter((e) => e && typeof e.method === 'string' && typeof e.path === 'string' && e.status !== undefined);
}

// Top-level keys first, then the keys of nested objects (e.g. {"http":{"method":...}}).
function flatten(obj, out = {}) {
  for (const [k, v] of Object.entries(obj)) if (!(k in out)) out[k] = v;
  for (const v of Object.values(obj)) if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, out);
  return out;
}
