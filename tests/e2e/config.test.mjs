// hookd's configuration and CLI: bad configuration exits 2 naming the key, the YAML file and
// environment overrides are applied, `version` and `migrate` work.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  createWorkspace,
  deleteCreatedConnections,
  hookdEnvOf,
  makeRequest,
  makeTempDir,
  removeDir,
  runHookd,
  sleep,
  startDaemon,
  startStub,
  testDatabaseUrl,
  testEncryptionKey,
  uniqueName,
  writeFile,
} from './daemon.mjs';

const DATABASE_URL = testDatabaseUrl();
const tmp = makeTempDir('hookd-e2e-config-');
after(() => removeDir(tmp));

/** The `serve` argument list with a YAML config file. */
const serveWithConfig = (file) => ['serve', '--config', file];

function validEnv(extra = {}) {
  return {
    HOOKD_DATABASE_URL: DATABASE_URL,
    HOOKD_LISTEN: '127.0.0.1:0',
    HOOKD_DATA_DIR: tmp,
    HOOKD_API_KEY: `key_${randomBytes(12).toString('hex')}`,
    HOOKD_WORKSPACE_SECRET: `wsec_${randomBytes(12).toString('hex')}`,
    HOOKD_ENCRYPTION_KEY: testEncryptionKey(),
    HOOKD_LOG_FORMAT: 'text',
    ...extra,
  };
}

function show(r) {
  return `code ${r.code} signal ${r.signal}${r.timedOut ? ' (timed out: it did not exit)' : ''}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

async function expectConfigError(args, env, keyPattern) {
  const r = await runHookd(args, { env, timeoutMs: 20_000 });
  assert.equal(r.code, 2, `expected exit code 2; ${show(r)}`);
  assert.match(r.stderr, keyPattern, `stderr should name the key; ${show(r)}`);
  assert.doesNotMatch(r.stdout, /listening on/, 'must not start listening');
  return r;
}

describe('bad configuration exits with code 2 naming the key', () => {
  test('unknown environment variable HOOKD_FOO', async () => {
    await expectConfigError(['serve'], validEnv({ HOOKD_FOO: '1' }), /HOOKD_FOO|\bfoo\b/i);
  });

  test('unknown environment variable without a subcommand (serve is the default)', async () => {
    await expectConfigError([], validEnv({ HOOKD_NOT_A_KEY: 'x' }), /HOOKD_NOT_A_KEY|not_a_key/i);
  });

  test('HOOKD_LOG_FORMAT=xml', async () => {
    await expectConfigError(['serve'], validEnv({ HOOKD_LOG_FORMAT: 'xml' }), /log_format/i);
  });

  test('HOOKD_MIN_INTERVAL_SECONDS=abc', async () => {
    await expectConfigError(['serve'], validEnv({ HOOKD_MIN_INTERVAL_SECONDS: 'abc' }), /min_interval_seconds/i);
  });

  test('HOOKD_ENCRYPTION_KEY not base64 of 32 bytes', async () => {
    const r = await expectConfigError(['serve'], validEnv({ HOOKD_ENCRYPTION_KEY: 'dG9vLXNob3J0' }), /encryption_key/i);
    assert.ok(!r.stderr.includes('dG9vLXNob3J0'), 'the bad secret value should not be echoed');
  });

  test('HOOKD_LISTEN not host:port', async () => {
    await expectConfigError(['serve'], validEnv({ HOOKD_LISTEN: 'not-an-address' }), /listen/i);
  });

  test('HOOKD_MAX_BODY_BYTES negative', async () => {
    await expectConfigError(['serve'], validEnv({ HOOKD_MAX_BODY_BYTES: '-5' }), /max_body_bytes/i);
  });

  test('YAML --config file with an unknown key', async () => {
    const file = writeFile(tmp, 'unknown-key.yaml', 'log_format: text\nbogus_key: 1\n');
    await expectConfigError(serveWithConfig(file), validEnv(), /bogus_key/);
  });

  test('YAML --config file with a bad value', async () => {
    const file = writeFile(tmp, 'bad-value.yaml', 'log_format: xml\n');
    await expectConfigError(serveWithConfig(file), validEnv({ HOOKD_LOG_FORMAT: undefined }), /log_format/i);
  });

  test('--config file that does not exist', async () => {
    const missing = `${tmp}/${uniqueName('missing')}.yaml`;
    const r = await runHookd(serveWithConfig(missing), { env: validEnv(), timeoutMs: 20_000 });
    assert.equal(r.code, 2, `expected exit code 2; ${show(r)}`);
    assert.ok(r.stderr.includes(missing) || /config/i.test(r.stderr), `stderr should name the file; ${show(r)}`);
  });
});

describe('CLI', () => {
  test('hookd version prints a version and exits 0', async () => {
    const r = await runHookd(['version'], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /\d+\.\d+\.\d+/, show(r));
  });

  test('hookd migrate exits 0 against the test database (and again: idempotent)', async () => {
    const env = { HOOKD_DATABASE_URL: DATABASE_URL, HOOKD_DATA_DIR: tmp, HOOKD_ENCRYPTION_KEY: testEncryptionKey() };
    const r1 = await runHookd(['migrate'], { env, timeoutMs: 60_000 });
    assert.equal(r1.code, 0, show(r1));
    const r2 = await runHookd(['migrate'], { env, timeoutMs: 60_000 });
    assert.equal(r2.code, 0, show(r2));
  });
});

describe('configuration is applied', () => {
  let stub;
  const daemons = [];
  after(async () => {
    await deleteCreatedConnections();
    for (const dd of daemons) await dd.stop();
    await stub?.close();
  });

  // Works in a workspace of its own: bootstrap keys of daemons sharing the database are not
  // independent, and other suites may be running against it at the same time.
  async function setup(d) {
    daemons.push(d);
    stub ??= await startStub();
    const ws = await createWorkspace(uniqueName('config-e2e'), hookdEnvOf(d));
    const request = makeRequest(d.url, ws.apiKey, d);
    const c = await request('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: stub.url } } });
    assert.equal(c.status, 200, c.text);
    const hook = (interval) =>
      request('POST', '/unified/webhook', {
        body: { connection_id: c.json.id, hook_url: `${stub.url}/hook`, object_type: 'crm_contact', event: 'created', interval },
      });
    return { conn: c.json, hook, request, ws };
  }

  test('min_interval_seconds from the YAML file', async () => {
    const file = writeFile(tmp, 'min-interval.yaml', 'min_interval_seconds: 120\n');
    const d = await startDaemon({ args: serveWithConfig(file) });
    const { hook } = await setup(d);
    const r1 = await hook(1);
    assert.equal(r1.status, 400, `interval 1 < 120 s minimum: ${r1.status} ${r1.text}`);
    assert.equal(r1.json?.error?.code, 'invalid_field');
    assert.equal(r1.json?.error?.field, 'interval');
    const r2 = await hook(2);
    assert.equal(r2.status, 200, r2.text);
    await deleteCreatedConnections();
    await d.stop();
  });

  test('HOOKD_MIN_INTERVAL_SECONDS overrides the YAML file', async () => {
    const file = writeFile(tmp, 'min-interval-2.yaml', 'min_interval_seconds: 120\n');
    const d = await startDaemon({ args: serveWithConfig(file), env: { HOOKD_MIN_INTERVAL_SECONDS: '30' } });
    const { hook } = await setup(d);
    const ok = await hook(0.5);
    assert.equal(ok.status, 200, `interval 0.5 min = 30 s is allowed: ${ok.text}`);
    const bad = await hook(0.25);
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json?.error?.field, 'interval');
    await deleteCreatedConnections();
    await d.stop();
  });

  test('HOOKD_MAX_BODY_BYTES limits request bodies; text request log lines; SIGTERM exits 0', async () => {
    const d = await startDaemon({ env: { HOOKD_MAX_BODY_BYTES: '4096', HOOKD_LOG_FORMAT: 'text' } });
    const { request, ws } = await setup(d);
    const small = await request('POST', '/unified/connection', {
      body: { integration_type: 'jsonserver', integration_name: 'n'.repeat(1000) },
    });
    assert.equal(small.status, 200, small.text);
    const big = await request('POST', '/unified/connection', {
      body: { integration_type: 'jsonserver', integration_name: 'n'.repeat(8192) },
    });
    assert.equal(big.status, 413, big.text);
    assert.equal(big.json?.error?.code, 'payload_too_large');

    const marker = uniqueName('textlog');
    const r = await request('GET', `/unified/webhook/${marker}`);
    assert.equal(r.status, 404);
    let line;
    for (let i = 0; i < 25 && !line; i++) {
      line = d.logs().split('\n').find((l) => l.includes(marker));
      if (!line) await sleep(200);
    }
    assert.ok(line, `no request log line for GET /unified/webhook/${marker}\n--- logs ---\n${d.logs().slice(-3000)}`);
    assert.match(line, /GET/);
    assert.match(line, /404/);
    assert.ok(!d.logs().includes(d.apiKey), 'bootstrap API key in logs');
    assert.ok(!d.logs().includes(ws.apiKey), 'workspace API key in logs');

    await deleteCreatedConnections();
    const stopped = await d.stop();
    assert.equal(stopped.code, 0, `exit code after SIGTERM: ${JSON.stringify(stopped)}`);
  });
});
