// The SSRF guard on sources: a connection's auth.api_url / auth.token_url on a private,
// loopback or metadata address is refused at create and update (400 naming the field, nothing
// written) unless allow_private_sources allows it; a source stored while it was allowed is
// refused at connect once it is not; with HOOKD_ALLOW_PRIVATE_SOURCES=true it is polled.
//
// Needs HOOKD_TEST_DATABASE_URL and a built hookd (HOOKD_BIN, else build/hookd).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  deleteCreatedConnections, hookdEnvOf, randomToken, runHookd, sleep, startDaemon, startStub,
} from './daemon.mjs';

const TEST_TIMEOUT = 120_000;
const apiKey = randomToken('key');
const workspaceSecret = randomToken('wsec');
const cleanups = [];

after(async () => {
  await deleteCreatedConnections();
  while (cleanups.length) await cleanups.pop()().catch(() => {});
});

// Every daemon here is the same bootstrap workspace (same key), with or without private sources.
// One runs at a time: a second instance on the database would claim the other's webhooks and
// poll them under its own policy.
let current = null;
async function daemon(allowSources) {
  if (current) await current.stop();
  const d = await startDaemon({
    apiKey,
    workspaceSecret,
    env: {
      HOOKD_MIN_INTERVAL_SECONDS: '1',
      HOOKD_ALLOW_PRIVATE_SOURCES: allowSources ? 'true' : undefined,
    },
  });
  cleanups.push(() => d.stop('SIGKILL'));
  current = d;
  return d;
}

async function stub() {
  const s = await startStub();
  s.collections['/contacts'] = [{ id: 1, name: 'Ada', email: 'ada@example.com' }];
  cleanups.push(() => s.close());
  return s;
}

const port = (url) => new URL(url).port;

describe('sources behind the address policy', () => {
  test('by default, api_url and token_url on loopback, private or metadata addresses are refused at create and update', { timeout: TEST_TIMEOUT }, async () => {
    const src = await stub();
    const d = await daemon(false);
    assert.ok(!('HOOKD_ALLOW_PRIVATE_SOURCES' in d.env));
    const p = port(src.url);
    const refused = [
      [src.url, '127.0.0.1'],
      [`http://localhost:${p}`, 'localhost'],
      [`http://2130706433:${p}`, '127.0.0.1'],
      [`http://0x7f.1:${p}`, '127.0.0.1'],
      [`http://0177.0.0.1:${p}`, '127.0.0.1'],
      [`http://[::ffff:127.0.0.1]:${p}`, '127.0.0.1'],
      [`http://[::1]:${p}`, '::1'],
      ['http://169.254.169.254/latest/meta-data', '169.254.169.254'],
      ['http://metadata.google.internal/computeMetadata/v1', 'metadata'],
      ['http://10.0.0.7:8080', '10.0.0.7'],
      [`http://good.example@127.0.0.1:${p}`, 'credentials'],
    ];
    for (const [apiUrl, mention] of refused) {
      const r = await d.request('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: apiUrl } } });
      assert.equal(r.status, 400, `api_url ${apiUrl} -> ${r.status} ${r.text}`);
      assert.equal(r.json?.error?.field, 'auth.api_url', `api_url ${apiUrl}: the error names the field: ${r.text}`);
      assert.ok(r.json.error.message.includes(mention), `api_url ${apiUrl}: the message mentions ${mention}: ${r.json.error.message}`);
    }
    const list = await d.request('GET', '/unified/connection');
    assert.equal(list.status, 200);
    const urls = list.json.map((c) => c.auth?.api_url);
    for (const [apiUrl] of refused) assert.ok(!urls.includes(apiUrl), `${apiUrl} was not written`);

    // A public source is accepted; updating it onto loopback is refused and changes nothing.
    const ok = await d.request('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: 'http://93.184.215.14' } } });
    assert.equal(ok.status, 200, ok.text);
    const patch = await d.request('PATCH', `/unified/connection/${ok.json.id}`, { body: { auth: { api_url: src.url } } });
    assert.equal(patch.status, 400, patch.text);
    assert.equal(patch.json.error.field, 'auth.api_url');
    const after = await d.request('GET', `/unified/connection/${ok.json.id}`);
    assert.equal(after.json.auth.api_url, 'http://93.184.215.14', 'unchanged');

    // OAuth: the token URL is checked too.
    const oauth = await d.request('POST', '/unified/connection', {
      body: { integration_type: 'hubspot', auth: { api_url: 'https://93.184.215.14', token_url: `${src.url}/oauth/v1/token`, refresh_token: 'r' } },
    });
    assert.equal(oauth.status, 400, oauth.text);
    assert.equal(oauth.json.error.field, 'auth.token_url');
    assert.equal(src.requests.length, 0, 'nothing was sent to the loopback source');
  });

  test('with HOOKD_ALLOW_PRIVATE_SOURCES=true a loopback source is accepted and polled; without it the same source is refused at connect', { timeout: TEST_TIMEOUT }, async () => {
    const src = await stub();
    const d = await daemon(true);
    const c = await d.request('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: src.url } } });
    assert.equal(c.status, 200, c.text);
    const h = await d.request('POST', '/unified/webhook', {
      body: { connection_id: c.json.id, object_type: 'crm_contact', event: 'created', hook_url: `${src.url}/hook`, interval: 1, is_paused: false },
    });
    assert.equal(h.status, 200, h.text);
    await d.request('PUT', `/unified/webhook/${h.json.id}/trigger`);
    const deadline = Date.now() + 30_000;
    while (!src.requests.some((r) => r.method === 'GET' && r.url.startsWith('/contacts')) && Date.now() < deadline) await sleep(100);
    assert.ok(src.requests.some((r) => r.method === 'GET' && r.url.startsWith('/contacts')), 'the loopback source was polled');
    await d.stop();

    // The connection stays stored; polled with the default policy, the connect is refused.
    const before = src.requests.length;
    const env = { ...hookdEnvOf(d), HOOKD_ALLOW_PRIVATE_SOURCES: undefined };
    const r = await runHookd(['source', 'poll', '--connection', c.json.id, '--object', 'crm_contact'], { env, timeoutMs: 60_000 });
    assert.equal(r.code, 3, `exit 3 (incomplete): ${r.stderr}`);
    assert.match(r.stderr, /scan incomplete: .*not allowed/, r.stderr);
    assert.equal(src.requests.length, before, 'no request reached the source');
  });
});
