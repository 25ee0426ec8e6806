// The benchmark's workload, shared by every driver so that all systems deliver the same bytes:
// the source records (Unified crm_contact shape, ~275 bytes each), the webhook object carried
// in each payload, and the signed body with its Standard Webhooks headers (DESIGN 1.2).
import { createHmac, randomBytes } from 'node:crypto';

const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Radia', 'Leslie'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Perlman', 'Lamport'];

const V1_TIME = Date.parse('2026-01-01T00:00:00.000Z');
const V2_TIME = Date.parse('2026-06-01T00:00:00.000Z');

/** Record i (0-based) of feed f at version 1 or 2. Version 2 changes every record's name and
 *  updated_at, so a poll of v2 after a baseline of v1 sees every record updated. */
export function contact(f, i, version) {
  const first = FIRST[i % FIRST.length];
  const last = LAST[(i * 7 + f) % LAST.length];
  const n = String(i + 1).padStart(6, '0');
  const lastName = version === 1 ? last : last.toUpperCase(); // same length, different bytes
  const updated = new Date((version === 1 ? V1_TIME : V2_TIME) + i * 1000).toISOString();
  return {
    id: `c${n}`,
    name: `${first} ${lastName}`,
    first_name: first,
    last_name: lastName,
    emails: [{ email: `${first.toLowerCase()}${i + 1}@example.com`, type: 'WORK' }],
    telephones: [{ telephone: `+1 555 01${n}`, type: 'WORK' }],
    created_at: new Date(V1_TIME + i * 1000).toISOString(),
    updated_at: updated,
  };
}

/** A webhook object in the shape hookd's API returns (and puts in each payload). */
export function webhookObject(w, hookUrl) {
  const id = `wh_${String(w).padStart(4, '0')}_b3nchm4rkw3bh00k`;
  return {
    id,
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    workspace_id: 'ws_b3nchm4rkw0rksp4c3',
    connection_id: `conn_${String(w).padStart(4, '0')}_b3nchm4rkc0nn`,
    hook_url: hookUrl,
    object_type: 'crm_contact',
    interval: 60,
    checked_at: '2026-01-01T00:00:00.000Z',
    integration_type: 'jsonserver',
    environment: 'Production',
    event: 'updated',
    runs: [],
    fields: '',
    webhook_type: 'virtual',
    is_healthy: true,
    page_max_limit: 4,
    filters: {},
    is_paused: false,
    is_beta: false,
  };
}

/** A signing secret: "whsec_" + base64 of 24 random bytes (Standard Webhooks' format). */
export function newSecret() {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/**
 * The signed delivery, as hookd sends it: body {"data","webhook","nonce","sig","sig256","type"}
 * where sig/sig256 = base64(HMAC-SHA1/SHA256(secret as UTF-8, data bytes + nonce)), and the
 * Standard Webhooks headers, signed with the base64-decoded part of the secret.
 *   secret: { text: "whsec_...", key: Buffer }  (see signingKey)
 */
export function signedDelivery(secret, msgId, dataJson, webhookJson) {
  const nonce = randomBytes(16).toString('base64url');
  const sig = createHmac('sha1', secret.text).update(dataJson).update(nonce).digest('base64');
  const sig256 = createHmac('sha256', secret.text).update(dataJson).update(nonce).digest('base64');
  const body = `{"data":${dataJson},"webhook":${webhookJson},"nonce":"${nonce}","sig":"${sig}","sig256":"${sig256}","type":"VIRTUAL"}`;
  const ts = String(Math.floor(Date.now() / 1000));
  const signature = createHmac('sha256', secret.key).update(`${msgId}.${ts}.${body}`).digest('base64');
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': msgId,
      'webhook-timestamp': ts,
      'webhook-signature': `v1,${signature}`,
    },
  };
}

export function signingKey(text) {
  return { text, key: Buffer.from(text.slice('whsec_'.length), 'base64') };
}
