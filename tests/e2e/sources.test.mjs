// End-to-end tests of the source side (issue 3): the integration definitions in integrations/,
// `hookd source poll`, and the poller against the real json-server@0.17.4, against fixture
// servers that replay each provider's documented responses (tests/fixtures/providers), against
// a misbehaving source (tests/fixtures/faults.mjs) and over TLS with a test CA.
//
//   build/hookd source poll --connection ID --object TYPE [--since ISO8601] [--filter k=v ...]
//   stdout: one mapped record per line (with `raw`; tombstones with "deleted": true)
//   stderr: "scan complete: pages=N records=N requests=N duration_ms=N"
//        or "scan incomplete: <error naming the request>; pages=N records=N requests=N duration_ms=N"
//   exit 0 complete, 3 incomplete, 2 bad arguments.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import {
  REPO_ROOT, deleteCreatedConnections, hookdEnvOf, makeTempDir, removeDir, runHookd, sleep, startDaemon,
} from './daemon.mjs';
import * as hubspot from '../fixtures/providers/hubspot.mjs';
import * as github from '../fixtures/providers/github.mjs';
import * as pipedrive from '../fixtures/providers/pipedrive.mjs';
import * as zendesk from '../fixtures/providers/zendesk.mjs';
import * as greenhouse from '../fixtures/providers/greenhouse.mjs';
import * as stripe from '../fixtures/providers/stripe.mjs';
import * as faults from '../fixtures/faults.mjs';
import { makeTestPki } from '../fixtures/tls.mjs';

const TEST_TIMEOUT = 180_000;
const SUMMARY = /scan (complete|incomplete)(?::\s*(.*?))?;?\s*pages=(\d+) records=(\d+) requests=(\d+) duration_ms=(\d+)/;

let daemon;
const cleanups = [];

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch {
      /* best effort */
    }
  }
  if (daemon) {
    await deleteCreatedConnections();
    await daemon.stop();
  }
});

/** Registers a fixture (or anything with close()) for clean-up, and returns it. */
function track(x) {
  cleanups.push(() => x.close());
  return x;
}

async function createConnection(integrationType, auth) {
  const r = await daemon.request('POST', '/unified/connection', { body: { integration_type: integrationType, auth } });
  assert.equal(r.status, 200, `POST /unified/connection (${integrationType}) -> ${r.status} ${r.text}`);
  assert.ok(r.json?.id, `the created connection has an id: ${r.text}`);
  return r.json.id;
}

/**
 * Runs `hookd source poll` with the daemon's configuration. Resolves
 * {code, records, summary: {complete, error, pages, records, requests, duration_ms}|null, stdout, stderr, elapsedMs}.
 */
async function poll(connectionId, object, { since, filters = {}, env = {}, args = [], timeoutMs = 90_000 } = {}) {
  const argv = ['source', 'poll', '--connection', connectionId, '--object', object, ...args];
  if (since) argv.push('--since', since);
  for (const [k, v] of Object.entries(filters)) argv.push('--filter', `${k}=${v}`);
  const started = Date.now();
  const r = await runHookd(argv, { env: { ...hookdEnvOf(daemon), ...env }, timeoutMs });
  const elapsedMs = Date.now() - started;
  const records = [];
  const bad = [];
  for (const line of r.stdout.split('\n')) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line));
    } catch {
      bad.push(line);
    }
  }
  const m = SUMMARY.exec(r.stderr);
  const summary = m
    ? { complete: m[1] === 'complete', error: m[2] ?? '', pages: +m[3], records: +m[4], requests: +m[5], duration_ms: +m[6] }
    : null;
  const out = { ...r, records, summary, elapsedMs, argv, badLines: bad };
  out.describe = () =>
    `hookd ${argv.join(' ')}\n  exit ${r.code} signal ${r.signal}${r.timedOut ? ' (timed out)' : ''} after ${elapsedMs} ms\n` +
    `--- stderr ---\n${r.stderr.slice(-4000)}\n--- stdout (first 800 chars) ---\n${r.stdout.slice(0, 800)}`;
  return out;
}

function assertComplete(r) {
  assert.equal(r.code, 0, `expected a complete scan (exit 0)\n${r.describe()}`);
  assert.deepEqual(r.badLines, [], `every stdout line is JSON\n${r.describe()}`);
  assert.ok(r.summary, `stderr has "scan complete: pages=N records=N requests=N duration_ms=N"\n${r.describe()}`);
  assert.equal(r.summary.complete, true, r.describe());
  assert.equal(r.summary.records, r.records.length, `the summary counts the records printed\n${r.describe()}`);
}

function assertIncomplete(r, pattern) {
  assert.equal(r.code, 3, `expected an incomplete scan (exit 3)\n${r.describe()}`);
  assert.ok(r.summary, `stderr has "scan incomplete: <error>; pages=N records=N requests=N duration_ms=N"\n${r.describe()}`);
  assert.equal(r.summary.complete, false, r.describe());
  assert.match(r.stderr, /scan incomplete: \S/, r.describe());
  if (pattern) assert.match(r.summary.error || r.stderr, pattern, r.describe());
}

/** Asserts that the printed ids are exactly `expected` (strings), each once. */
function assertExactlyOnce(r, expected, what) {
  const ids = r.records.map((x) => x.id);
  for (const id of ids) assert.equal(typeof id, 'string', `${what}: every id is a string (got ${JSON.stringify(id)})`);
  const seen = new Map();
  for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
  const dups = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(dups, [], `${what}: no record is printed twice`);
  const want = [...expected].map(String).sort();
  const missing = want.filter((id) => !seen.has(id));
  const extra = [...seen.keys()].filter((id) => !want.includes(id));
  assert.deepEqual({ missing: missing.slice(0, 20), extra: extra.slice(0, 20), count: ids.length },
    { missing: [], extra: [], count: want.length }, `${what}: every record exactly once\n${r.describe()}`);
}

function byId(r, id) {
  const rec = r.records.find((x) => x.id === String(id));
  assert.ok(rec, `record ${id} is in the output\n${r.describe()}`);
  return rec;
}

function assertSameInstant(actual, expectedMs, what) {
  assert.equal(typeof actual, 'string', `${what} is a string (got ${JSON.stringify(actual)})`);
  assert.match(actual, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, `${what} is ISO-8601 UTC with Z`);
  assert.equal(Date.parse(actual), expectedMs, `${what}: ${actual} is ${new Date(expectedMs).toISOString()}`);
}

/** The fixture's requests for one path (after the auth check they are all recorded). */
const requestsTo = (fixture, re) => fixture.requests.filter((q) => re.test(q.path));

async function getConnection(id) {
  const r = await daemon.request('GET', `/unified/connection/${id}`);
  assert.equal(r.status, 200, `GET /unified/connection/${id} -> ${r.status} ${r.text}`);
  return r.json;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------

describe('hookd source poll: the command', () => {
  test('exists and documents its options', { timeout: TEST_TIMEOUT }, async () => {
    const r = await runHookd(['source', 'poll', '--help'], { env: hookdEnvOf(daemon) });
    assert.equal(r.code, 0, `hookd source poll --help exits 0\n${r.stdout}\n${r.stderr}`);
    const text = r.stdout + r.stderr;
    for (const opt of ['--connection', '--object', '--since', '--filter']) {
      assert.ok(text.includes(opt), `hookd source poll --help mentions ${opt}:\n${text}`);
    }
  });

  test('bad arguments exit 2: unknown connection, object type not served, not an object type, bad --since', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 3 }));
    const id = await createConnection('jsonserver', { api_url: src.url });
    const cases = [
      ['an unknown connection', ['source', 'poll', '--connection', 'no-such-connection-id', '--object', 'crm_contact']],
      ['an object type the integration does not define', ['source', 'poll', '--connection', id, '--object', 'accounting_invoice']],
      ['not a Unified object type', ['source', 'poll', '--connection', id, '--object', 'crm_nonsense']],
      ['an unreadable --since', ['source', 'poll', '--connection', id, '--object', 'crm_contact', '--since', 'yesterday-ish']],
      ['a --filter without =', ['source', 'poll', '--connection', id, '--object', 'crm_contact', '--filter', 'novalue']],
      ['no --object', ['source', 'poll', '--connection', id]],
    ];
    for (const [what, argv] of cases) {
      const r = await runHookd(argv, { env: hookdEnvOf(daemon) });
      assert.equal(r.code, 2, `${what}: hookd ${argv.join(' ')} exits 2 (got ${r.code})\n${r.stderr}`);
      assert.ok(r.stderr.trim().length > 0, `${what}: says why on stderr`);
    }
    assert.equal(src.requests.length, 0, 'no request is sent for bad arguments');
  });
});

// ---------------------------------------------------------------------------------------------

describe('GET /unified/integration', () => {
  test('lists the shipped integrations with per-object webhook features', { timeout: TEST_TIMEOUT }, async () => {
    const r = await daemon.request('GET', '/unified/integration');
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json), `a JSON array: ${r.text.slice(0, 300)}`);
    const byType = Object.fromEntries(r.json.map((i) => [i.type, i]));
    const expected = {
      jsonserver: ['crm_contact'],
      hubspot: ['crm_contact', 'crm_company', 'crm_deal'],
      github: ['task_task', 'repo_pullrequest'],
      pipedrive: ['crm_contact', 'crm_deal'],
      zendesk: ['ticketing_ticket', 'ticketing_customer'],
      greenhouse: ['ats_candidate', 'ats_application'],
      stripe: ['accounting_contact'],
    };
    // objects may be a map {object_type: features} or a list [{object_type, ...features}].
    const features = (i, type) => {
      if (Array.isArray(i.objects)) {
        const o = i.objects.find((x) => x && typeof x === 'object' && (x.object_type ?? x.type ?? x.name) === type);
        return o;
      }
      return i.objects?.[type];
    };
    for (const [type, objects] of Object.entries(expected)) {
      const i = byType[type];
      assert.ok(i, `integration ${type} is listed (listed: ${Object.keys(byType).join(', ')})`);
      assert.equal(typeof i.name, 'string');
      assert.ok(Array.isArray(i.categories) && i.categories.length > 0, `${type} has categories`);
      for (const o of objects) {
        const f = features(i, o);
        assert.ok(f && typeof f === 'object', `${type}.${o} has a features object: ${JSON.stringify(i.objects)}`);
        for (const k of ['incremental', 'deletes', 'native']) assert.equal(typeof f[k], 'boolean', `${type}.${o}.${k} is a boolean: ${JSON.stringify(f)}`);
        assert.ok(Array.isArray(f.filters), `${type}.${o}.filters is a list: ${JSON.stringify(f)}`);
        assert.equal(f.native, false, `${type}.${o}: native webhooks are not defined yet`);
      }
    }
    assert.equal(features(byType.github, 'task_task').incremental, true, 'github issues have `since`');
    assert.equal(features(byType.greenhouse, 'ats_candidate').incremental, true, 'greenhouse candidates have updated_after');
    assert.equal(features(byType.jsonserver, 'crm_contact').incremental, true, 'json-server has updated_at_gte');
    assert.equal(features(byType.hubspot, 'crm_contact').incremental, false, 'HubSpot list endpoints have no updated-since');
    assert.equal(features(byType.hubspot, 'crm_contact').deletes, true, 'HubSpot archived tombstones');
    assert.equal(features(byType.pipedrive, 'crm_deal').deletes, true, 'Pipedrive deleted deals');
    assert.deepEqual(features(byType.pipedrive, 'crm_contact').filters, ['user_id']);
    assert.deepEqual(features(byType.greenhouse, 'ats_candidate').filters, ['email']);
    assert.deepEqual(features(byType.stripe, 'accounting_contact').filters, ['email']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('json-server@0.17.4 (the real one)', () => {
  let dir;
  let server;
  let url;
  let out = '';
  let records;

  before(async () => {
    const bin = path.join(REPO_ROOT, 'tests', 'node_modules', '.bin', 'json-server');
    if (!existsSync(bin)) {
      throw new Error(`json-server is not installed at ${bin}: run "npm ci" in tests/ (devDependency json-server@0.17.4)`);
    }
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'tests', 'node_modules', 'json-server', 'package.json'), 'utf8'));
    assert.equal(pkg.version, '0.17.4', 'the json-server under test is 0.17.4');
    dir = makeTempDir('hookd-e2e-jsonserver-');
    records = faults.generate(300).map((c, i) => ({ ...c, company: `Company ${i % 17}`, title: i % 2 ? 'Engineer' : 'Manager' }));
    const db = path.join(dir, 'db.json');
    writeFileSync(db, JSON.stringify({ contacts: records, companies: [] }, null, 2));
    const port = await freePort();
    server = spawn(bin, [db, '--port', String(port), '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout.setEncoding('utf8');
    server.stderr.setEncoding('utf8');
    server.stdout.on('data', (d) => (out += d));
    server.stderr.on('data', (d) => (out += d));
    url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const r = await fetch(`${url}/contacts?_limit=1`, { signal: AbortSignal.timeout(2000) });
        if (r.ok) break;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`json-server did not start on ${url}:\n${out}`);
      await sleep(200);
    }
  });

  after(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await Promise.race([new Promise((r) => server.once('exit', r)), sleep(5000)]);
      if (server.exitCode === null) server.kill('SIGKILL');
    }
    removeDir(dir);
  });

  test('a full scan returns every record exactly once across pages; an incremental scan only the changed ones', { timeout: TEST_TIMEOUT }, async () => {
    const id = await createConnection('jsonserver', { api_url: url });
    const logFrom = out.length;
    const full = await poll(id, 'crm_contact');
    assertComplete(full);
    assertExactlyOnce(full, records.map((c) => c.id), 'json-server full scan');
    assert.ok(full.summary.pages >= 3, `300 records take several pages (pages=${full.summary.pages})\n${full.describe()}`);
    assert.ok(full.summary.requests >= full.summary.pages, full.describe());
    const sample = byId(full, '42');
    const source = records.find((c) => c.id === '42');
    for (const k of ['name', 'first_name', 'last_name', 'emails', 'telephones', 'company', 'title']) {
      assert.deepEqual(sample[k], source[k], `identity mapping keeps ${k}`);
    }
    assertSameInstant(sample.updated_at, Date.parse(source.updated_at), 'updated_at');
    assert.deepEqual(sample.raw, source, 'raw is the source record');
    assert.match(out.slice(logFrom), /GET \/contacts\?/, `json-server saw the list requests:\n${out.slice(logFrom, logFrom + 2000)}`);

    // Change 3 records through json-server's own API.
    const since = new Date(Date.now() - 1000).toISOString();
    await sleep(1100);
    const changed = ['7', '150', '299'];
    for (const cid of changed) {
      const r = await fetch(`${url}/contacts/${cid}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ updated_at: new Date().toISOString(), title: 'Changed' }),
      });
      assert.equal(r.status, 200, `PATCH /contacts/${cid} -> ${r.status}`);
    }
    const logFrom2 = out.length;
    const inc = await poll(id, 'crm_contact', { since });
    assertComplete(inc);
    assertExactlyOnce(inc, changed, `json-server --since ${since}`);
    for (const rec of inc.records) assert.equal(rec.title, 'Changed');
    assert.match(out.slice(logFrom2), /updated_at_gte=/, `the incremental scan sends updated_at_gte:\n${out.slice(logFrom2, logFrom2 + 2000)}`);
  });

  test('--filter on a field the API does not filter is applied after mapping', { timeout: TEST_TIMEOUT }, async () => {
    const id = await createConnection('jsonserver', { api_url: url });
    const r = await poll(id, 'crm_contact', { filters: { company: 'Company 3' } });
    assertComplete(r);
    const want = records.filter((c) => c.company === 'Company 3').map((c) => c.id);
    assert.ok(want.length > 10);
    assertExactlyOnce(r, want, 'json-server --filter company="Company 3"');
  });
});

// ---------------------------------------------------------------------------------------------

describe('HubSpot (cursor pagination, OAuth2 refresh, archived tombstones)', () => {
  test('contacts: complete scan, mapping, cursor pages, bearer token, tombstones', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await hubspot.start());
    const id = await createConnection('hubspot', {
      api_url: fx.url,
      token_url: `${fx.url}/oauth/v1/token`,
      access_token: fx.accessToken(),
      refresh_token: fx.refreshToken,
      client_id: fx.clientId,
      client_secret: fx.clientSecret,
    });
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.contacts.map((c) => c.id), 'HubSpot contacts (live and archived)');
    for (const rec of r.records) {
      const archived = fx.records.contacts.find((c) => c.id === rec.id).archived;
      if (archived) assert.equal(rec.deleted, true, `archived contact ${rec.id} is a tombstone ("deleted": true)`);
      else assert.ok(rec.deleted === undefined || rec.deleted === false, `live contact ${rec.id} is not deleted: ${JSON.stringify(rec.deleted)}`);
    }

    const list = requestsTo(fx, /^\/crm\/v3\/objects\/contacts$/);
    const live = list.filter((q) => q.query.get('archived') !== 'true');
    const tomb = list.filter((q) => q.query.get('archived') === 'true');
    assert.equal(live.length, 3, `250 live contacts at limit=100 take 3 pages (${live.map((q) => q.url).join(', ')})`);
    assert.ok(tomb.length >= 1, 'the archived listing (archived=true) is scanned');
    for (const q of list) {
      assert.equal(q.headers.authorization, `Bearer ${fx.accessToken()}`, 'the access token is sent as a bearer token');
      assert.equal(q.query.get('limit'), '100');
      assert.ok(q.query.get('properties')?.split(',').includes('email'), `properties are asked for: ${q.url}`);
    }
    assert.equal(live[0].query.has('after'), false, 'the first page has no cursor');
    assert.ok(live[1].query.get('after'), 'the second page sends paging.next.after as after');
    assert.notEqual(live[1].query.get('after'), live[2].query.get('after'));
    assert.equal(fx.tokenRequests.length, 0, 'a valid access token is not refreshed');

    const src = fx.records.contacts[5];
    const rec = byId(r, src.id);
    assert.equal(rec.first_name, src.properties.firstname);
    assert.equal(rec.last_name, src.properties.lastname);
    assert.equal(rec.name, `${src.properties.firstname} ${src.properties.lastname}`);
    assert.deepEqual(rec.emails, [{ email: src.properties.email, type: 'WORK' }]);
    assert.deepEqual(rec.telephones, [{ telephone: src.properties.phone, type: 'WORK' }]);
    assert.deepEqual(rec.company_ids, [src.properties.associatedcompanyid]);
    assert.equal(rec.company, src.properties.company);
    assertSameInstant(rec.created_at, Date.parse(src.createdAt), 'created_at');
    assertSameInstant(rec.updated_at, Date.parse(src.updatedAt), 'updated_at');
    assert.equal(rec.raw?.id, src.id, 'raw is the HubSpot record');
    assert.equal(rec.raw?.properties?.email, src.properties.email);
    assert.equal(rec.raw?.createdAt, src.createdAt);
    assert.equal(rec.title, undefined, 'a null property is left out');
  });

  test('companies and deals: associations, numbers from string properties', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await hubspot.start());
    const id = await createConnection('hubspot', {
      api_url: fx.url, token_url: `${fx.url}/oauth/v1/token`, access_token: fx.accessToken(),
      refresh_token: fx.refreshToken, client_id: fx.clientId, client_secret: fx.clientSecret,
    });
    const companies = await poll(id, 'crm_company');
    assertComplete(companies);
    assertExactlyOnce(companies, fx.records.companies.map((c) => c.id), 'HubSpot companies');
    const c = fx.records.companies[12];
    const crec = byId(companies, c.id);
    assert.equal(crec.name, c.properties.name);
    assert.equal(crec.employees, Number(c.properties.numberofemployees), 'numberofemployees as a number');
    assert.deepEqual(crec.domains, [c.properties.domain]);
    assert.deepEqual(crec.contact_ids, c._associations.contacts);
    assert.equal(crec.industry, c.properties.industry);

    const deals = await poll(id, 'crm_deal');
    assertComplete(deals);
    assertExactlyOnce(deals, fx.records.deals.map((d) => d.id), 'HubSpot deals');
    const d = fx.records.deals[33];
    const drec = byId(deals, d.id);
    assert.equal(drec.name, d.properties.dealname);
    assert.equal(drec.amount, Number(d.properties.amount), 'amount as a number');
    assert.equal(drec.currency, 'USD');
    assert.equal(drec.stage, d.properties.dealstage);
    assert.deepEqual(drec.contact_ids, d._associations.contacts);
    assert.deepEqual(drec.company_ids, d._associations.companies);
    assertSameInstant(drec.closing_at, Date.parse(d.properties.closedate), 'closing_at');
    const dealPages = requestsTo(fx, /\/deals$/).filter((q) => q.query.get('archived') !== 'true');
    assert.equal(dealPages.length, 2, '150 deals take 2 pages');
    assert.ok(dealPages.every((q) => (q.query.get('associations') || '').includes('contacts')), 'associations are asked for');
  });

  test('an expired access token is refreshed with the refresh-token grant, stored, and the scan completes', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await hubspot.start({ expiredTokens: ['stale-access-token'] }));
    const id = await createConnection('hubspot', {
      api_url: fx.url,
      token_url: `${fx.url}/oauth/v1/token`,
      access_token: 'stale-access-token',
      refresh_token: fx.refreshToken,
      client_id: fx.clientId,
      client_secret: fx.clientSecret,
    });
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.contacts.map((c) => c.id), 'HubSpot contacts after a token refresh');
    assert.equal(fx.tokenRequests.length, 1, `one refresh-token grant is POSTed to the token endpoint (${fx.tokenRequests.length})`);
    const t = fx.tokenRequests[0];
    assert.match(t.headers['content-type'] || '', /application\/x-www-form-urlencoded/);
    assert.deepEqual(
      { grant_type: t.form.grant_type, refresh_token: t.form.refresh_token, client_id: t.form.client_id, client_secret: t.form.client_secret },
      { grant_type: 'refresh_token', refresh_token: fx.refreshToken, client_id: fx.clientId, client_secret: fx.clientSecret },
    );
    const list = requestsTo(fx, /\/contacts$/);
    assert.equal(list[0].headers.authorization, 'Bearer stale-access-token', 'the stored access token is tried first');
    assert.ok(list.slice(1).every((q) => q.headers.authorization === `Bearer ${fx.accessToken()}`), 'then the new token');

    // The new token was stored back into the connection: a second scan does not refresh again.
    const again = await poll(id, 'crm_contact');
    assertComplete(again);
    assert.equal(fx.tokenRequests.length, 1, 'the refreshed token was stored in the connection (no second refresh)');
    const conn = await getConnection(id);
    assert.equal(conn.auth?.access_token, '********', `the access token stays sealed: ${JSON.stringify(conn.auth)}`);
  });

  test('an expired token whose refresh is refused: incomplete, the connection marked 401', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await hubspot.start({ expiredTokens: ['stale-access-token'] }));
    const id = await createConnection('hubspot', {
      api_url: fx.url, token_url: `${fx.url}/oauth/v1/token`, access_token: 'stale-access-token',
      refresh_token: 'revoked-refresh-token', client_id: fx.clientId, client_secret: fx.clientSecret,
    });
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r);
    assert.ok(!/revoked-refresh-token|hs-client-secret/.test(r.stderr), `no secret in the error:\n${r.stderr}`);
    assert.equal(fx.tokenRequests.length, 1, 'the refresh is tried once');
    const conn = await getConnection(id);
    assert.equal(conn.last_unhealthy_code, '401', JSON.stringify(conn));
  });

  test('a cursor that comes back (pagination loop) ends the scan incomplete', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await hubspot.start({ loopCursor: true }));
    const id = await createConnection('hubspot', {
      api_url: fx.url, token_url: `${fx.url}/oauth/v1/token`, access_token: fx.accessToken(),
      refresh_token: fx.refreshToken, client_id: fx.clientId, client_secret: fx.clientSecret,
    });
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /loop/i);
    assert.ok(fx.requests.length <= 5, `the loop is detected quickly (${fx.requests.length} requests)`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('GitHub (Link header pagination, bearer token, incremental `since`)', () => {
  // The Link URLs are the source's text: errors (which reach the API's `runs`) do not quote them.
  test('a Link to another origin ends the scan incomplete without quoting the link', { timeout: TEST_TIMEOUT }, async () => {
    const marker = 'src-chosen-7f3a';
    const fx = track(await github.start({ linkOrigin: `http://${marker}.example`, linkNote: marker }));
    const id = await createConnection('github', { api_url: fx.url, token: fx.token, meta: { owner: fx.owner, repo: fx.repo } });
    const r = await poll(id, 'task_task');
    assertIncomplete(r, /leaves http:\/\/127\.0\.0\.1:\d+; credentials are not sent to another origin/);
    assert.ok(!r.summary.error.includes(marker), `the link is not quoted: ${r.summary.error}`);
    assert.equal(requestsTo(fx, /\/issues$/).length, 1, 'nothing is requested from the other origin');
  });

  test('an error on a page the source linked quotes only the start of the link', { timeout: TEST_TIMEOUT }, async () => {
    const marker = 'src-chosen-9c2e';
    const fx = track(await github.start({ linkNote: `${'n'.repeat(3000)}${marker}`, failFromPage: 2 }));
    const id = await createConnection('github', { api_url: fx.url, token: fx.token, meta: { owner: fx.owner, repo: fx.repo } });
    const r = await poll(id, 'task_task');
    assertIncomplete(r, /HTTP 500/);
    assert.match(r.summary.error, /^GET http:\/\/127\.0\.0\.1:\d+\/repositories\/\d+\/issues\?\S*\.\.\. \(cut\): /, r.describe());
    assert.ok(!r.summary.error.includes(marker), `the link is cut: ${r.summary.error}`);
    assert.ok(r.summary.error.length < 400, `the error is bounded (${r.summary.error.length} characters)`);
    assert.ok(requestsTo(fx, /\/issues$/).some((q) => q.query.get('note')?.endsWith(marker)), 'the linked page was requested');
  });

  test('issues: complete scan across Link pages, mapping, headers, then --since', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await github.start());
    const id = await createConnection('github', { api_url: fx.url, token: fx.token, meta: { owner: fx.owner, repo: fx.repo } });
    const r = await poll(id, 'task_task');
    assertComplete(r);
    assertExactlyOnce(r, fx.issueListing().map((x) => x.id), 'GitHub issues');
    const pages = requestsTo(fx, /\/issues$/);
    assert.equal(pages.length, 3, `270 items at per_page=100 take 3 pages: ${pages.map((q) => q.url).join(', ')}`);
    assert.equal(pages[0].path, `/repos/${fx.owner}/${fx.repo}/issues`, 'the path template uses auth.meta.owner and auth.meta.repo');
    assert.equal(pages[0].query.get('state'), 'all');
    assert.equal(pages[0].query.get('per_page'), '100');
    assert.equal(pages[0].query.has('since'), false, 'a full scan sends no since');
    assert.equal(pages[1].path, `/repositories/${github.REPO_ID}/issues`, 'the rel="next" URL is followed as given');
    assert.equal(pages[1].query.get('page'), '2');
    assert.equal(pages[2].query.get('page'), '3');
    // The definition's budget (1.3 requests a second): never more than 2 requests in a second.
    for (const q of pages) {
      const inWindow = pages.filter((o) => o.at >= q.at && o.at < q.at + 1000).length;
      assert.ok(inWindow <= 2, `at most 2 requests within a second at 1.3 requests/s (${pages.map((o) => o.at - pages[0].at).join(', ')} ms)`);
    }
    for (const q of pages) {
      assert.equal(q.headers.authorization, `Bearer ${fx.token}`);
      assert.ok(q.headers['user-agent'], 'a User-Agent is sent');
      assert.ok((q.headers.accept || '').split(',').map((x) => x.trim()).includes('application/vnd.github+json'), `accept: ${q.headers.accept}`);
      assert.equal(q.headers['x-github-api-version'], '2022-11-28');
    }
    const src = fx.records.issues[5];
    const rec = byId(r, src.id);
    assert.equal(rec.name, src.title);
    assert.equal(rec.notes, src.body);
    assert.deepEqual(rec.tags, src.labels.map((l) => l.name));
    assert.deepEqual(rec.assigned_user_ids, src.assignees.map((a) => String(a.id)));
    assert.equal(rec.creator_user_id, String(src.user.id));
    assert.equal(rec.url, src.html_url);
    assertSameInstant(rec.created_at, Date.parse(src.created_at), 'created_at');
    const closed = byId(r, fx.records.issues[3].id);
    assertSameInstant(closed.completed_at, Date.parse(fx.records.issues[3].closed_at), 'completed_at of a closed issue');
    assert.equal(rec.completed_at, undefined, 'an open issue has no completed_at');
    assert.deepEqual(rec.raw, src, 'raw is the GitHub issue');

    // Incremental: 4 issues edited long after the others.
    const edited = [fx.records.issues[10], fx.records.issues[100], fx.records.issues[200], fx.records.issues[229]];
    edited.forEach((x, k) => github.touch(x, Date.UTC(2025, 5, 1, 12, k, 7)));
    const since = '2025-05-01T00:00:00.000Z';
    const before = fx.requests.length;
    const inc = await poll(id, 'task_task', { since });
    assertComplete(inc);
    assertExactlyOnce(inc, edited.map((x) => x.id), `GitHub issues --since ${since}`);
    const sent = fx.requests.slice(before).filter((q) => /\/issues$/.test(q.path));
    assert.ok(sent.length >= 1);
    const value = sent[0].query.get('since');
    assert.match(value ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, `since is ISO-8601 in seconds (iso8601_seconds): ${value}`);
    assert.ok(Date.parse(value) <= Date.parse(since) && Date.parse(value) > Date.parse(since) - 86_400_000, `since ${value} is at (or a little before) ${since}`);
  });

  test('pull requests: complete scan and mapping', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await github.start({ records: github.generate({ issues: 20, pulls: 150 }) }));
    const id = await createConnection('github', { api_url: fx.url, token: fx.token, meta: { owner: fx.owner, repo: fx.repo } });
    const r = await poll(id, 'repo_pullrequest');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.pulls.map((p) => p.id), 'GitHub pull requests');
    assert.equal(requestsTo(fx, /\/pulls$/).length, 2, '150 pulls take 2 pages');
    const src = fx.records.pulls[4];
    const rec = byId(r, src.id);
    assert.equal(rec.repo_id, String(github.REPO_ID));
    assert.deepEqual(rec.labels, src.labels.map((l) => l.name));
    assert.deepEqual(rec.user_ids, [String(src.user.id)]);
    assertSameInstant(rec.closed_at, Date.parse(src.closed_at), 'closed_at');
  });

  test('a template value missing from the connection (auth.meta.repo) ends the scan incomplete, naming the key', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await github.start());
    const id = await createConnection('github', { api_url: fx.url, token: fx.token, meta: { owner: fx.owner } });
    const r = await poll(id, 'task_task');
    assertIncomplete(r, /auth\.meta\.repo/);
    assert.equal(fx.requests.length, 0, 'no request is sent');
  });

  test('a wrong token: 401 ends the scan incomplete and marks the connection unhealthy', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await github.start());
    const id = await createConnection('github', { api_url: fx.url, token: 'ghp_wrong', meta: { owner: fx.owner, repo: fx.repo } });
    const r = await poll(id, 'task_task');
    assertIncomplete(r, /401/);
    assert.ok(!r.stderr.includes('ghp_wrong'), 'the token is not printed');
    const conn = await getConnection(id);
    assert.equal(conn.last_unhealthy_code, '401', JSON.stringify(conn));
  });
});

// ---------------------------------------------------------------------------------------------

describe('Pipedrive (offset pagination, API token query parameter)', () => {
  test('persons: complete scan, offsets, api_token, mapping', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await pipedrive.start());
    const id = await createConnection('pipedrive', { api_url: fx.url, token: fx.apiToken });
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.persons.map((p) => p.id), 'Pipedrive persons');
    const pages = requestsTo(fx, /^\/v1\/persons$/);
    assert.deepEqual(pages.map((q) => q.query.get('start')), ['0', '100', '200'], 'start=0,100,200');
    for (const q of pages) {
      assert.equal(q.query.get('api_token'), fx.apiToken, 'the token is the api_token query parameter');
      assert.equal(q.query.get('limit'), '100');
      assert.equal(q.headers.authorization, undefined, 'no authorization header');
    }
    const src = fx.records.persons[8];
    const rec = byId(r, src.id);
    assert.equal(rec.name, src.name);
    assert.equal(rec.first_name, src.first_name);
    assert.equal(rec.last_name, src.last_name);
    assert.deepEqual(rec.emails, src.email.map((e) => ({ email: e.value })));
    assert.deepEqual(rec.telephones, src.phone.map((p) => ({ telephone: p.value })));
    assert.deepEqual(rec.company_ids, [String(src.org_id.value)]);
    assert.equal(rec.user_id, String(src.owner_id.value));
    assertSameInstant(rec.created_at, Date.parse(`${src.add_time.replace(' ', 'T')}Z`), 'created_at from "YYYY-MM-DD HH:MM:SS" (UTC)');
    assertSameInstant(rec.updated_at, Date.parse(`${src.update_time.replace(' ', 'T')}Z`), 'updated_at');
    const noOrg = byId(r, fx.records.persons[9].id);
    assert.equal(noOrg.company_ids, undefined, 'a person without an organization has no company_ids');
  });

  test('--filter user_id is pushed down as a query parameter', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await pipedrive.start());
    const id = await createConnection('pipedrive', { api_url: fx.url, token: fx.apiToken });
    const r = await poll(id, 'crm_contact', { filters: { user_id: '8' } });
    assertComplete(r);
    assertExactlyOnce(r, fx.records.persons.filter((p) => p.owner_id.value === 8).map((p) => p.id), 'Pipedrive persons of user 8');
    assert.ok(fx.requests.length >= 1 && fx.requests.every((q) => q.query.get('user_id') === '8'), 'user_id=8 is sent on every request');
  });

  test('deals: deleted deals from the status=deleted listing are tombstones', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await pipedrive.start());
    const id = await createConnection('pipedrive', { api_url: fx.url, token: fx.apiToken });
    const r = await poll(id, 'crm_deal');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.deals.map((d) => d.id), 'Pipedrive deals (with deleted)');
    for (const rec of r.records) {
      const src = fx.records.deals.find((d) => String(d.id) === rec.id);
      if (src.deleted) assert.equal(rec.deleted, true, `deleted deal ${rec.id} is a tombstone`);
      else assert.ok(!rec.deleted, `deal ${rec.id} is not deleted`);
    }
    assert.ok(requestsTo(fx, /\/deals$/).some((q) => q.query.get('status') === 'deleted'), 'the status=deleted listing is scanned');
    const src = fx.records.deals[4];
    const rec = byId(r, src.id);
    assert.equal(rec.name, src.title);
    assert.equal(rec.amount, src.value);
    assert.equal(rec.currency, 'EUR');
    assert.deepEqual(rec.contact_ids, [String(src.person_id.value)]);
    assert.deepEqual(rec.company_ids, [String(src.org_id.value)]);
  });

  test('an empty listing ("data": null, as Pipedrive answers when there is nothing) is an empty page, not an error', { timeout: TEST_TIMEOUT }, async () => {
    // Here: no deleted deals, so the status=deleted tombstone listing is {"data": null, ...}.
    const empty = track(await pipedrive.start({ records: pipedrive.generate({ persons: 1, deals: 120, deletedDeals: 0 }) }));
    const id2 = await createConnection('pipedrive', { api_url: empty.url, token: empty.apiToken });
    const r2 = await poll(id2, 'crm_deal');
    assertComplete(r2);
    assertExactlyOnce(r2, empty.records.deals.map((d) => d.id), 'Pipedrive deals without deleted ones');
  });

  test('a wrong API token: incomplete, 401 recorded on the connection, the token never printed', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await pipedrive.start());
    const id = await createConnection('pipedrive', { api_url: fx.url, token: 'pd-wrong-token-0123456789' });
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /401/);
    assert.ok(!r.stderr.includes('pd-wrong-token-0123456789') && !r.stdout.includes('pd-wrong-token-0123456789'),
      `the api_token query parameter is not printed:\n${r.stderr}`);
    const conn = await getConnection(id);
    assert.equal(conn.last_unhealthy_code, '401');
  });
});

// ---------------------------------------------------------------------------------------------

describe('Zendesk (next_page URL pagination, basic auth email/token)', () => {
  test('tickets and users: complete scans following next_page, basic credentials, mapping', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await zendesk.start());
    const id = await createConnection('zendesk', { api_url: fx.url, token: fx.apiToken, meta: { email: fx.email, subdomain: 'acme' } });
    const r = await poll(id, 'ticketing_ticket');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.tickets.map((t) => t.id), 'Zendesk tickets');
    const pages = requestsTo(fx, /\/tickets\.json$/);
    assert.deepEqual(pages.map((q) => q.query.get('page') ?? '1'), ['1', '2', '3'], 'next_page is followed to pages 2 and 3');
    const expectAuth = `Basic ${Buffer.from(`${fx.email}/token:${fx.apiToken}`).toString('base64')}`;
    for (const q of pages) {
      assert.equal(q.headers.authorization, expectAuth, 'basic auth "{email}/token:{api token}"');
      assert.equal(q.query.get('per_page'), '100');
    }
    const src = fx.records.tickets[7];
    const rec = byId(r, src.id);
    assert.equal(rec.subject, src.subject);
    assert.equal(rec.description, src.description);
    assert.equal(rec.status, src.status);
    assert.equal(rec.priority, src.priority);
    assert.equal(rec.customer_id, String(src.requester_id));
    assert.equal(rec.user_id, String(src.assignee_id));
    assert.deepEqual(rec.tags, src.tags);
    assertSameInstant(rec.updated_at, Date.parse(src.updated_at), 'updated_at');
    assert.equal(byId(r, fx.records.tickets[4].id).priority, undefined, 'a null priority is left out');

    const users = await poll(id, 'ticketing_customer');
    assertComplete(users);
    assertExactlyOnce(users, fx.records.users.map((u) => u.id), 'Zendesk end users');
    assert.ok(requestsTo(fx, /\/users\.json$/).every((q) => q.query.get('role') === 'end-user'));
    const u = fx.records.users[4];
    const urec = byId(users, u.id);
    assert.equal(urec.name, u.name);
    assert.deepEqual(urec.emails, [{ email: u.email }]);
    assert.deepEqual(urec.telephones, [{ telephone: u.phone }]);
  });

  test('wrong credentials: 401, incomplete, unhealthy', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await zendesk.start());
    const id = await createConnection('zendesk', { api_url: fx.url, token: 'wrong', meta: { email: fx.email, subdomain: 'acme' } });
    const r = await poll(id, 'ticketing_ticket');
    assertIncomplete(r, /401/);
    const conn = await getConnection(id);
    assert.equal(conn.last_unhealthy_code, '401');
  });
});

// ---------------------------------------------------------------------------------------------

describe('Greenhouse (page-number pagination, basic auth with the API key, updated_after)', () => {
  test('candidates: complete scan by page, basic auth, mapping, --since, --filter email', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await greenhouse.start());
    const id = await createConnection('greenhouse', { api_url: fx.url, key: fx.apiKey });
    const r = await poll(id, 'ats_candidate');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.candidates.map((c) => c.id), 'Greenhouse candidates');
    const pages = requestsTo(fx, /\/candidates$/);
    // 270 at 100 a page: the short third page is not taken for the end, an empty fourth is.
    assert.deepEqual(pages.map((q) => q.query.get('page')), ['1', '2', '3', '4'], 'page=1,2,3,4');
    for (const q of pages) {
      assert.equal(q.query.get('per_page'), '100');
      assert.equal(q.headers.authorization, `Basic ${Buffer.from(`${fx.apiKey}:`).toString('base64')}`, 'the API key as user name, blank password');
      assert.equal(q.query.has('updated_after'), false, 'a full scan sends no updated_after');
    }
    const src = fx.records.candidates[6];
    const rec = byId(r, src.id);
    assert.equal(rec.first_name, src.first_name);
    assert.equal(rec.last_name, src.last_name);
    assert.equal(rec.name, `${src.first_name} ${src.last_name}`);
    assert.equal(rec.company_name, src.company);
    assert.equal(rec.title, src.title);
    assert.deepEqual(rec.emails, src.email_addresses.map((e) => ({ email: e.value })));
    assert.deepEqual(rec.telephones, src.phone_numbers.map((p) => ({ telephone: p.value })));
    assert.deepEqual(rec.tags, src.tags);
    assert.deepEqual(rec.link_urls, src.website_addresses.map((w) => w.value));
    assertSameInstant(rec.created_at, Date.parse(src.created_at), 'created_at');
    assert.deepEqual(rec.raw, src);

    const edited = [3, 77, 140, 201, 249].map((i) => fx.records.candidates[i]);
    edited.forEach((c, k) => greenhouse.touchCandidate(c, Date.UTC(2025, 2, 3, 4, 5, k)));
    const since = '2025-01-01T00:00:00.000Z';
    const before = fx.requests.length;
    const inc = await poll(id, 'ats_candidate', { since });
    assertComplete(inc);
    assertExactlyOnce(inc, edited.map((c) => c.id), `Greenhouse candidates --since ${since}`);
    const sent = fx.requests.slice(before);
    const value = sent[0]?.query.get('updated_after');
    assert.match(value ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, `updated_after is ISO-8601 with milliseconds (iso8601): ${value}`);
    assert.ok(Date.parse(value) <= Date.parse(since) && Date.parse(value) > Date.parse(since) - 86_400_000, `updated_after ${value} is at (or a little before) ${since}`);

    const one = fx.records.candidates[42];
    const before2 = fx.requests.length;
    const filtered = await poll(id, 'ats_candidate', { filters: { email: one.email_addresses[0].value } });
    assertComplete(filtered);
    assertExactlyOnce(filtered, [one.id], 'Greenhouse --filter email');
    assert.equal(fx.requests[before2]?.query.get('email'), one.email_addresses[0].value, 'email is pushed down');
  });

  test('an API that caps its pages below per_page: the scan goes on to an empty page, nothing is missed', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await greenhouse.start({ maxPerPage: 40 }));
    const id = await createConnection('greenhouse', { api_url: fx.url, key: fx.apiKey });
    const r = await poll(id, 'ats_candidate');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.candidates.map((c) => c.id), 'Greenhouse candidates at 40 a page');
    const pages = requestsTo(fx, /\/candidates$/);
    assert.equal(pages.length, Math.ceil(fx.records.candidates.length / 40) + 1, 'every capped page, then an empty one');
    assert.ok(pages.every((q) => q.query.get('per_page') === '100'), 'hookd still asks for 100');
  });

  test('applications: complete scan and mapping', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await greenhouse.start());
    const id = await createConnection('greenhouse', { api_url: fx.url, key: fx.apiKey });
    const r = await poll(id, 'ats_application');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.applications.map((a) => a.id), 'Greenhouse applications');
    assert.equal(requestsTo(fx, /\/applications$/).length, 4);
    const src = fx.records.applications[4];
    const rec = byId(r, src.id);
    assert.equal(rec.candidate_id, String(src.candidate_id));
    assert.equal(rec.job_id, String(src.jobs[0].id));
    assert.equal(rec.rejected_reason, src.rejection_reason?.name);
    assert.equal(rec.source, src.source.public_name);
    assertSameInstant(rec.applied_at, Date.parse(src.applied_at), 'applied_at');
    assertSameInstant(rec.rejected_at, Date.parse(src.rejected_at), 'rejected_at');
  });
});

// ---------------------------------------------------------------------------------------------

describe('Stripe (cursor from the last record, basic auth with the secret key, unix times)', () => {
  test('customers: starting_after = last id, has_more, mapping of unix timestamps', { timeout: TEST_TIMEOUT }, async () => {
    const fx = track(await stripe.start());
    const id = await createConnection('stripe', { api_url: fx.url, key: fx.secretKey });
    const r = await poll(id, 'accounting_contact');
    assertComplete(r);
    assertExactlyOnce(r, fx.records.customers.map((c) => c.id), 'Stripe customers');
    const pages = requestsTo(fx, /\/v1\/customers$/);
    assert.equal(pages.length, 3, '240 customers at limit=100 take 3 pages');
    assert.equal(pages[0].query.has('starting_after'), false);
    const sorted = [...fx.records.customers].sort((a, b) => b.created - a.created);
    assert.equal(pages[1].query.get('starting_after'), sorted[99].id, 'starting_after is the last id of page 1');
    assert.equal(pages[2].query.get('starting_after'), sorted[199].id, 'starting_after is the last id of page 2');
    for (const q of pages) {
      assert.equal(q.query.get('limit'), '100');
      assert.equal(q.headers.authorization, `Basic ${Buffer.from(`${fx.secretKey}:`).toString('base64')}`);
    }
    const src = fx.records.customers[5];
    const rec = byId(r, src.id);
    assert.equal(rec.name, src.name);
    assert.deepEqual(rec.emails, [{ email: src.email }]);
    assert.deepEqual(rec.telephones, [{ telephone: src.phone }]);
    assert.equal(rec.billing_address?.city, src.address.city);
    assert.equal(rec.billing_address?.postal_code, src.address.postal_code);
    assert.equal(rec.billing_address?.country_code, 'US');
    assertSameInstant(rec.created_at, src.created * 1000, 'created_at from unix seconds');
    assert.equal(byId(r, fx.records.customers[3].id).telephones, undefined, 'a null phone leaves telephones out');
  });
});

// ---------------------------------------------------------------------------------------------

describe('faults: never fatal, never a partial scan taken for a complete one', () => {
  async function jsonserverOn(src, extraAuth = {}) {
    return createConnection('jsonserver', { api_url: src.url, ...extraAuth });
  }

  test('429 with Retry-After: 2 (seconds): waits at least 2 s, then completes', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, rateLimit: { page: 2, times: 1, retryAfter: '2' } }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, src.records.map((c) => c.id), '429 then success');
    const p2 = src.requests.filter((q) => q.query.get('_page') === '2');
    assert.ok(p2.length >= 2, `page 2 is retried after the 429 (${p2.length} requests)`);
    const waited = p2[1].at - p2[0].at;
    assert.ok(waited >= 1990, `waited ${waited} ms after "Retry-After: 2"`);
    assert.ok(waited < 15_000, `but not forever (${waited} ms)`);
  });

  test('429 with Retry-After as an HTTP date: waits until then, then completes', { timeout: TEST_TIMEOUT }, async () => {
    let retryAt = 0;
    const src = track(await faults.start({
      count: 250,
      rateLimit: {
        page: 2,
        times: 1,
        retryAfter: () => {
          retryAt = Math.ceil((Date.now() + 2000) / 1000) * 1000;
          return new Date(retryAt).toUTCString();
        },
      },
    }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, src.records.map((c) => c.id), '429 (HTTP date) then success');
    const p2 = src.requests.filter((q) => q.query.get('_page') === '2');
    assert.ok(p2.length >= 2);
    assert.ok(p2[1].at >= retryAt - 50, `retried at ${new Date(p2[1].at).toISOString()}, not before ${new Date(retryAt).toISOString()}`);
  });

  test('500 once, then success: retried with backoff, complete', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, serverError: { page: 2, times: 1, status: 500 } }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, src.records.map((c) => c.id), '500 then success');
    assert.equal(src.requests.filter((q) => q.query.get('_page') === '2').length, 2, 'page 2 was requested twice');
    const conn = await getConnection(id);
    assert.ok(conn.last_unhealthy_code == null || conn.last_unhealthy_code === '', `a retried 500 does not mark the connection: ${JSON.stringify(conn)}`);
  });

  test('503 on every try: a bounded number of retries, then incomplete', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, serverError: { page: 2, times: 1000, status: 503 } }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact', { timeoutMs: 150_000 });
    assertIncomplete(r, /503/);
    const tries = src.requests.filter((q) => q.query.get('_page') === '2').length;
    assert.ok(tries >= 2 && tries <= 10, `page 2 was tried a bounded number of times (${tries})`);
  });

  test('401: exit 3 and the connection shows last_unhealthy_code "401" and last_unhealthy_at', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ unauthorized: true }));
    const id = await jsonserverOn(src, { token: 'not-accepted' });
    const startedAt = Date.now();
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /401/);
    assert.ok(src.requests.length <= 2, `a 401 is not retried over and over (${src.requests.length} requests)`);
    const conn = await getConnection(id);
    assert.equal(conn.last_unhealthy_code, '401', JSON.stringify(conn));
    assert.ok(conn.last_unhealthy_at, `last_unhealthy_at is set: ${JSON.stringify(conn)}`);
    assert.ok(Date.parse(conn.last_unhealthy_at) >= startedAt - 5000, `last_unhealthy_at is recent: ${conn.last_unhealthy_at}`);
  });

  test('403: exit 3 and last_unhealthy_code "403"', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ forbidden: true }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /403/);
    const conn = await getConnection(id);
    assert.equal(conn.last_unhealthy_code, '403', JSON.stringify(conn));
  });

  test('records without an id, with a NUL in the id, or not objects are skipped and counted; the scan stays complete', { timeout: TEST_TIMEOUT }, async () => {
    const good = faults.generate(25);
    const records = [...good.slice(0, 3), { name: 'no id' }, 'a string', ...good.slice(3, 14), { id: 'bad\u0000id' }, null, ...good.slice(14)];
    const src = track(await faults.start({ records }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, good.map((c) => c.id), 'the usable records');
    assert.match(r.stderr, /note: 4 unusable records skipped; the first: GET \S+_page=1\S*: record 3 on page 1 has no id at \/id/, r.describe());
  });

  test('a malformed JSON page: exit 3 with an error naming the request', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, malformed: { page: 2 } }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r);
    assert.match(r.summary.error, /\/contacts/, `the error names the request's path: ${r.summary.error}`);
    assert.match(r.summary.error, /_page=2/, `the error names which page (the request's query): ${r.summary.error}`);
    assert.match(r.summary.error, /json/i, `the error says the body is not valid JSON: ${r.summary.error}`);
  });

  test('a page without the records array: exit 3', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, missingRecords: { page: 2 } }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /\/contacts/);
  });

  test('a next link that loops: exit 3 mentioning the loop', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, loop: { page: 2 } }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /loop/i);
    assert.ok(src.requests.length <= 4, `the loop is caught at once (${src.requests.length} requests)`);
  });

  test('a next link to another origin is not followed (credentials stay with the source): exit 3', { timeout: TEST_TIMEOUT }, async () => {
    const elsewhere = track(await faults.start({ count: 250 }));
    const src = track(await faults.start({ count: 250, nextOrigin: elsewhere.url }));
    const id = await jsonserverOn(src, { token: 'secret-bearer-token' });
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /origin/i);
    assert.equal(elsewhere.requests.length, 0, 'nothing was sent to the other origin');
  });

  test('slow responses: still complete', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 250, delayMs: 700 }));
    const id = await jsonserverOn(src);
    const r = await poll(id, 'crm_contact');
    assertComplete(r);
    assertExactlyOnce(r, src.records.map((c) => c.id), 'slow source');
    assert.ok(r.summary.duration_ms >= 700 * 2, `duration_ms counts the waits (${r.summary.duration_ms})`);
  });

  test('a source that is not listening: incomplete (network error), not a crash', { timeout: TEST_TIMEOUT }, async () => {
    const port = await freePort();
    const id = await createConnection('jsonserver', { api_url: `http://127.0.0.1:${port}` });
    const r = await poll(id, 'crm_contact', { timeoutMs: 150_000 });
    assertIncomplete(r);
    assert.match(r.summary.error, new RegExp(`127\\.0\\.0\\.1:${port}|/contacts`), r.describe());
  });
});

// ---------------------------------------------------------------------------------------------

describe('TLS', () => {
  let dir;
  let pki;

  before(() => {
    dir = makeTempDir('hookd-e2e-tls-');
    pki = makeTestPki(dir);
  });
  after(() => removeDir(dir));

  test('a certificate signed by the CA in HOOKD_CA_FILE is accepted (by name and by IP address)', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 150, tls: pki.localhost, urlHost: 'localhost' }));
    assert.match(src.url, /^https:\/\/localhost:\d+$/);
    const byName = await createConnection('jsonserver', { api_url: src.url });
    const r = await poll(byName, 'crm_contact', { env: { HOOKD_CA_FILE: pki.caFile } });
    assertComplete(r);
    assertExactlyOnce(r, src.records.map((c) => c.id), 'https://localhost with the test CA');
    const byIp = await createConnection('jsonserver', { api_url: `https://127.0.0.1:${src.port}` });
    const r2 = await poll(byIp, 'crm_contact', { env: { HOOKD_CA_FILE: pki.caFile } });
    assertComplete(r2);
  });

  test('without the CA the certificate is untrusted: exit 3 with a TLS error', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 5, tls: pki.localhost, urlHost: 'localhost' }));
    const id = await createConnection('jsonserver', { api_url: src.url });
    const r = await poll(id, 'crm_contact');
    assertIncomplete(r, /tls|ssl|certificate/i);
    assert.equal(src.requests.length, 0, 'no request got through');
  });

  test('a certificate for another host name is refused: exit 3', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 5, tls: pki.wronghost, urlHost: 'localhost' }));
    const id = await createConnection('jsonserver', { api_url: src.url });
    const r = await poll(id, 'crm_contact', { env: { HOOKD_CA_FILE: pki.caFile } });
    assertIncomplete(r, /tls|ssl|certificate|host ?name|verif/i);
    assert.equal(src.requests.length, 0, 'no request got through');
  });

  test('a CA file that does not exist is a configuration error (exit 2, naming ca_file)', { timeout: TEST_TIMEOUT }, async () => {
    const src = track(await faults.start({ count: 5 }));
    const id = await createConnection('jsonserver', { api_url: src.url });
    const r = await poll(id, 'crm_contact', { env: { HOOKD_CA_FILE: path.join(dir, 'missing.pem') } });
    assert.equal(r.code, 2, r.describe());
    assert.match(r.stderr, /ca_file/i, r.describe());
  });
});
