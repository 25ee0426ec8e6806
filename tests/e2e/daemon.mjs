// Helpers shared by the end-to-end and compat suites: start the real `build/hookd` binary,
// talk to it over HTTP, run its CLI subcommands, and a small local HTTP stub that stands in
// for a json-server source and a webhook receiver (loopback only).
//
// Not a test file (no `.test.` in the name), so `node --test tests/e2e tests/compat` does not run it.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, chmodSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// Records what the suite hands to hookd and what hookd produces when HOOKD_E2E_AUDIT_DIR is set
// (the "secrets stay secret" audit, ctest e2e_secrets); a no-op otherwise.
import { noteBootstrapOutput, notePayload, noteSecret, recordProcess, registerDaemon } from './secret_audit.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');
export const HOOKD_BIN =
  process.env.HOOKD_BIN || process.env.HOOKD_BINARY || path.join(REPO_ROOT, 'build', 'hookd');

export const READY_TIMEOUT_MS = 60_000;
export const STOP_TIMEOUT_MS = 30_000;

/** ISO-8601 UTC with milliseconds and Z, e.g. 2026-11-27T15:54:53.123Z */
export const ISO_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The PostgreSQL URL the suites run against. Fails loudly (never skips) when unset. */
export function testDatabaseUrl() {
  const url = process.env.HOOKD_TEST_DATABASE_URL;
  if (!url) {
    throw new Error(
      'HOOKD_TEST_DATABASE_URL is not set. The hookd end-to-end tests need a PostgreSQL database, e.g.\n' +
        '  HOOKD_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:55432/postgres node --test tests/e2e tests/compat\n' +
        'These tests never skip: set the variable and run again.',
    );
  }
  return url;
}

/**
 * The encryption key for daemons on the test database. Every hookd sharing one database must use
 * the same key (secrets stored by one are read by the others), so it is derived from the URL
 * unless HOOKD_TEST_ENCRYPTION_KEY is set.
 */
export function testEncryptionKey() {
  return (
    process.env.HOOKD_TEST_ENCRYPTION_KEY ||
    createHash('sha256').update(`hookd-e2e-encryption-key:${testDatabaseUrl()}`).digest('base64')
  );
}

/** Fails loudly when the daemon binary has not been built. */
export function requireBinary() {
  if (!existsSync(HOOKD_BIN)) {
    throw new Error(`hookd binary not found at ${HOOKD_BIN}: build it first (cmake --build build), or set HOOKD_BIN / HOOKD_BINARY`);
  }
  return HOOKD_BIN;
}

export function randomToken(prefix = 'test', bytes = 18) {
  return `${prefix}_${randomBytes(bytes).toString('hex')}`;
}

export function uniqueName(prefix = 'e2e') {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** A fresh temp dir under /tmp, mode 0755 so an unprivileged user (postgres) can traverse it. */
export function makeTempDir(prefix = 'hookd-e2e-', base = os.tmpdir()) {
  const dir = mkdtempSync(path.join(base, prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export function removeDir(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** The parent process environment without any HOOKD_* variable (hookd rejects unknown ones,
 *  and HOOKD_TEST_DATABASE_URL is one of them). */
export function baseEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('HOOKD_')) env[k] = v;
  }
  return env;
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

function waitExit(child, timeoutMs) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode, timedOut: false });
      return;
    }
    let timer;
    const onExit = (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut: false });
    };
    child.once('exit', onExit);
    if (timeoutMs != null) {
      timer = setTimeout(() => {
        child.off('exit', onExit);
        resolve({ code: null, signal: null, timedOut: true });
      }, timeoutMs);
    }
  });
}

/**
 * Starts `hookd serve`.
 *
 * options:
 *  - database: 'test' (HOOKD_TEST_DATABASE_URL, default) | 'embedded' (no HOOKD_DATABASE_URL)
 *  - apiKey: string | null (null: no HOOKD_API_KEY at all); default a fresh random key
 *  - workspaceSecret, encryptionKey: defaults fresh random values (encryptionKey null: not set)
 *  - dataDir: default a fresh temp dir (removed by stop() unless keepDataDir or given by caller)
 *  - env: extra/override variables (a value of undefined removes the variable)
 *  - args: extra arguments (default ['serve'])
 *  - readyTimeoutMs
 *
 * Returns { url, port, apiKey, workspaceSecret, encryptionKey, dataDir, env, child,
 *           stop(signal), logs(), stdout(), stderr(), request, exited }
 */
export async function startDaemon(options = {}) {
  requireBinary();
  const {
    database = 'test',
    args = ['serve'],
    readyTimeoutMs = READY_TIMEOUT_MS,
    keepDataDir = false,
  } = options;
  const apiKey = options.apiKey === undefined ? randomToken('key') : options.apiKey;
  const workspaceSecret = options.workspaceSecret === undefined ? randomToken('wsec') : options.workspaceSecret;
  const encryptionKey =
    options.encryptionKey === undefined
      ? database === 'test'
        ? testEncryptionKey()
        : randomBytes(32).toString('base64')
      : options.encryptionKey;
  const ownDataDir = !options.dataDir;
  const dataDir = options.dataDir || makeTempDir('hookd-e2e-data-');

  const env = {
    ...baseEnv(),
    HOOKD_LISTEN: '127.0.0.1:0',
    HOOKD_DATA_DIR: dataDir,
    HOOKD_LOG_FORMAT: 'text',
    // The tests' sources and receivers are local stubs on 127.0.0.1 (a test of the SSRF guard
    // unsets these with env: { HOOKD_ALLOW_PRIVATE_...: undefined }).
    HOOKD_ALLOW_PRIVATE_DESTINATIONS: 'true',
    HOOKD_ALLOW_PRIVATE_SOURCES: 'true',
  };
  if (database === 'test') env.HOOKD_DATABASE_URL = testDatabaseUrl();
  if (apiKey !== null) env.HOOKD_API_KEY = apiKey;
  if (workspaceSecret !== null) env.HOOKD_WORKSPACE_SECRET = workspaceSecret;
  if (encryptionKey !== null) env.HOOKD_ENCRYPTION_KEY = encryptionKey;
  for (const [k, v] of Object.entries(options.env || {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }

  const child = spawn(HOOKD_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const audit = recordProcess(args, env);
  let unregister = () => {};
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
    audit.stdout(d);
  });
  child.stderr.on('data', (d) => {
    err += d;
    audit.stderr(d);
  });
  const exited = waitExit(child, null).then((r) => {
    running.delete(child);
    unregister();
    noteBootstrapOutput(out);
    return r;
  });

  const logs = () => `${out}${err ? `\n${err}` : ''}`;
  let stopped = null;
  const stop = async (signal = 'SIGTERM') => {
    if (!stopped) {
      stopped = (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        let r = await waitExit(child, STOP_TIMEOUT_MS);
        if (r.timedOut) {
          child.kill('SIGKILL');
          r = { ...(await waitExit(child, 10_000)), killedAfterTimeout: true };
        }
        running.delete(child);
        if (ownDataDir && !keepDataDir) removeDir(dataDir);
        return r;
      })();
    }
    return stopped;
  };

  // Wait for "hookd listening on http://127.0.0.1:PORT" on stdout.
  const port = await new Promise((resolve, reject) => {
    const re = /^hookd listening on http:\/\/127\.0\.0\.1:(\d+)\s*$/m;
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      fn(v);
    };
    const check = () => {
      const m = re.exec(out);
      if (m) finish(resolve, Number(m[1]));
    };
    const poll = setInterval(check, 50);
    child.stdout.on('data', check);
    const timer = setTimeout(() => {
      finish(
        reject,
        new Error(`hookd did not print "hookd listening on http://127.0.0.1:PORT" within ${readyTimeoutMs} ms.\n--- output ---\n${logs()}`),
      );
    }, readyTimeoutMs);
    exited.then((r) =>
      finish(reject, new Error(`hookd exited before it was ready (code ${r.code}, signal ${r.signal}).\n--- output ---\n${logs()}`)),
    );
    child.on('error', (e) => finish(reject, e));
  }).catch(async (e) => {
    await stop('SIGKILL');
    throw e;
  });

  const url = `http://127.0.0.1:${port}`;
  if (child.exitCode === null && child.signalCode === null) unregister = registerDaemon(url);
  noteBootstrapOutput(out);
  const daemon = {
    url,
    port,
    apiKey,
    workspaceSecret,
    encryptionKey,
    dataDir,
    env,
    child,
    exited,
    stop,
    logs,
    stdout: () => out,
    stderr: () => err,
  };
  daemon.request = makeRequest(url, apiKey, daemon);
  return daemon;
}

/** Every response body seen by any request helper, for "no secret ever came back" checks. */
export const responseLog = [];

// Connections created through a request helper, so a suite can remove what it made (deleting a
// connection deletes its webhooks): the test database is shared and reused across runs.
const createdConnections = [];

/** Deletes every connection created through any request helper so far (errors ignored). */
export async function deleteCreatedConnections() {
  const all = createdConnections.splice(0);
  let deleted = 0;
  for (const { request, id } of all) {
    try {
      const r = await request('DELETE', `/unified/connection/${id}`);
      if (r.status === 200) deleted++;
    } catch {
      /* that daemon is gone */
    }
  }
  return deleted;
}

/**
 * makeRequest(baseUrl, apiKey) -> request(method, path, {body, headers, rawBody, auth})
 *  - body: a value sent as JSON (content-type application/json)
 *  - rawBody: a string/Buffer sent as-is (content-type application/json unless headers say otherwise)
 *  - headers: extra headers; `authorization` here overrides the default
 *  - auth: the key to send (default apiKey); null sends no authorization header
 * Resolves to {status, headers, text, json} (json is null when the body is empty or not JSON).
 */
export function makeRequest(baseUrl, apiKey, daemon = null) {
  return async function request(method, p, opts = {}) {
    const headers = {};
    const auth = opts.auth === undefined ? apiKey : opts.auth;
    if (auth != null) headers.authorization = auth;
    let body;
    if (opts.rawBody !== undefined) {
      body = opts.rawBody;
      headers['content-type'] = 'application/json';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    for (const [k, v] of Object.entries(opts.headers || {})) {
      const key = k.toLowerCase();
      if (v === undefined || v === null) delete headers[key];
      else headers[key] = v;
    }
    let res;
    try {
      res = await fetch(baseUrl + p, {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
      });
    } catch (e) {
      const cause = e?.cause ? ` (${e.cause.code || ''} ${e.cause.message || e.cause})` : '';
      let state = '';
      if (daemon) {
        await sleep(200);
        const c = daemon.child;
        state =
          c.exitCode !== null || c.signalCode !== null
            ? `; hookd has exited (code ${c.exitCode}, signal ${c.signalCode})`
            : '; hookd is still running';
        state += `\n--- hookd log tail ---\n${daemon.logs().slice(-2000)}`;
      }
      throw new Error(`${method} ${p}: ${e?.message}${cause}${state}`);
    }
    const text = await res.text();
    let json = null;
    if (text.length) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }
    responseLog.push({ baseUrl, method, path: p, status: res.status, text, headers: Object.fromEntries(res.headers) });
    if (method === 'POST' && res.status === 200 && json?.id && /^\/unified\/connection(\?|$)/.test(p)) {
      createdConnections.push({ request, id: json.id });
    }
    return { status: res.status, headers: res.headers, text, json };
  };
}

/** Runs a hookd CLI command to completion. Resolves {code, signal, stdout, stderr, timedOut}. */
export function runHookd(args, { env = {}, timeoutMs = 60_000 } = {}) {
  requireBinary();
  const fullEnv = { ...baseEnv() };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete fullEnv[k];
    else fullEnv[k] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(HOOKD_BIN, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    const audit = recordProcess(args, fullEnv);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
      audit.stdout(d);
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      audit.stderr(d);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      running.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** The HOOKD_* variables a started daemon runs with (to run CLI commands with "the same env"). */
export function hookdEnvOf(daemon) {
  const env = {};
  for (const [k, v] of Object.entries(daemon.env)) if (k.startsWith('HOOKD_')) env[k] = v;
  return env;
}

/**
 * `hookd workspace create --name NAME` against the test database (or extra env).
 * Resolves {workspaceId, apiKey, workspaceSecret, stdout, stderr}; throws with the output otherwise.
 */
export async function createWorkspace(name, env = {}) {
  const dataDir = makeTempDir('hookd-e2e-ws-');
  try {
    const r = await runHookd(['workspace', 'create', '--name', name], {
      env: {
        HOOKD_DATABASE_URL: testDatabaseUrl(),
        HOOKD_DATA_DIR: dataDir,
        HOOKD_ENCRYPTION_KEY: testEncryptionKey(),
        ...env,
      },
    });
    const field = (k) => {
      const m = new RegExp(`^${k}:\\s*(\\S+)\\s*$`, 'm').exec(r.stdout);
      return m ? m[1] : undefined;
    };
    // Printed once by design (the audit allows exactly these stdout lines); never anywhere else.
    noteSecret('workspace create api_key', field('api_key'));
    noteSecret('workspace create workspace_secret', field('workspace_secret'));
    const ws = {
      code: r.code,
      workspaceId: field('workspace_id'),
      apiKey: field('api_key'),
      workspaceSecret: field('workspace_secret'),
      stdout: r.stdout,
      stderr: r.stderr,
    };
    if (r.code !== 0 || !ws.workspaceId || !ws.apiKey || !ws.workspaceSecret) {
      throw new Error(
        `hookd workspace create --name ${name}: expected exit 0 and lines workspace_id:, api_key:, workspace_secret:; ` +
          `got code ${r.code} signal ${r.signal}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
      );
    }
    return ws;
  } finally {
    removeDir(dataDir);
  }
}

/**
 * A loopback HTTP stub: answers GET with a JSON array (json-server style collections, empty by
 * default, or `collections[pathname]`), and POST/PUT/etc with 200 {} (a webhook receiver).
 * Records every request. Resolves {url, requests, collections, close()}.
 */
export async function startStub() {
  const requests = [];
  const collections = {};
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body, at: Date.now() });
      // GETs are hookd polling this stub as a source, with the connection's credentials on
      // purpose; anything else is a delivery or notification to it as a receiver.
      if (req.method !== 'GET') notePayload({ receiver: 'stub', method: req.method, url: req.url, headers: req.headers, body });
      const pathname = new URL(req.url, 'http://x').pathname;
      res.setHeader('content-type', 'application/json');
      if (req.method === 'GET') {
        res.end(JSON.stringify(collections[pathname] ?? []));
      } else {
        res.end('{}');
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    collections,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

export function writeFile(dir, name, text) {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
