// The secret audit itself (secret_audit.mjs): planted leaks in every place and encoding are
// reported with their file, line and kind; the printed-once credentials are allowed only where
// hookd must print them; an audit of too little fails. No daemon: recordings in a temp dir.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Recorder, auditDirectory, formatReport, encodings } from './secret_audit.mjs';

const dirs = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function freshDir() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'hookd-audit-test-'));
  dirs.push(d);
  return d;
}

const token = (p) => `${p}_${randomBytes(18).toString('hex')}`;
const NO_MINIMUMS = {};

/** A recorder in a fresh dir with a daemon that handed over the usual secrets. */
function world() {
  const dir = freshDir();
  const rec = new Recorder(dir, path.join(path.dirname(fileURLToPath(import.meta.url)), 'planted.test.mjs'));
  const s = {
    apiKey: token('key'),
    workspaceSecret: `whsec_${randomBytes(24).toString('base64')}`,
    encryptionKey: randomBytes(32).toString('base64'),
    accessToken: token('access'),
    clientSecret: token('clientsecret'),
    dbPassword: `pw/${randomBytes(9).toString('hex')}+!`,
  };
  const env = { HOOKD_API_KEY: s.apiKey, HOOKD_WORKSPACE_SECRET: s.workspaceSecret, HOOKD_ENCRYPTION_KEY: s.encryptionKey };
  const serve = rec.process(['serve'], env);
  rec.secretFromAuthorization(`Bearer ${s.apiKey}`);
  rec.secretsFromBody(
    JSON.stringify({
      integration_type: 'hubspot',
      auth: { api_url: 'http://127.0.0.1:1', access_token: s.accessToken, client_secret: s.clientSecret, client_id: 'public-client-id' },
    }),
  );
  rec.secretsFromBody(JSON.stringify({ db_type: 'postgres', db_url: `postgres://u:${encodeURIComponent(s.dbPassword)}@127.0.0.1:5/db` }));
  serve.stdout('hookd listening on http://127.0.0.1:1234\n');
  serve.stderr('request method=GET path=/unified/webhook status=200 latency_ms=1.2 remote=127.0.0.1\n');
  rec.response({ method: 'GET', url: '/unified/connection', status: 200, statusText: 'OK', headers: {}, body: '[{"auth":{"access_token":"********"}}]' });
  rec.payload({ receiver: 'receiver', method: 'POST', url: '/hook', headers: { 'webhook-signature': 'v1,abc=' }, body: '{"data":[]}' });
  return { dir, rec, s, serve };
}

describe('secret audit', () => {
  test('a clean recording passes, with its counts', () => {
    const { dir } = world();
    const r = auditDirectory(dir, NO_MINIMUMS);
    assert.deepEqual(r.findings, [], formatReport(r, dir));
    assert.equal(r.counts.processes, 1);
    assert.equal(r.counts.logLines, 2);
    assert.equal(r.counts.responses, 1);
    assert.equal(r.counts.payloads, 1);
    // api key (env and header are one value), workspace secret, encryption key, access token,
    // client secret, db_url and its password; client_id and api_url are not secrets.
    assert.equal(r.counts.secrets, 7);
    assert.ok(!r.kinds.includes('connection auth.client_id'));
  });

  test('a secret logged plain, in stderr, is reported with file, line and kind (never the value)', () => {
    const { dir, s, serve } = world();
    serve.stderr(`run webhook=1 ok\nsource auth failed token=${s.accessToken}\n`);
    const r = auditDirectory(dir, NO_MINIMUMS);
    assert.equal(r.findings.length, 1, formatReport(r, dir));
    const [f] = r.findings;
    assert.match(f.file, /^logs\/planted\.test-\d+-1\.stderr\.log$/);
    assert.equal(f.line, 3);
    assert.deepEqual(f.kinds, ['connection auth.access_token']);
    assert.equal(f.encoding, 'plain');
    assert.match(f.where, /hookd serve stderr, tests\/e2e\/planted\.test\.mjs/);
    const text = formatReport(r, dir);
    assert.match(text, /LEAK logs\/planted\.test-\d+-1\.stderr\.log:3: connection auth\.access_token \(plain\)/);
    assert.ok(!text.includes(s.accessToken), 'the report does not print the secret');
  });

  test('every encoding a leak could take is found, at any position', () => {
    const cases = [
      ['plain', (v) => `x=${v};`],
      ['base64', (v) => Buffer.from(v).toString('base64')],
      ['base64', (v) => `Basic ${Buffer.from(`user:${v}`).toString('base64')}`],
      ['base64', (v) => Buffer.from(`ab${v}cd`).toString('base64')],
      ['base64url', (v) => Buffer.from(`a${v}`).toString('base64url')],
      ['URL-encoded', (v) => `?x=${encodeURIComponent(v)}&y=1`],
      ['form-encoded', (v) => new URLSearchParams({ x: v }).toString()],
      ['JSON-escaped', (v) => JSON.stringify({ x: v })],
      ['hex', (v) => Buffer.from(v).toString('hex')],
    ];
    for (const [encoding, leak] of cases) {
      const { dir, rec, s } = world();
      // A value with characters that every encoding changes.
      const secret = `${token('tok')}/+= "\\é`;
      rec.secretsFromBody(JSON.stringify({ auth: { token: secret } }));
      rec.response({ method: 'GET', url: '/x', status: 500, statusText: 'x', headers: {}, body: `oops ${leak(secret)} oops` });
      const r = auditDirectory(dir, NO_MINIMUMS);
      const hits = r.findings.filter((f) => f.kinds.includes('connection auth.token'));
      assert.equal(hits.length, 1, `${encoding}: ${leak(secret)}\n${formatReport(r, dir)}`);
      assert.equal(hits[0].file.split('/')[0], 'responses');
      assert.equal(hits[0].line, 2);
      assert.match(hits[0].where, /response to GET \/x.*\(body\)/);
      // Workspace-secret-shaped values (base64 with + / =) too.
      assert.ok(encodings(s.workspaceSecret).length > 3);
    }
  });

  test('leaks in response headers, status lines and receiver payloads are found', () => {
    const { dir, rec, s } = world();
    rec.response({ method: 'GET', url: '/y', status: 200, statusText: 'OK', headers: { 'x-debug': s.encryptionKey }, body: '{}' });
    rec.payload({ receiver: 'stub', method: 'POST', url: '/hook', headers: {}, body: JSON.stringify({ data: [], secret: s.workspaceSecret }) });
    rec.payload({ receiver: 'receiver', method: 'POST', url: '/n', headers: { authorization: `Bearer ${s.apiKey}` }, body: '{}' });
    rec.payload({ receiver: 'receiver', method: 'POST', url: '/n', headers: {}, body: `db ${s.dbPassword}` });
    const r = auditDirectory(dir, NO_MINIMUMS);
    const kinds = r.findings.map((f) => f.kinds.join('/')).sort();
    assert.deepEqual(kinds, ['API key (authorization header)/HOOKD_API_KEY', 'HOOKD_ENCRYPTION_KEY', 'HOOKD_WORKSPACE_SECRET', 'webhook db_url password'].sort(), formatReport(r, dir));
    assert.ok(r.findings.some((f) => f.file.startsWith('responses/') && f.line === 2 && /\(headers\)/.test(f.where)));
    assert.ok(r.findings.some((f) => f.file.startsWith('payloads/') && /stub got POST \/hook/.test(f.where)));
  });

  test('the credentials printed once are allowed only on their stdout lines', () => {
    const { dir, rec } = world();
    const key = `hookd_${randomBytes(24).toString('hex')}`;
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    rec.secret('workspace create api_key', key);
    rec.secret('workspace create workspace_secret', secret);
    const create = rec.process(['workspace', 'create', '--name', 'n'], {});
    create.stdout(`workspace_id: w1\napi_key: ${key}\nworkspace_secret: ${secret}\n`);
    const gen = `hookd_${randomBytes(24).toString('hex')}`;
    const first = rec.process(['serve'], {});
    first.stdout(`hookd created the bootstrap workspace; these credentials are shown only once:\n  api_key: ${gen}\n  workspace_secret: whsec_x\nhookd listening on http://127.0.0.1:1\n`);
    rec.secretsFromBootstrapOutput(`hookd created the bootstrap workspace; these credentials are shown only once:\n  api_key: ${gen}\n`);
    // A test's own variant of the key (a prefix, sent to see it refused) is on the printed line too.
    rec.secretFromAuthorization(key.slice(0, -1));
    let r = auditDirectory(dir, NO_MINIMUMS);
    assert.deepEqual(r.findings, [], formatReport(r, dir));
    assert.ok(r.kinds.includes('generated bootstrap api_key'));

    // The same values anywhere else are leaks: stderr of the same run, a later line, another
    // process printing them in the same shape, a response.
    create.stderr(`api_key: ${key}\n`);
    create.stdout(`done: workspace_secret: ${secret}\n`);
    first.stdout(`  api_key: ${gen}\n`);
    rec.process(['serve'], {}).stdout(`  api_key: ${key}\n`);
    rec.response({ method: 'GET', url: '/hookd/workspace', status: 200, statusText: 'OK', headers: {}, body: JSON.stringify({ secret }) });
    r = auditDirectory(dir, NO_MINIMUMS);
    // The key's prefix is reported with the key wherever the key leaked (stderr, the later serve).
    assert.equal(r.findings.length, 7, formatReport(r, dir));
    assert.ok(r.findings.some((f) => /\.stderr\.log$/.test(f.file) && f.kinds.includes('workspace create api_key')));
    assert.ok(r.findings.some((f) => /-2\.stdout\.log$/.test(f.file) && f.line === 4 && f.kinds.includes('workspace create workspace_secret')));
    assert.ok(r.findings.some((f) => /-3\.stdout\.log$/.test(f.file) && f.line === 5 && f.kinds.includes('generated bootstrap api_key')));
    assert.ok(r.findings.some((f) => /-4\.stdout\.log$/.test(f.file) && f.line === 1));
    assert.ok(r.findings.some((f) => f.file.startsWith('responses/') && f.kinds.includes('workspace create workspace_secret')));
  });

  test('too little recorded fails: each minimum is checked', () => {
    const { dir } = world();
    const r = auditDirectory(dir, { secrets: 8, logLines: 3, responses: 2, payloads: 2, processes: 2, testFiles: 2 });
    assert.deepEqual(r.findings, []);
    assert.equal(r.shortfalls.length, 6, formatReport(r, dir));
    assert.match(formatReport(r, dir), /TOO LITTLE RECORDED: secrets: 7 recorded, at least 8 expected/);
    // An empty directory (the recorder never ran) fails the default minimums.
    const empty = auditDirectory(freshDir());
    assert.ok(empty.shortfalls.length >= 5, formatReport(empty, 'empty'));
    // So does a run that never handed hookd one of the kinds every full run uses.
    const kinds = auditDirectory(dir, {}, ['HOOKD_API_KEY', 'connection auth.refresh_token']);
    assert.deepEqual(kinds.shortfalls, ['no secret of kind "connection auth.refresh_token" recorded']);
  });

  test('short values are recorded but not searched; unreadable record lines are still searched', () => {
    const { dir, rec, s } = world();
    rec.secretsFromBody(JSON.stringify({ auth: { token: 'tok' } }));
    rec.response({ method: 'GET', url: '/z', status: 200, statusText: 'OK', headers: {}, body: 'tok tok tok' });
    appendFileSync(path.join(dir, 'responses', 'broken.jsonl'), `{"truncated": "${s.clientSecret}\n`);
    const r = auditDirectory(dir, NO_MINIMUMS);
    assert.equal(r.counts.secretsTooShort, 1);
    assert.equal(r.findings.length, 1, formatReport(r, dir));
    assert.equal(r.findings[0].file, 'responses/broken.jsonl');
    assert.deepEqual(r.findings[0].kinds, ['connection auth.client_secret']);
  });
});
