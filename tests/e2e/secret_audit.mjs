// "Secrets stay secret": a recorder and an audit for the end-to-end and compat suites.
//
// When HOOKD_E2E_AUDIT_DIR is set, the shared helpers (daemon.mjs, ../fixtures/receiver.mjs)
// record into that directory, with no change to the tests themselves:
//
//   secrets/<test>-<pid>.jsonl     every secret the suite hands to hookd, by kind: the API keys and
//                                  workspace secrets given to or printed by hookd, the encryption
//                                  key, the database password, every authorization header sent to
//                                  a daemon, every secret `auth` member and every `db_url` (and its
//                                  password) in a request body sent to a daemon
//   logs/<test>-<pid>-<n>.<stream>.log
//                                  everything a hookd process (serve or CLI) wrote, as written;
//                                  logs/index-*.jsonl says which process and arguments each is
//   responses/<test>-<pid>.jsonl   every response of a daemon to any fetch() of the test process
//                                  (the shared request helper, the official SDK, ad-hoc fetches):
//                                  status line, headers and body
//   payloads/<test>-<pid>.jsonl    every request a stub receiver got from hookd (deliveries and
//                                  notifications): method, URL, headers and body
//
// `node tests/e2e/secret_audit.mjs [DIR]` (the ctest `e2e_secrets`, after e2e and compat) then
// searches all of it for every recorded secret, plain and in the encodings a leak could take
// (base64 at every alignment and base64url, URL- and form-encoding, JSON escaping, hex), and fails
// naming the file, the line and the kind of secret (never its value). It also fails when fewer
// secrets, log lines, responses or payloads were recorded than a real run produces, so that a
// recorder that silently stopped recording cannot pass.
//
// Not recorded, on purpose (legitimate echoes, not output of hookd to anyone but the owner):
//  - what the tests send (request headers and bodies, URLs): the API key is in every request's
//    authorization header by design;
//  - the requests hookd makes to *sources* (stub GETs, json-server, provider fixtures): they must
//    carry the connection's credentials, that is what the credentials are for;
//  - signatures (`sig`, `sig256`, `webhook-signature`) are HMACs keyed by the workspace secret, not
//    the secret: they are recorded and searched like everything else, and never match.
// The only exceptions in the audit (see allowedValues): the credentials hookd must print exactly
// once, on stdout, by design (README "Workspaces and API keys"): `hookd workspace create` prints
// `api_key:` and `workspace_secret:` lines, and a first `hookd serve` without HOOKD_API_KEY prints
// the generated bootstrap credentials under its "shown only once" line. No API route returns a
// workspace secret or an API key, so no response is exempt.
import { Buffer } from 'node:buffer';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(here, '..', '..');

/** Secrets shorter than this are recorded but not searched for (`'p'` would match everything). */
export const MIN_SECRET_LENGTH = 8;

/** About 60% of what the e2e suite alone recorded in a real run (compat adds a little): 184
 *  secrets of 17 kinds, 137 hookd processes with 8,817 log lines, 1,434 responses, 523 payloads,
 *  9 test files. A recorder that broke, or a suite that stopped running, falls under them. */
export const DEFAULT_MINIMUMS = {
  secrets: 110,
  secretKinds: 12,
  processes: 80,
  logLines: 5_000,
  responses: 850,
  payloads: 300,
  testFiles: 8,
};

/** Kinds every full run hands to hookd: the audit of a run without one of them fails. */
export const REQUIRED_KINDS = [
  'HOOKD_API_KEY',
  'HOOKD_WORKSPACE_SECRET',
  'HOOKD_ENCRYPTION_KEY',
  'API key (authorization header)',
  'workspace create api_key',
  'workspace create workspace_secret',
  'connection auth.token',
  'connection auth.access_token',
  'connection auth.refresh_token',
  'connection auth.client_secret',
  'webhook db_url password',
];

// Auth members that hold no secret: hookd shows them as given (README "Connection", and
// is_public_auth_key in core/model.cpp). Every other string member of `auth` is a secret.
const PUBLIC_AUTH_KEYS = new Set([
  'api_url', 'token_url', 'authorize_url', 'refresh_url', 'client_id', 'app_id', 'audience', 'name',
  'user_id', 'emails', 'expires_in', 'expiry_date', 'refresh_token_expires_in', 'refresh_token_expires_date',
]);

// HOOKD_* variables whose value is a secret (the keys marked secret in daemon/config.cpp).
const SECRET_ENV = {
  HOOKD_API_KEY: 'HOOKD_API_KEY',
  HOOKD_WORKSPACE_SECRET: 'HOOKD_WORKSPACE_SECRET',
  HOOKD_ENCRYPTION_KEY: 'HOOKD_ENCRYPTION_KEY',
};

const BOOTSTRAP_HEADER = 'hookd created the bootstrap workspace; these credentials are shown only once:';

function label(file) {
  return path.basename(file || 'unknown').replace(/\.m?js$/, '').replace(/[^A-Za-z0-9._-]/g, '_');
}

function passwordOf(url) {
  try {
    const u = new URL(url);
    return u.password ? decodeURIComponent(u.password) : '';
  } catch {
    const m = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:([^@/?#]*)@/i.exec(url);
    return m ? m[1] : '';
  }
}

// ---------------------------------------------------------------------------------------------
// recording

export class Recorder {
  constructor(dir, testFile = process.argv[1]) {
    this.dir = path.resolve(dir);
    this.test = testFile ? path.relative(REPO_ROOT, path.resolve(testFile)) : 'unknown';
    this.base = `${label(testFile)}-${process.pid}`;
    this.seen = new Set();
    this.processes = 0;
    this.pending = new Set();
    for (const d of ['secrets', 'logs', 'responses', 'payloads']) mkdirSync(path.join(this.dir, d), { recursive: true });
  }

  #append(sub, name, text) {
    appendFileSync(path.join(this.dir, sub, name), text);
  }

  #line(sub, value) {
    this.#append(sub, `${this.base}.jsonl`, `${JSON.stringify({ test: this.test, ...value })}\n`);
  }

  /** A secret handed to hookd (or printed by it for the suite to use), by kind. */
  secret(kind, value) {
    if (typeof value !== 'string' || !value.length) return;
    const key = `${kind}\0${value}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.#line('secrets', { kind, value });
  }

  /** The secrets in a hookd process environment. */
  secretsFromEnv(env = {}) {
    for (const [name, kind] of Object.entries(SECRET_ENV)) if (env[name]) this.secret(kind, env[name]);
    if (env.HOOKD_DATABASE_URL) this.secret('HOOKD_DATABASE_URL password', passwordOf(env.HOOKD_DATABASE_URL));
  }

  /** The secret members of every `auth` object and every `db_url` in a JSON request body. */
  secretsFromBody(text) {
    if (typeof text !== 'string' || !text.length) return;
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return;
    }
    // Bounded: the hostile-client tests send bodies nested far deeper than any API object.
    const walk = (v, depth = 0) => {
      if (depth > 200) return;
      if (Array.isArray(v)) return v.forEach((x) => walk(x, depth + 1));
      if (!v || typeof v !== 'object') return;
      for (const [k, x] of Object.entries(v)) {
        if (k === 'auth' && x && typeof x === 'object' && !Array.isArray(x)) {
          for (const [ak, av] of Object.entries(x)) {
            if (!PUBLIC_AUTH_KEYS.has(ak) && typeof av === 'string') this.secret(`connection auth.${ak}`, av);
          }
        } else if (k === 'db_url' && typeof x === 'string') {
          this.secret('webhook db_url', x);
          this.secret('webhook db_url password', passwordOf(x));
        }
        walk(x, depth + 1);
      }
    };
    walk(value);
  }

  /** The key in an authorization header sent to a daemon (with or without "Bearer "). */
  secretFromAuthorization(value) {
    if (typeof value !== 'string') return;
    this.secret('API key (authorization header)', value.replace(/^bearer\s+/i, '').trim());
  }

  /** The generated bootstrap credentials a `hookd serve` printed (README: shown only once). */
  secretsFromBootstrapOutput(stdout) {
    const lines = stdout.split('\n');
    const at = lines.findIndex((l) => l.trim() === BOOTSTRAP_HEADER);
    if (at < 0) return;
    for (const l of lines.slice(at + 1, at + 3)) {
      const m = /^\s+(api_key|workspace_secret):\s*(\S+)\s*$/.exec(l);
      if (m) this.secret(`generated bootstrap ${m[1]}`, m[2]);
    }
  }

  /** A hookd process: returns {stdout(chunk), stderr(chunk)} appending to its two log files. */
  process(args, env = {}) {
    this.secretsFromEnv(env);
    const n = ++this.processes;
    const files = {};
    for (const stream of ['stdout', 'stderr']) {
      files[stream] = `${this.base}-${n}.${stream}.log`;
      this.#append('logs', files[stream], '');
      this.#append('logs', `index-${this.base}.jsonl`, `${JSON.stringify({ file: files[stream], stream, test: this.test, args })}\n`);
    }
    return {
      stdout: (chunk) => this.#append('logs', files.stdout, chunk),
      stderr: (chunk) => this.#append('logs', files.stderr, chunk),
    };
  }

  /** A response of a daemon (the request is kept only to name it in findings; not searched). */
  response({ method, url, status, statusText, headers, body }) {
    this.#line('responses', { request: `${method} ${url}`, status: `HTTP ${status} ${statusText ?? ''}`.trim(), headers, body });
  }

  /** A request a stub receiver got from hookd. */
  payload({ receiver, method, url, headers, body }) {
    this.#line('payloads', { receiver, request: `${method} ${url}`, headers, body });
  }

  /** Waits for the response bodies still being read. */
  async flush() {
    await Promise.allSettled([...this.pending]);
  }
}

export const AUDIT_DIR = process.env.HOOKD_E2E_AUDIT_DIR || '';

/** The recorder of this process, or null when not auditing (then every helper below is a no-op). */
export const recorder = AUDIT_DIR ? new Recorder(AUDIT_DIR) : null;

// Origins of running daemons: fetch() responses from these are hookd's output.
const daemonOrigins = new Map(); // origin -> number of registrations

export function registerDaemon(url) {
  if (!recorder) return () => {};
  const origin = new URL(url).origin;
  daemonOrigins.set(origin, (daemonOrigins.get(origin) ?? 0) + 1);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const n = (daemonOrigins.get(origin) ?? 1) - 1;
    if (n > 0) daemonOrigins.set(origin, n);
    else daemonOrigins.delete(origin);
  };
}

function bodyText(body) {
  if (body == null) return null;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array || body instanceof ArrayBuffer) return Buffer.from(body).toString('utf8');
  if (body instanceof URLSearchParams) return body.toString();
  return null;
}

// Every fetch() of the test process goes through here when auditing, so the official SDK (which
// calls the global fetch) and ad-hoc fetches are recorded like the shared request helper.
if (recorder && typeof globalThis.fetch === 'function') {
  const realFetch = globalThis.fetch;
  globalThis.fetch = async function auditedFetch(input, init) {
    const isRequest = typeof Request !== 'undefined' && input instanceof Request;
    let url;
    try {
      url = new URL(isRequest ? input.url : String(input));
    } catch {
      return realFetch(input, init);
    }
    if (!daemonOrigins.has(url.origin)) return realFetch(input, init);
    const headers = new Headers(init?.headers ?? (isRequest ? input.headers : undefined));
    recorder.secretFromAuthorization(headers.get('authorization'));
    let sent = bodyText(init?.body);
    if (sent == null && init?.body == null && isRequest && input.body) sent = await input.clone().text();
    recorder.secretsFromBody(sent);
    const method = (init?.method ?? (isRequest ? input.method : 'GET')).toUpperCase();
    const res = await realFetch(input, init);
    const reading = res
      .clone()
      .text()
      .then((body) =>
        recorder.response({
          method,
          url: url.pathname + url.search,
          status: res.status,
          statusText: res.statusText,
          headers: Object.fromEntries(res.headers),
          body,
        }),
      )
      .catch(() => {})
      .finally(() => recorder.pending.delete(reading));
    recorder.pending.add(reading);
    return res;
  };
}

export const noteSecret = (kind, value) => recorder?.secret(kind, value);
export const noteSecretsFromBody = (text) => recorder?.secretsFromBody(text);
export const noteBootstrapOutput = (stdout) => recorder?.secretsFromBootstrapOutput(stdout);
export const notePayload = (p) => recorder?.payload(p);
/** Log sinks for a hookd process ({stdout, stderr}; no-ops when not auditing). */
export const recordProcess = (args, env) => recorder?.process(args, env) ?? { stdout() {}, stderr() {} };

// ---------------------------------------------------------------------------------------------
// the audit

function base64Cores(buf) {
  // The base64 text that encodes exactly the secret's bytes, for each of the 3 alignments it can
  // have inside a longer encoded value (e.g. `Basic base64(user:secret)`): only whole groups of
  // 3 secret bytes, so the core does not depend on what surrounds the secret.
  const cores = [];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), buf]).toString('base64');
    const start = shift === 0 ? 0 : 4;
    const end = Math.floor((shift + buf.length) / 3) * 4;
    if (end - start >= 12) cores.push(b64.slice(start, end));
  }
  return cores;
}

/** The strings a leak of `secret` could look like: [{needle, encoding}]. */
export function encodings(secret) {
  const out = new Map();
  const add = (needle, encoding) => {
    if (needle.length >= MIN_SECRET_LENGTH && !out.has(needle)) out.set(needle, encoding);
  };
  add(secret, 'plain');
  const json = JSON.stringify(secret).slice(1, -1);
  add(json, 'JSON-escaped');
  add(json.replaceAll('/', '\\/'), 'JSON-escaped');
  add(json.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), 'JSON-escaped');
  const url = encodeURIComponent(secret);
  add(url, 'URL-encoded');
  add(url.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()), 'URL-encoded');
  add(url.replace(/%20/g, '+'), 'form-encoded');
  // Every character percent-encoded (some encoders escape more than encodeURIComponent).
  const bytes = Buffer.from(secret, 'utf8');
  add([...bytes].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join(''), 'URL-encoded');
  for (const core of base64Cores(bytes)) {
    add(core, 'base64');
    add(core.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url');
  }
  add(bytes.toString('hex'), 'hex');
  add(bytes.toString('hex').toUpperCase(), 'hex');
  return [...out].map(([needle, encoding]) => ({ needle, encoding }));
}

function readJsonLines(file) {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((l, i) => {
    try {
      return { line: i + 1, value: JSON.parse(l) };
    } catch {
      return { line: i + 1, value: null, text: l };
    }
  });
}

function filesIn(dir, sub, re) {
  const d = path.join(dir, sub);
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .filter((f) => re.test(f))
    .sort()
    .map((f) => path.join(d, f));
}

/**
 * The values a hookd process may print in this line of its output (README "Workspaces and API
 * keys": the credentials are printed once, on stdout, for the operator to copy):
 *  - `hookd workspace create`: its `api_key: ...` and `workspace_secret: ...` lines;
 *  - `hookd serve`: the two indented lines right under the "shown only once" line.
 * Anything else, anywhere else (stderr, another line, another process), is a leak.
 */
function allowedValues(proc, lines, i) {
  if (!proc || proc.stream !== 'stdout') return null;
  const sub = (proc.args ?? []).filter((a) => !a.startsWith('-'));
  const l = lines[i];
  if (sub[0] === 'workspace' && sub[1] === 'create') {
    const m = /^(?:api_key|workspace_secret): (\S+)$/.exec(l);
    return m ? new Set([m[1]]) : null;
  }
  const m = /^ {2}(?:api_key|workspace_secret): (\S+)$/.exec(l);
  if (!m || !lines.slice(Math.max(0, i - 2), i).includes(BOOTSTRAP_HEADER)) return null;
  return new Set([m[1]]);
}

class Matcher {
  constructor(secrets) {
    // needles by their first MIN_SECRET_LENGTH characters: one Map lookup per text position.
    this.byPrefix = new Map();
    for (const s of secrets) {
      for (const { needle, encoding } of encodings(s.value)) {
        const key = needle.slice(0, MIN_SECRET_LENGTH);
        let list = this.byPrefix.get(key);
        if (!list) this.byPrefix.set(key, (list = []));
        list.push({ needle, encoding, secret: s });
      }
    }
  }

  /** [{secret, encoding}] found in text (each secret once per text, its first encoding). */
  find(text) {
    const found = new Map();
    if (typeof text !== 'string' || text.length < MIN_SECRET_LENGTH) return [];
    for (let i = 0, n = text.length - MIN_SECRET_LENGTH; i <= n; i++) {
      const list = this.byPrefix.get(text.substr(i, MIN_SECRET_LENGTH));
      if (!list) continue;
      for (const c of list) {
        if (!found.has(c.secret.value) && text.startsWith(c.needle, i)) found.set(c.secret.value, c);
      }
    }
    return [...found.values()];
  }
}

/**
 * Audits an audit directory. Returns {counts, findings, shortfalls}: findings name the file, the
 * line, where in it, the kind(s) of the secret and the encoding; shortfalls are the counts below
 * `minimums` (an audit of too little proves nothing).
 */
export function auditDirectory(dir, minimums = DEFAULT_MINIMUMS, requiredKinds = minimums === DEFAULT_MINIMUMS ? REQUIRED_KINDS : []) {
  dir = path.resolve(dir);
  const rel = (f) => path.relative(dir, f);
  // Secrets: one entry per value, with every kind it was recorded as.
  const byValue = new Map();
  let tooShort = 0;
  const testFiles = new Set();
  for (const f of filesIn(dir, 'secrets', /\.jsonl$/)) {
    for (const { value } of readJsonLines(f)) {
      if (!value || typeof value.value !== 'string') continue;
      testFiles.add(value.test);
      let s = byValue.get(value.value);
      if (!s) byValue.set(value.value, (s = { value: value.value, kinds: new Set() }));
      s.kinds.add(value.kind);
    }
  }
  const secrets = [];
  for (const s of byValue.values()) {
    if (s.value.length < MIN_SECRET_LENGTH) tooShort++;
    else secrets.push(s);
  }
  const kinds = new Set(secrets.flatMap((s) => [...s.kinds]));
  const matcher = new Matcher(secrets);
  const findings = [];
  const report = (file, line, where, hits, allowed) => {
    for (const h of hits) {
      // On an allowed line, the printed value itself and the test's own variants of it (a test
      // sends a prefix of the key to see it refused): nothing but that value is on the line.
      if (h.encoding === 'plain' && allowed && [...allowed].some((v) => v.includes(h.secret.value))) continue;
      findings.push({ file: rel(file), line, where, kinds: [...h.secret.kinds].sort(), encoding: h.encoding });
    }
  };

  // Logs of every hookd process.
  const procs = new Map();
  for (const f of filesIn(dir, 'logs', /^index-.*\.jsonl$/)) {
    for (const { value } of readJsonLines(f)) if (value?.file) procs.set(value.file, value);
  }
  let logLines = 0;
  const logFiles = filesIn(dir, 'logs', /\.log$/);
  for (const f of logFiles) {
    const proc = procs.get(path.basename(f));
    if (proc) testFiles.add(proc.test);
    const lines = readFileSync(f, 'utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    logLines += lines.length;
    const where = proc ? `hookd ${proc.args.join(' ') || '(no arguments)'} ${proc.stream}, ${proc.test}` : 'hookd output';
    lines.forEach((l, i) => report(f, i + 1, where, matcher.find(l), allowedValues(proc, lines, i)));
  }

  // API responses and receiver payloads: every string in the status line, headers and body.
  const strings = (v, out = []) => {
    if (typeof v === 'string') out.push(v);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) strings(x, out);
    return out;
  };
  const records = (sub) => {
    let n = 0;
    for (const f of filesIn(dir, sub, /\.jsonl$/)) {
      for (const { line, value, text } of readJsonLines(f)) {
        n++;
        if (!value) {
          report(f, line, `${sub}: unreadable line`, matcher.find(text), null);
          continue;
        }
        testFiles.add(value.test);
        const where = `${sub === 'responses' ? 'response to' : `${value.receiver} got`} ${value.request}, ${value.test}`;
        for (const [part, v] of [['status line', value.status], ['headers', value.headers], ['body', value.body]]) {
          const hits = strings(v).flatMap((s) => matcher.find(s));
          const unique = [...new Map(hits.map((h) => [h.secret.value, h])).values()];
          report(f, line, `${where} (${part})`, unique, null);
        }
      }
    }
    return n;
  };
  const responses = records('responses');
  const payloads = records('payloads');

  const counts = {
    secrets: secrets.length,
    secretKinds: kinds.size,
    secretsTooShort: tooShort,
    processes: procs.size / 2,
    logFiles: logFiles.length,
    logLines,
    responses,
    payloads,
    testFiles: testFiles.size,
  };
  const shortfalls = Object.entries(minimums)
    .filter(([k, min]) => (counts[k] ?? 0) < min)
    .map(([k, min]) => `${k}: ${counts[k] ?? 0} recorded, at least ${min} expected`);
  for (const k of requiredKinds) if (!kinds.has(k)) shortfalls.push(`no secret of kind "${k}" recorded`);
  return { counts, kinds: [...kinds].sort(), findings, shortfalls };
}

export function formatReport(result, dir) {
  const out = [];
  const c = result.counts;
  out.push(`secret audit of ${dir}`);
  out.push(
    `  recorded: ${c.secrets} secrets of ${c.secretKinds} kinds (${c.secretsTooShort} shorter than ${MIN_SECRET_LENGTH} characters, not searched), ` +
      `${c.processes} hookd processes (${c.logLines} log lines), ${c.responses} API responses, ${c.payloads} receiver payloads, from ${c.testFiles} test files`,
  );
  out.push(`  kinds: ${result.kinds.join(', ')}`);
  for (const s of result.shortfalls) out.push(`  TOO LITTLE RECORDED: ${s}`);
  for (const f of result.findings.slice(0, 200)) {
    out.push(`  LEAK ${f.file}:${f.line}: ${f.kinds.join(' / ')} (${f.encoding}) in ${f.where}`);
  }
  if (result.findings.length > 200) out.push(`  ... and ${result.findings.length - 200} more`);
  if (!result.findings.length && !result.shortfalls.length) out.push('  no secret appears in any log line, response or payload');
  return out.join('\n');
}

// `node tests/e2e/secret_audit.mjs [DIR]`: exit 1 on any leak or shortfall.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const dir = process.argv[2] || AUDIT_DIR;
  if (!dir) {
    console.error('usage: node tests/e2e/secret_audit.mjs DIR (or set HOOKD_E2E_AUDIT_DIR)');
    process.exit(2);
  }
  const started = Date.now();
  const result = auditDirectory(dir);
  console.log(formatReport(result, dir));
  console.log(`  audit took ${Date.now() - started} ms`);
  process.exit(result.findings.length || result.shortfalls.length ? 1 : 0);
}
