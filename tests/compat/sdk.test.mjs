// Compatibility with the official Unified.to TypeScript SDK (@unified-api/typescript-sdk): every
// call goes through the SDK unchanged except for serverURL, and must pass the SDK's own request
// and response validation (an SDKValidationError / ResponseValidationError fails the test).
//
// Note: the SDK sends the key as `authorization: <key>` (an apiKey header, no "Bearer" prefix);
// see node_modules/@unified-api/typescript-sdk/src/lib/security.ts, resolveGlobalSecurity().
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { UnifiedTo } from '@unified-api/typescript-sdk';
import { SDKValidationError, ResponseValidationError } from '@unified-api/typescript-sdk/sdk/models/errors';
import { createWorkspace, hookdEnvOf, makeRequest, startDaemon, startStub, testDatabaseUrl, uniqueName } from '../e2e/daemon.mjs';

testDatabaseUrl();

let d;
let stub;
let sdk;
let apiKey;
let raw; // plain HTTP with the same key, for clean-up

before(async () => {
  stub = await startStub();
  d = await startDaemon();
  // A workspace of its own (the bootstrap workspace is shared by every daemon on the database).
  const ws = await createWorkspace(uniqueName('sdk-compat'), hookdEnvOf(d));
  apiKey = ws.apiKey;
  raw = makeRequest(d.url, apiKey, d);
  sdk = new UnifiedTo({ security: { jwt: apiKey }, serverURL: d.url });
});

after(async () => {
  await d?.stop();
  await stub?.close();
});

/** Runs an SDK call; turns validation errors into a readable failure. */
async function call(name, fn) {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SDKValidationError || e instanceof ResponseValidationError) {
      const pretty = typeof e.pretty === 'function' ? e.pretty() : String(e);
      assert.fail(`${name}: the SDK rejected hookd's response: ${pretty}\nraw value: ${JSON.stringify(e.rawValue ?? e.body)}`);
    }
    const status = e?.statusCode ? ` (HTTP ${e.statusCode}: ${e.body})` : '';
    let state = '';
    if (d && (d.child.exitCode !== null || d.child.signalCode !== null)) {
      state = `; hookd has exited (code ${d.child.exitCode}, signal ${d.child.signalCode})\n--- hookd log tail ---\n${d.logs().slice(-2000)}`;
    }
    assert.fail(`${name} failed: ${e?.name}: ${e?.message}${status}${state}`);
  }
}

async function expectHttpError(name, fn, status) {
  try {
    await fn();
  } catch (e) {
    assert.ok(!(e instanceof SDKValidationError), `${name}: got a validation error instead of HTTP ${status}: ${e}`);
    assert.equal(e.statusCode, status, `${name}: ${e?.name}: ${e?.message}`);
    return e;
  }
  assert.fail(`${name} should have failed with HTTP ${status}`);
}

describe('official SDK against hookd', () => {
  let conn;
  let hook;
  const xref = uniqueName('sdk');
  const token = uniqueName('sdk-secret-token');

  test('the SDK sends the key verbatim in the authorization header', async () => {
    const probe = new UnifiedTo({ security: { jwt: 'probe-key-123' }, serverURL: stub.url });
    const before = stub.requests.length;
    await call('listUnifiedWebhooks (stub)', () => probe.unified.listUnifiedWebhooks({}));
    const r = stub.requests.slice(before).find((x) => x.url.startsWith('/unified/webhook'));
    assert.ok(r, 'the stub saw the request');
    assert.equal(r.headers.authorization, 'probe-key-123');
  });

  test('createUnifiedConnection', async () => {
    conn = await call('createUnifiedConnection', () =>
      sdk.unified.createUnifiedConnection({
        integrationType: 'jsonserver',
        integrationName: 'SDK json-server',
        categories: ['crm'],
        permissions: ['crm_contact_read'],
        auth: { apiUrl: stub.url, token },
        externalXref: xref,
      }),
    );
    assert.equal(typeof conn.id, 'string');
    assert.equal(conn.integrationType, 'jsonserver');
    assert.deepEqual(conn.categories, ['crm']);
    assert.deepEqual(conn.permissions, ['crm_contact_read']);
    assert.equal(conn.environment, 'Production');
    assert.ok(conn.createdAt instanceof Date);
    assert.equal(conn.auth?.apiUrl, stub.url);
    assert.equal(conn.auth?.token, '********');
  });

  test('getUnifiedConnection', async () => {
    const g = await call('getUnifiedConnection', () => sdk.unified.getUnifiedConnection({ id: conn.id }));
    assert.equal(g.id, conn.id);
    assert.equal(g.externalXref, xref);
  });

  test('listUnifiedConnections (with every list parameter the SDK has)', async () => {
    const all = await call('listUnifiedConnections', () => sdk.unified.listUnifiedConnections({}));
    assert.ok(all.some((c) => c.id === conn.id));
    const filtered = await call('listUnifiedConnections(filters)', () =>
      sdk.unified.listUnifiedConnections({
        limit: 10,
        offset: 0,
        order: 'asc',
        sort: 'created_at',
        env: 'Production',
        categories: ['crm'],
        externalXref: xref,
        updatedGte: new Date(Date.now() - 3600_000).toISOString(),
      }),
    );
    assert.deepEqual(filtered.map((c) => c.id), [conn.id]);
  });

  test('patchUnifiedConnection', async () => {
    const p = await call('patchUnifiedConnection', () =>
      sdk.unified.patchUnifiedConnection({
        id: conn.id,
        connection: { integrationType: 'jsonserver', categories: ['crm'], permissions: ['crm_contact_read'], integrationName: 'patched' },
      }),
    );
    assert.equal(p.integrationName, 'patched');
    assert.equal(p.externalXref, xref);
  });

  test('updateUnifiedConnection', async () => {
    const u = await call('updateUnifiedConnection', () =>
      sdk.unified.updateUnifiedConnection({
        id: conn.id,
        connection: {
          integrationType: 'jsonserver',
          integrationName: 'updated',
          categories: ['crm'],
          permissions: ['crm_contact_read'],
          auth: { apiUrl: stub.url, token },
          externalXref: xref,
        },
      }),
    );
    assert.equal(u.integrationName, 'updated');
  });

  test('createUnifiedWebhook', async () => {
    hook = await call('createUnifiedWebhook', () =>
      sdk.unified.createUnifiedWebhook({
        includeAll: false,
        webhook: {
          connectionId: conn.id,
          hookUrl: `${stub.url}/hook`,
          objectType: 'crm_contact',
          event: 'created',
          interval: 60,
        },
      }),
    );
    assert.equal(typeof hook.id, 'string');
    assert.equal(hook.connectionId, conn.id);
    assert.equal(hook.objectType, 'crm_contact');
    assert.equal(hook.event, 'created');
    assert.equal(hook.interval, 60);
    assert.equal(hook.integrationType, 'jsonserver');
    assert.equal(hook.environment, 'Production');
    assert.equal(hook.webhookType, 'virtual');
    assert.equal(hook.isHealthy, true);
    assert.ok(hook.createdAt instanceof Date);
    assert.ok(hook.updatedAt instanceof Date);
  });

  test('createUnifiedWebhook with includeAll and every writable field', async () => {
    const w = await call('createUnifiedWebhook(full)', () =>
      sdk.unified.createUnifiedWebhook({
        includeAll: true,
        webhook: {
          connectionId: conn.id,
          hookUrl: `${stub.url}/hook2`,
          objectType: 'crm_company',
          event: 'updated',
          interval: 120,
          fields: 'id,name',
          filters: { name: 'Acme' },
          pageMaxLimit: 25,
          webhookType: 'virtual',
          isPaused: true,
          isBeta: false,
        },
      }),
    );
    assert.equal(w.pageMaxLimit, 25);
    assert.deepEqual(w.filters, { name: 'Acme' });
    await call('removeUnifiedWebhook(full)', () => sdk.unified.removeUnifiedWebhook({ id: w.id }));
  });

  test('listUnifiedWebhooks (with every list parameter the SDK has)', async () => {
    const all = await call('listUnifiedWebhooks', () => sdk.unified.listUnifiedWebhooks({}));
    assert.ok(all.some((w) => w.id === hook.id));
    const filtered = await call('listUnifiedWebhooks(filters)', () =>
      sdk.unified.listUnifiedWebhooks({
        connectionId: conn.id,
        object: 'crm_contact',
        integrationType: 'jsonserver',
        env: 'Production',
        isHealthy: true,
        limit: 10,
        offset: 0,
        sort: 'created_at',
        order: 'desc',
        updatedGte: new Date(Date.now() - 3600_000).toISOString(),
        createdLte: new Date(Date.now() + 3600_000).toISOString(),
      }),
    );
    assert.deepEqual(filtered.map((w) => w.id), [hook.id]);
  });

  test('getUnifiedWebhook', async () => {
    const g = await call('getUnifiedWebhook', () => sdk.unified.getUnifiedWebhook({ id: hook.id }));
    assert.equal(g.id, hook.id);
    assert.equal(g.hookUrl, `${stub.url}/hook`);
  });

  test('updateUnifiedWebhook (PUT with the object as the SDK returned it)', async () => {
    const current = await call('getUnifiedWebhook', () => sdk.unified.getUnifiedWebhook({ id: hook.id }));
    const u = await call('updateUnifiedWebhook', () =>
      sdk.unified.updateUnifiedWebhook({ id: hook.id, webhook: { ...current, interval: 120, event: 'updated' } }),
    );
    assert.equal(u.interval, 120);
    assert.equal(u.event, 'updated');
    assert.equal(u.id, hook.id);
    hook = u;
  });

  test('patchUnifiedWebhook', async () => {
    const p = await call('patchUnifiedWebhook', () =>
      sdk.unified.patchUnifiedWebhook({
        id: hook.id,
        webhook: { connectionId: conn.id, objectType: 'crm_contact', event: 'updated', interval: 180 },
      }),
    );
    assert.equal(p.interval, 180);
    assert.equal(p.hookUrl, `${stub.url}/hook`);
    hook = p;
  });

  test('updateUnifiedWebhookTrigger', async () => {
    await call('updateUnifiedWebhookTrigger', () => sdk.unified.updateUnifiedWebhookTrigger({ id: hook.id }));
  });

  test('patchUnifiedWebhookTrigger', async () => {
    await call('patchUnifiedWebhookTrigger', () => sdk.unified.patchUnifiedWebhookTrigger({ id: hook.id }));
  });

  test('errors surface as HTTP errors (not validation errors)', async () => {
    await expectHttpError('getUnifiedWebhook(unknown)', () => sdk.unified.getUnifiedWebhook({ id: uniqueName('nope') }), 404);
    await expectHttpError('createUnifiedWebhook(bad event)', () =>
      sdk.unified.createUnifiedWebhook({
        webhook: { connectionId: conn.id, hookUrl: `${stub.url}/h`, objectType: 'crm_contact', event: 'exploded' },
      }), 400);
    const bad = new UnifiedTo({ security: { jwt: 'not-a-key' }, serverURL: d.url });
    await expectHttpError('listUnifiedWebhooks(bad key)', () => bad.unified.listUnifiedWebhooks({}), 401);
  });

  test('removeUnifiedWebhook', async () => {
    await call('removeUnifiedWebhook', () => sdk.unified.removeUnifiedWebhook({ id: hook.id }));
    await expectHttpError('getUnifiedWebhook(removed)', () => sdk.unified.getUnifiedWebhook({ id: hook.id }), 404);
  });

  test('removeUnifiedConnection (and its webhooks)', async () => {
    const w = await call('createUnifiedWebhook', () =>
      sdk.unified.createUnifiedWebhook({
        webhook: { connectionId: conn.id, hookUrl: `${stub.url}/hook`, objectType: 'crm_deal', event: 'deleted' },
      }),
    );
    await call('removeUnifiedConnection', () => sdk.unified.removeUnifiedConnection({ id: conn.id }));
    await expectHttpError('getUnifiedConnection(removed)', () => sdk.unified.getUnifiedConnection({ id: conn.id }), 404);
    await expectHttpError('getUnifiedWebhook(cascade)', () => sdk.unified.getUnifiedWebhook({ id: w.id }), 404);
    const left = await call('listUnifiedConnections', () => sdk.unified.listUnifiedConnections({ externalXref: xref }));
    assert.deepEqual(left, []);
  });

  test('the secret token never came back through the SDK', async () => {
    const list = await call('listUnifiedConnections', () => sdk.unified.listUnifiedConnections({}));
    assert.ok(!JSON.stringify(list).includes(token));
  });

  test('the bootstrap HOOKD_API_KEY works with the SDK too', async () => {
    const boot = new UnifiedTo({ security: { jwt: d.apiKey }, serverURL: d.url });
    await call('listUnifiedWebhooks(bootstrap key)', () => boot.unified.listUnifiedWebhooks({ limit: 1 }));
  });

  test('connection auth with date and number fields still passes SDK validation', async () => {
    // Unified's auth has typed fields (expiry_date: ISO date-time, expires_in: number, emails: array).
    // Redaction must keep the response valid for the SDK (e.g. not "********" for a date-time).
    const typedXref = uniqueName('sdk-typed');
    try {
      const c = await call('createUnifiedConnection(typed auth)', () =>
        sdk.unified.createUnifiedConnection({
          integrationType: 'jsonserver',
          categories: [],
          permissions: [],
          externalXref: typedXref,
          auth: {
            apiUrl: stub.url,
            accessToken: uniqueName('tok'),
            expiryDate: new Date(Date.now() + 3600_000),
            expiresIn: 3600,
            emails: ['someone@example.test'],
          },
        }),
      );
      await call('getUnifiedConnection(typed auth)', () => sdk.unified.getUnifiedConnection({ id: c.id }));
    } finally {
      // Clean up with plain HTTP: a response the SDK rejects would otherwise stay in the workspace.
      const l = await raw('GET', `/unified/connection?external_xref=${encodeURIComponent(typedXref)}`);
      for (const c of l.json || []) await raw('DELETE', `/unified/connection/${c.id}`);
    }
  });
});
