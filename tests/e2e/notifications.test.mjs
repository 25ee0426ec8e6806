// The workspace notification URL (issue 5, item 4): WEBHOOK_UNHEALTHY after the third
// consecutive failed delivery, WEBHOOK_PAUSED when a receiver answers 410, both signed like
// deliveries (sig + Standard Webhooks headers); settable through PATCH /hookd/workspace, and
// bad values are refused without writing anything.
//
//   HOOKD_TEST_DATABASE_URL=postgresql://... node --test tests/e2e/notifications.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Webhook } from 'standardwebhooks';

import { createWorkspace, makeRequest, startDaemon, uniqueName } from './daemon.mjs';
import { startReceiver } from '../fixtures/receiver.mjs';
import { contact, startJsonServer } from '../fixtures/json_server.mjs';

describe('workspace notifications', () => {
  let d, ws, req, src, rx;

  before(async () => {
    ws = await createWorkspace(uniqueName('notify'));
    d = await startDaemon({
      env: { HOOKD_MIN_INTERVAL_SECONDS: '1', HOOKD_RETRY_SCHEDULE: '1,1,1,1,1,1,1,1' },
    });
    req = makeRequest(d.url, ws.apiKey, d);
    src = await startJsonServer({ contacts: [contact(1, 'Ada Lovelace')] });
    rx = await startReceiver();
  });

  after(async () => {
    await d?.stop();
    await src?.close();
    await rx?.close();
  });

  function verify(request) {
    const body = request.rawBody;
    new Webhook(ws.workspaceSecret).verify(body, request.headers);  // throws if not signed right
    const start = body.indexOf('"data":') + 7;
    const end = body.indexOf(',"webhook":');
    const json = JSON.parse(body);
    const sig = crypto.createHmac('sha1', ws.workspaceSecret).update(body.slice(start, end) + json.nonce).digest('base64');
    assert.equal(json.sig, sig, 'sig = HMAC-SHA1(secret, data + nonce)');
    return json;
  }

  test('GET and PATCH /hookd/workspace; a bad URL is refused and changes nothing', async () => {
    const bad = await req('PATCH', '/hookd/workspace', { body: { notification_url: 'not a url' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.field, 'notification_url');
    const unknown = await req('PATCH', '/hookd/workspace', { body: { colour: 'red' } });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json.error.code, 'unknown_field');
    assert.equal((await req('GET', '/hookd/workspace')).json.notification_url, '');
    const ok = await req('PATCH', '/hookd/workspace', { body: { notification_url: `${rx.url}/notify` } });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.json.notification_url, `${rx.url}/notify`);
    assert.equal(ok.json.id, ws.workspaceId);
    assert.equal((await req('GET', '/hookd/workspace')).json.notification_url, `${rx.url}/notify`);
  });

  test('notification_url in the configuration sets the bootstrap workspace\'s; a bad one stops start-up', async () => {
    const configured = await startDaemon({ env: { HOOKD_NOTIFICATION_URL: `${rx.url}/configured` } });
    try {
      const r = await configured.request('GET', '/hookd/workspace');
      assert.equal(r.status, 200);
      assert.equal(r.json.notification_url, `${rx.url}/configured`);
    } finally {
      await configured.stop();
    }
    await assert.rejects(startDaemon({ env: { HOOKD_NOTIFICATION_URL: 'ftp://x' } }), /notification_url/);
  });

  test('three failed deliveries notify WEBHOOK_UNHEALTHY; a 410 notifies WEBHOOK_PAUSED', { timeout: 90_000 }, async () => {
    const conn = await req('POST', '/unified/connection', {
      body: { integration_type: 'jsonserver', auth: { api_url: src.url } },
    });
    assert.equal(conn.status, 200);
    rx.script('/hook', 500, 500, 500, 410);
    const hook = await req('POST', '/unified/webhook?include_all=true', {
      body: { connection_id: conn.json.id, object_type: 'crm_contact', event: 'created', hook_url: `${rx.url}/hook`, interval: 0.05 },
    });
    assert.equal(hook.status, 200, JSON.stringify(hook.json));
    const notes = await rx.waitFor((rs) => {
      const n = rs.filter((r) => r.path === '/notify');
      return n.length >= 2 ? n : null;
    }, { timeoutMs: 60_000, what: 'two notifications', logs: d.logs });
    const unhealthy = verify(notes[0]);
    assert.equal(unhealthy.type, 'WEBHOOK_UNHEALTHY');
    assert.equal(unhealthy.webhook.id, hook.json.id);
    assert.equal(unhealthy.data[0].webhook_id, hook.json.id);
    assert.match(unhealthy.data[0].reason, /3 consecutive failed deliveries/);
    const paused = verify(notes[1]);
    assert.equal(paused.type, 'WEBHOOK_PAUSED');
    assert.match(paused.data[0].reason, /410/);
    assert.equal(rx.requestsTo('/hook').length, 4, 'nothing is sent after the 410');
    const got = await req('GET', `/unified/webhook/${hook.json.id}`);
    assert.equal(got.json.is_paused, true);
    assert.equal(got.json.is_healthy, false);
    await req('DELETE', `/unified/connection/${conn.json.id}`);
  });
});
