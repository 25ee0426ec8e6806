// hookd as the drivers run it: its own fresh database on bench/run's PostgreSQL, its own API key
// and signing secret, private destinations and sources allowed (the receiver and source are on loopback), intervals down
// to 1 s, every other setting at its default, its log at info level to a file.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dbUrl } from './postgres.mjs';
import { exited, lineReader, track } from './processes.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The binary: HOOKD_BIN (relative to the repository), default build/hookd. */
export const HOOKD_BIN = path.resolve(REPO, process.env.HOOKD_BIN || 'build/hookd');

function hookdEnv(db, dataDir, apiKey, secretText) {
  // hookd refuses unknown HOOKD_* variables: pass only its own.
  const e = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HOOKD_') && !k.startsWith('BENCH_')));
  Object.assign(e, {
    HOOKD_DATABASE_URL: dbUrl(db),
    HOOKD_LISTEN: '127.0.0.1:0',
    HOOKD_DATA_DIR: dataDir,
    HOOKD_API_KEY: apiKey,
    HOOKD_WORKSPACE_SECRET: secretText,
    HOOKD_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    HOOKD_ALLOW_PRIVATE_DESTINATIONS: 'true',
    HOOKD_ALLOW_PRIVATE_SOURCES: 'true',
    HOOKD_MIN_INTERVAL_SECONDS: '1',
  });
  // The definitions are found beside build/; a binary elsewhere is pointed at the repo's.
  if (path.dirname(HOOKD_BIN) !== path.join(REPO, 'build')) e.HOOKD_INTEGRATIONS_DIR = path.join(REPO, 'integrations');
  return e;
}

/**
 * Starts `hookd serve` on database `db` (which must exist), logging to `logFile`.
 * Returns the child, logTail() (its log's last lines, for error reports) and listening(), which
 * resolves once hookd listens with api(method, path, body): a request with the API key that
 * returns the parsed response and throws on a non-2xx status.
 */
export function spawnHookd({ db, dataDir, logFile, secretText }) {
  const apiKey = `key_${randomBytes(18).toString('hex')}`;
  const logFd = openSync(logFile, 'w');
  const child = track(spawn(HOOKD_BIN, ['serve'], { env: hookdEnv(db, dataDir, apiKey, secretText), stdio: ['ignore', 'pipe', logFd] }));
  closeSync(logFd);
  const waitLine = lineReader(child.stdout);
  const logTail = () => readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-30).join('\n');
  const listening = async () => {
    const m = await Promise.race([
      waitLine(/^hookd listening on (http:\/\/\S+)/, 60_000, 'hookd to listen'),
      exited(child).then((r) => { throw new Error(`hookd exited (${r.code ?? r.signal}) before listening`); }),
    ]);
    const base = m[1];
    return async (method, p, body) => {
      const res = await fetch(base + p, {
        method,
        headers: { authorization: apiKey, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
  };
  return { child, logTail, listening };
}

/** fn over items with at most `limit` calls in flight; the results in the items' order. */
export async function parallel(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

export async function waitFor(what, timeoutMs, intervalMs, fn) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(intervalMs);
  }
}
