// Helpers shared by the delivery end-to-end suites (delivery.test.mjs, engine.test.mjs): the
// test database through psql (cursors, deliveries, attempts the API does not show), waiting,
// the webhook API calls, and the checks of a delivery's shape and signatures.
//
// Not a test file (no `.test.` in the name). Importing it fails loudly (never skips) when
// HOOKD_TEST_DATABASE_URL is not set.
//
// A "world" `w` (see world() in the suites) has `api` (the daemon's request helper for the
// suite's workspace), `connectionId` and `daemon`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { Webhook } from 'standardwebhooks';

import { sleep, testDatabaseUrl } from './daemon.mjs';

export const INTERVAL = 0.05; // minutes: a poll every 3 s (HOOKD_MIN_INTERVAL_SECONDS=1)

// Fails loudly (never skips) when the database is not configured.
const DATABASE_URL = testDatabaseUrl();

// ---------------------------------------------------------------------------------------------
// helpers

export function psql(statement) {
  return new Promise((resolve, reject) => {
    execFile('psql', [DATABASE_URL, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', statement], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`psql: ${statement}\n${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Runs a query through psql; resolves the rows as objects (json_agg of the query). */
export async function sql(query) {
  return JSON.parse((await psql(`select coalesce(json_agg(t), '[]'::json) from (${query}) t`)).trim());
}

export const q = (s) => `'${String(s).replace(/'/g, "''")}'`;

/** Waits until fn() resolves truthy; throws naming `what` (and the daemon's log tail) otherwise. */
export async function until(fn, { timeoutMs = 20_000, what = 'the condition', daemon, every = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (daemon ? `\n--- hookd log tail ---\n${daemon.logs().slice(-4000)}` : ''));
    }
    await sleep(every);
  }
}

/** The exact bytes of the body's `data` array (hookd writes `{"data":` first). */
export function dataArrayText(raw) {
  const prefix = '{"data":';
  assert.ok(raw.startsWith(prefix), `the body starts with {"data": ${raw.slice(0, 80)}`);
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = prefix.length; i < raw.length; i++) {
    const c = raw[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) return raw.slice(prefix.length, i + 1);
    }
  }
  throw new Error(`no complete data array in ${raw.slice(0, 200)}`);
}

export const ids = (reqs) => reqs.flatMap((r) => (r.json?.data ?? []).map((x) => x.id));
export const nowIso = () => new Date().toISOString();

export async function createWebhook(w, body, query = '') {
  const r = await w.api('POST', `/unified/webhook${query}`, {
    body: { connection_id: w.connectionId, object_type: 'crm_contact', interval: INTERVAL, ...body },
  });
  assert.equal(r.status, 200, `POST /unified/webhook${query} ${JSON.stringify(body)} -> ${r.status} ${r.text}`);
  return r.json;
}

export async function getWebhook(w, id) {
  const r = await w.api('GET', `/unified/webhook/${id}`);
  assert.equal(r.status, 200, `GET /unified/webhook/${id} -> ${r.status} ${r.text}`);
  return r.json;
}

export async function trigger(w, id) {
  const r = await w.api('PUT', `/unified/webhook/${id}/trigger`);
  assert.equal(r.status, 200, `PUT /unified/webhook/${id}/trigger -> ${r.status} ${r.text}`);
}

/** The webhook's row joined with its feed: cursor_seq, head_seq, baseline_done, ... */
export async function state(webhookId) {
  const rows = await sql(
    `select w.cursor_seq, w.is_healthy, w.is_paused, w.paused_reason, w.consecutive_failures,
            f.head_seq, f.baseline_done
       from webhooks w left join feeds f on f.id = w.feed_id where w.id = ${q(webhookId)}`,
  );
  assert.equal(rows.length, 1, `webhook ${webhookId} is in the database`);
  return rows[0];
}

/** Waits for the first poll of the webhook's feed (the baseline, which emits nothing). */
export async function baseline(w, webhookId) {
  await until(async () => (await state(webhookId)).baseline_done, { what: `the baseline of webhook ${webhookId}'s feed`, daemon: w.daemon });
}

/** Waits until every webhook has finished `n` more runs (polls) than now. */
export async function moreRuns(w, webhookIds, n = 2) {
  const count = async () => {
    const rows = await sql(
      `select webhook_id, count(*)::int as n from webhook_runs where webhook_id in (${webhookIds.map(q).join(',')}) group by webhook_id`,
    );
    return Object.fromEntries(rows.map((r) => [r.webhook_id, r.n]));
  };
  const start = await count();
  await until(
    async () => {
      const now = await count();
      return webhookIds.every((id) => (now[id] ?? 0) >= (start[id] ?? 0) + n);
    },
    { what: `${n} more runs of ${webhookIds.join(', ')}`, daemon: w.daemon },
  );
}

export async function attempts(webhookId) {
  return sql(
    `select delivery_id, attempt, status, latency_ms, error from delivery_attempts
      where webhook_id = ${q(webhookId)} order by at, id`,
  );
}

export function assertPayloadShape(req, hook, type = 'VIRTUAL') {
  const where = `${req.method} ${req.path} #${req.index}`;
  assert.equal(req.method, 'POST', where);
  assert.match(req.headers['content-type'] ?? '', /^application\/json\b/, `${where}: content-type`);
  const b = req.json;
  assert.ok(b && typeof b === 'object', `${where}: the body is JSON: ${req.rawBody.slice(0, 200)}`);
  for (const k of ['data', 'webhook', 'nonce', 'sig', 'sig256', 'type']) assert.ok(k in b, `${where}: body has "${k}": ${req.rawBody.slice(0, 300)}`);
  assert.ok(Array.isArray(b.data), `${where}: data is an array`);
  assert.equal(b.type, type, `${where}: type`);
  assert.equal(typeof b.nonce, 'string');
  assert.ok(b.nonce.length >= 8, `${where}: a random nonce: ${b.nonce}`);
  assert.match(b.sig, /^[A-Za-z0-9+/]{27}=$/, `${where}: sig is base64 of 20 bytes`);
  assert.match(b.sig256, /^[A-Za-z0-9+/]{43}=$/, `${where}: sig256 is base64 of 32 bytes`);
  assert.equal(b.webhook.id, hook.id, `${where}: webhook.id`);
  assert.equal(b.webhook.connection_id, hook.connection_id, `${where}: webhook.connection_id`);
  assert.equal(b.webhook.object_type, hook.object_type, `${where}: webhook.object_type`);
  assert.equal(b.webhook.event, hook.event, `${where}: webhook.event`);
  assert.equal(b.webhook.hook_url, hook.hook_url, `${where}: webhook.hook_url`);
  assert.match(req.headers['webhook-id'] ?? '', /^\S+$/, `${where}: webhook-id header`);
  assert.match(req.headers['webhook-timestamp'] ?? '', /^\d+$/, `${where}: webhook-timestamp header`);
  assert.match(req.headers['webhook-signature'] ?? '', /^v1,/, `${where}: webhook-signature header`);
}

/** Verifies both signatures of a delivery with the workspace secret (README "Verifying signatures"). */
export function verifySignatures(req, secret) {
  const where = `${req.path} #${req.index} (webhook-id ${req.headers['webhook-id']})`;
  // Standard Webhooks, with the library, unchanged.
  let verified;
  assert.doesNotThrow(() => {
    verified = new Webhook(secret).verify(req.rawBody, {
      'webhook-id': req.headers['webhook-id'],
      'webhook-timestamp': req.headers['webhook-timestamp'],
      'webhook-signature': req.headers['webhook-signature'],
    });
  }, `${where}: standardwebhooks verifies webhook-signature`);
  assert.deepEqual(verified, req.json, `${where}: the verified payload is the body`);
  // Unified's sig/sig256: HMAC(secret as UTF-8, exact data array bytes + nonce), base64.
  const data = dataArrayText(req.rawBody);
  assert.deepEqual(JSON.parse(data), req.json.data, `${where}: the data slice is the data array`);
  const message = Buffer.concat([Buffer.from(data, 'utf8'), Buffer.from(req.json.nonce, 'utf8')]);
  const sig = crypto.createHmac('sha1', Buffer.from(secret, 'utf8')).update(message).digest('base64');
  const sig256 = crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(message).digest('base64');
  assert.equal(req.json.sig, sig, `${where}: sig = base64(HMAC-SHA1(secret, data + nonce))`);
  assert.equal(req.json.sig256, sig256, `${where}: sig256 = base64(HMAC-SHA256(secret, data + nonce))`);
  // The README's own snippet agrees.
  const start = req.rawBody.indexOf('"data":') + 7;
  const end = req.rawBody.lastIndexOf(',"webhook":');
  assert.equal(req.rawBody.slice(start, end), data, `${where}: README's data slice`);
}
