// The embedded default: with no HOOKD_DATABASE_URL, `hookd serve` runs its own PostgreSQL
// cluster under <HOOKD_DATA_DIR>/postgres (unix socket only), stops it on exit, and keeps the
// data across restarts. Without HOOKD_API_KEY it generates and prints a key.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { makeRequest, makeTempDir, removeDir, startDaemon, startStub, testDatabaseUrl } from './daemon.mjs';

// The suites as a whole need the test database; fail loudly here too so a misconfigured run
// cannot look green because only this file ran.
testDatabaseUrl();

const START_TIMEOUT_MS = 120_000; // first start runs initdb
const KEY_RE = /api[_ ]key:\s*(\S+)/i;

const dataDir = makeTempDir('hookd-e2e-embedded-', '/tmp');
const pgDir = path.join(dataDir, 'postgres');
const pidFile = path.join(pgDir, 'postmaster.pid');

function pgBin(name) {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', name))).sort((a, b) => Number(b) - Number(a))
    : [];
  return versions.length ? path.join(root, versions[0], 'bin', name) : name;
}

function asPostgres(cmd, args) {
  const isRoot = process.getuid?.() === 0;
  const r = isRoot
    ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', timeout: 60_000 })
    : spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout || '', stderr: r.stderr || '' };
}

function readPidFile() {
  return readFileSync(pidFile, 'utf8').split('\n');
}

/** Waits up to timeoutMs for a process to be gone; true when it is. */
async function gone(pid, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** TCP ports in LISTEN state on this machine (from /proc/net/tcp and tcp6). */
function listeningTcpPorts() {
  const ports = new Set();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4) continue;
      if (cols[3] === '0A') ports.add(parseInt(cols[1].split(':').pop(), 16));
    }
  }
  return ports;
}

let stub;
let first;
let second;
let apiKey;
let postmasterPid;
let conn;
let hook;

before(async () => {
  stub = await startStub();
});

after(async () => {
  await first?.stop();
  await second?.stop();
  await stub?.close();
  // Never leave a cluster behind, even when a test failed.
  if (existsSync(pidFile)) {
    const pid = Number(readPidFile()[0]);
    if (pid && alive(pid)) asPostgres(pgBin('pg_ctl'), ['stop', '-D', pgDir, '-m', 'immediate', '-w', '-t', '30']);
  }
  removeDir(dataDir);
});

describe('embedded PostgreSQL', () => {
  test('first start without HOOKD_DATABASE_URL and without HOOKD_API_KEY prints a generated key', async () => {
    first = await startDaemon({
      database: 'embedded',
      apiKey: null,
      workspaceSecret: null,
      encryptionKey: null,
      dataDir,
      readyTimeoutMs: START_TIMEOUT_MS,
    });
    const m = KEY_RE.exec(first.logs());
    assert.ok(m, `no generated API key printed (expected a line matching ${KEY_RE})\n--- output ---\n${first.logs()}`);
    apiKey = m[1];
  });

  test('the generated key authenticates; a wrong key does not', async () => {
    assert.ok(apiKey, 'needs the key from the first start');
    const req = makeRequest(first.url, apiKey, first);
    const r = await req('GET', '/unified/connection');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, []);
    const r2 = await req('GET', '/unified/connection', { auth: `Bearer ${apiKey}` });
    assert.equal(r2.status, 200, r2.text);
    const bad = await req('GET', '/unified/connection', { auth: `${apiKey}-wrong` });
    assert.equal(bad.status, 401, bad.text);
    const ready = await req('GET', '/readyz', { auth: null });
    assert.equal(ready.status, 200, ready.text);
  });

  test('the cluster runs under <data_dir>/postgres on a unix socket only (no TCP port)', () => {
    assert.ok(existsSync(pidFile), `${pidFile} should exist while hookd runs`);
    const lines = readPidFile();
    postmasterPid = Number(lines[0]);
    assert.ok(postmasterPid > 0 && alive(postmasterPid), `postmaster pid ${lines[0]} should be alive`);
    // postmaster.pid: 1 pid, 2 data dir, 3 start time, 4 port, 5 socket dir, 6 listen address, 7 shmem key, 8 status
    assert.equal(lines[5], '', `postmaster.pid line 6 (listen_addresses) must be empty, got ${JSON.stringify(lines[5])}`);
    const port = Number(lines[3]);
    assert.ok(!listeningTcpPorts().has(port), `something listens on TCP port ${port} (the cluster's port)`);
    assert.ok(lines[4].length > 0, 'a unix socket directory is configured');
  });

  test('create a connection and a webhook', async () => {
    const req = makeRequest(first.url, apiKey, first);
    const c = await req('POST', '/unified/connection', { body: { integration_type: 'jsonserver', auth: { api_url: stub.url, token: 'tok' } } });
    assert.equal(c.status, 200, c.text);
    conn = c.json;
    const w = await req('POST', '/unified/webhook', {
      body: { connection_id: conn.id, hook_url: `${stub.url}/hook`, object_type: 'crm_contact', event: 'created', interval: 90 },
    });
    assert.equal(w.status, 200, w.text);
    hook = w.json;
  });

  test('SIGTERM exits 0 and stops the embedded cluster', async () => {
    const r = await first.stop('SIGTERM');
    assert.equal(r.killedAfterTimeout, undefined, 'hookd did not exit within 30 s of SIGTERM');
    assert.equal(r.code, 0, `exit code after SIGTERM: ${JSON.stringify(r)}\n--- output ---\n${first.logs().slice(-3000)}`);
    if (postmasterPid) assert.ok(await gone(postmasterPid), `postmaster ${postmasterPid} still running 5 s after hookd exited`);
    const status = asPostgres(pgBin('pg_ctl'), ['status', '-D', pgDir]);
    assert.ok(
      !existsSync(pidFile) || /no server running/i.test(status.stdout + status.stderr),
      `embedded cluster should be stopped: pg_ctl status -> ${status.code} ${status.stdout} ${status.stderr}`,
    );
    assert.notEqual(status.code, 0, 'pg_ctl status must not report a running server');
  });

  test('second start on the same data dir: the generated key still works, no new key', async () => {
    assert.ok(apiKey, 'needs the key from the first start');
    second = await startDaemon({
      database: 'embedded',
      apiKey: null,
      workspaceSecret: null,
      encryptionKey: null,
      dataDir,
      readyTimeoutMs: START_TIMEOUT_MS,
    });
    const m = KEY_RE.exec(second.logs());
    if (m) assert.equal(m[1], apiKey, 'a restart must not generate a different API key');
    const req = makeRequest(second.url, apiKey, second);
    const r = await req('GET', '/unified/connection');
    assert.equal(r.status, 200, r.text);
    const lines = readPidFile();
    assert.equal(lines[5], '', 'still no TCP listen address after restart');
  });

  test('the connection and the webhook survived the restart', async () => {
    assert.ok(second && hook, 'needs the second start and the webhook from the first');
    const req = makeRequest(second.url, apiKey, second);
    const g = await req('GET', `/unified/webhook/${hook.id}`);
    assert.equal(g.status, 200, g.text);
    for (const k of ['id', 'created_at', 'connection_id', 'hook_url', 'object_type', 'event', 'interval', 'workspace_id']) {
      assert.deepEqual(g.json[k], hook[k], k);
    }
    const c = await req('GET', `/unified/connection/${conn.id}`);
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.auth?.token, '********');
    const l = await req('GET', '/unified/webhook');
    assert.deepEqual(l.json.map((x) => x.id), [hook.id]);
  });

  test('second SIGTERM exits 0 and stops the cluster again', async () => {
    assert.ok(second, 'needs the second start');
    const pid = Number(readPidFile()[0]);
    const r = await second.stop('SIGTERM');
    assert.equal(r.code, 0, JSON.stringify(r));
    assert.ok(await gone(pid), 'cluster stopped after the second run');
    const status = asPostgres(pgBin('pg_ctl'), ['status', '-D', pgDir]);
    assert.notEqual(status.code, 0, `pg_ctl status must not report a running server: ${status.stdout}`);
  });
});
