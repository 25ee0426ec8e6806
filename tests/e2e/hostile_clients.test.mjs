// Hostile clients on the API, against the real daemon and PostgreSQL: slow-loris headers, a body
// slower than request_timeout_seconds, idle connections (one, and ten thousand), oversized
// headers, and JSON bodies with invalid UTF-8, deep nesting, huge numbers, duplicate keys and
// NUL characters. Each gets an exact 4xx in the API's error shape or a closed connection, and
// each test checks that an ordinary request, on a connection of its own, succeeds promptly
// while the attack is in progress.
//
//   HOOKD_TEST_DATABASE_URL=postgresql://... node --test --test-concurrency=1 tests/e2e/hostile_clients.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createWorkspace, hookdEnvOf, makeRequest, sleep, startDaemon, testDatabaseUrl, uniqueName } from './daemon.mjs';

testDatabaseUrl(); // fails loudly at load time when the database is not configured

// Short limits, so that the slow attacks end within a few seconds.
const REQUEST_TIMEOUT_S = 2;
const IDLE_TIMEOUT_S = 3;
// A normal request must be answered within this while an attack runs (it takes ~20 ms alone).
const PROMPT_MS = 2000;

let d;
let req;
let key;

before(async () => {
  d = await startDaemon({
    env: {
      HOOKD_REQUEST_TIMEOUT_SECONDS: String(REQUEST_TIMEOUT_S),
      HOOKD_IDLE_TIMEOUT_SECONDS: String(IDLE_TIMEOUT_S),
    },
  });
  const ws = await createWorkspace(uniqueName('hostile-e2e'), hookdEnvOf(d));
  key = ws.apiKey;
  req = makeRequest(d.url, key, d);
});

after(async () => {
  await d?.stop();
});

// ---------------------------------------------------------------- helpers

/** GET /unified/webhook on a new TCP connection (no pooled keep-alive connection to lean on). */
function freshGet(daemon = d, apiKey = key) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const r = http.get(
      { host: '127.0.0.1', port: daemon.port, path: '/unified/webhook', agent: false, headers: { authorization: apiKey }, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body, ms: Date.now() - started }));
      },
    );
    r.on('timeout', () => r.destroy(new Error('no answer within 10 s')));
    r.on('error', reject);
  });
}

/** Asserts that an ordinary authenticated request succeeds promptly, now. */
async function assertServing(what, daemon = d, apiKey = key) {
  const r = await freshGet(daemon, apiKey);
  assert.equal(r.status, 200, `GET /unified/webhook during ${what}: HTTP ${r.status} ${r.body}`);
  assert.ok(Array.isArray(JSON.parse(r.body)), `a JSON array during ${what}; got ${r.body}`);
  assert.ok(r.ms < PROMPT_MS, `GET /unified/webhook during ${what} took ${r.ms} ms (limit ${PROMPT_MS})`);
  return r;
}

/**
 * A raw TCP client. `closed` resolves when the server closes the connection, with what it sent
 * and when ({text, ms}); `send` writes bytes (latin1 strings are sent byte for byte).
 */
function rawClient(port = d.port) {
  const socket = net.connect(port, '127.0.0.1');
  const chunks = [];
  const started = Date.now();
  socket.on('data', (c) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise((resolve) =>
    socket.on('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), ms: Date.now() - started })),
  );
  const connected = new Promise((resolve) => socket.on('connect', resolve));
  return {
    socket,
    connected,
    closed,
    send: (s) => {
      if (!socket.destroyed) socket.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
    },
    destroy: () => socket.destroy(),
  };
}

/** Writes `pieces` one every `everyMs` until the server closes the connection. */
function dribble(client, pieces, everyMs) {
  let i = 0;
  const timer = setInterval(() => {
    if (client.socket.destroyed || i >= pieces.length) return clearInterval(timer);
    client.send(pieces[i++]);
  }, everyMs);
  client.closed.then(() => clearInterval(timer));
  return timer;
}

/** Parses a raw HTTP response: {status, headers, json}. */
function parseResponse(text) {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end > 0, `expected an HTTP response; got ${JSON.stringify(text.slice(0, 300))}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]);
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status, headers, json: JSON.parse(text.slice(end + 4)) };
}

/** The API's error shape, with the status and code expected (and the field, when given). */
function assertError(r, status, code, field) {
  assert.equal(r.status, status, `expected HTTP ${status} ${code}; got ${r.status} ${JSON.stringify(r.json)}`);
  const e = r.json?.error;
  assert.ok(e && typeof e === 'object', `expected {"error":{...}}; got ${JSON.stringify(r.json)}`);
  assert.equal(e.status, status);
  assert.equal(e.code, code, JSON.stringify(e));
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  if (field !== undefined) {
    assert.equal(e.field, field, JSON.stringify(e));
    assert.ok(e.message.includes(field), `the message names ${field}: ${e.message}`);
  }
  return e;
}

function headersFor(body, extra = '') {
  return (
    `POST /unified/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${key}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body}\r\n${extra}\r\n`
  );
}

/** Sends each hostile body (concurrently, `copies` times over) while a normal request runs. */
async function hostileBodies(path, bodies, copies = 10) {
  const before = await req('GET', '/unified/webhook');
  const attacks = [];
  for (let i = 0; i < copies; i++) for (const b of bodies) attacks.push(req('POST', path, { rawBody: b }));
  const [results] = await Promise.all([Promise.all(attacks), assertServing(`hostile ${path} bodies`)]);
  const after = await req('GET', '/unified/webhook');
  assert.deepEqual(after.json, before.json, 'a refused body writes nothing');
  return results.slice(0, bodies.length);
}

/** Resolves true when `promise` settles within `ms`, false otherwise (leaving no timer behind). */
function within(ms, promise) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  return Promise.race([promise.then(() => true), late]).finally(() => clearTimeout(timer));
}

function rss(pid) {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
}

const MiB = 1024 * 1024;

// ---------------------------------------------------------------- slow and idle clients

test('slow-loris: headers dribbled past request_timeout_seconds get 408 and a closed connection', async () => {
  // Twenty clients, each sending a header line every 300 ms and never the blank line.
  const clients = Array.from({ length: 20 }, () => rawClient());
  await Promise.all(clients.map((c) => c.connected));
  const lines = ['GET /unified/webhook HTTP/1.1\r\n', 'Host: 127.0.0.1\r\n'];
  for (let i = 0; i < 40; i++) lines.push(`X-Dribble-${i}: ${i}\r\n`);
  for (const c of clients) dribble(c, lines, 300);
  await sleep(1000);
  await assertServing('slow-loris');
  const ends = await Promise.all(clients.map((c) => c.closed));
  for (const end of ends) {
    const r = parseResponse(end.text);
    const e = assertError(r, 408, 'request_timeout');
    assert.match(e.message, new RegExp(`within ${REQUEST_TIMEOUT_S} seconds`));
    assert.equal(r.headers.connection, 'close');
    // From the first byte (~300 ms after connecting) to the deadline, plus scheduling slack.
    assert.ok(end.ms >= REQUEST_TIMEOUT_S * 1000 && end.ms < REQUEST_TIMEOUT_S * 1000 + 2500, `closed after ${end.ms} ms`);
  }
  await assertServing('after slow-loris');
});

test('more slow-loris clients than max_connections: the longest waiting are closed, others are still served', async () => {
  const MAX = 50;
  const small = await startDaemon({
    env: { HOOKD_REQUEST_TIMEOUT_SECONDS: String(REQUEST_TIMEOUT_S), HOOKD_MAX_CONNECTIONS: String(MAX) },
  });
  try {
    const clients = [];
    for (let i = 0; i < 3 * MAX; i++) {
      const c = rawClient(small.port);
      await c.connected;
      c.send('GET /unified/webhook HTTP/1.1\r\n');
      dribble(c, Array.from({ length: 40 }, (_, j) => `X-Dribble-${j}: ${j}\r\n`), 300);
      clients.push(c);
    }
    await sleep(300);
    await assertServing('slow-loris past max_connections', small, small.apiKey);
    const ends = await Promise.all(clients.map((c) => c.closed));
    const dropped = ends.filter((e) => e.text === '');
    const timedOut = ends.filter((e) => e.text !== '');
    for (const e of timedOut) assertError(parseResponse(e.text), 408, 'request_timeout');
    // The first 100 made room for the next ones (and the normal request took one more place).
    assert.ok(dropped.length >= 2 * MAX, `${dropped.length} closed to make room`);
    assert.ok(timedOut.length >= 1 && timedOut.length <= MAX, `${timedOut.length} got 408`);
    for (const e of dropped) assert.ok(e.ms < REQUEST_TIMEOUT_S * 1000, `a dropped one was closed only after ${e.ms} ms`);
    assert.match(small.logs(), /connection limit reached \(max_connections 50\)/);
  } finally {
    await small.stop();
  }
});

test('a body slower than request_timeout_seconds gets 408 and a closed connection', async () => {
  const c = rawClient();
  await c.connected;
  const body = JSON.stringify({ connection_id: 'x', object_type: 'crm_contact', event: 'created', hook_url: 'https://example.com/h' });
  c.send(headersFor(body.length));
  dribble(c, body.split(''), 200); // 5 bytes a second: the body would take ~20 s
  await sleep(800);
  await assertServing('a slow body');
  const end = await c.closed;
  const r = parseResponse(end.text);
  assertError(r, 408, 'request_timeout');
  assert.ok(end.ms >= REQUEST_TIMEOUT_S * 1000 && end.ms < REQUEST_TIMEOUT_S * 1000 + 2500, `closed after ${end.ms} ms`);
  assert.deepEqual((await req('GET', '/unified/webhook')).json, [], 'the slow body wrote nothing');
});

test('an idle connection is closed after idle_timeout_seconds, without a response', async () => {
  const c = rawClient();
  await c.connected;
  await sleep(500);
  await assertServing('an idle connection');
  const end = await c.closed;
  assert.equal(end.text, '', 'nothing is sent to a client that sent nothing');
  assert.ok(end.ms >= IDLE_TIMEOUT_S * 1000 - 100 && end.ms < IDLE_TIMEOUT_S * 1000 + 2000, `closed after ${end.ms} ms`);
});

test('a keep-alive connection gets idle_timeout_seconds between requests, then the full request timeout', async () => {
  // Idle 1.5 s, then a request dribbled over 1.5 s: each within its own limit (3 s idle, 2 s for
  // the request), though together longer than request_timeout_seconds.
  const c = rawClient();
  await c.connected;
  const request = `GET /unified/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${key}\r\n\r\n`;
  c.send(request);
  await sleep(1500);
  const pieces = request.match(/[^]{1,8}/g);
  const every = Math.floor(1500 / pieces.length);
  for (const p of pieces) {
    c.send(p);
    await sleep(every);
  }
  await sleep(300);
  c.destroy();
  const end = await c.closed;
  const responses = end.text.split('HTTP/1.1 ').filter(Boolean);
  assert.equal(responses.length, 2, `two responses on one connection; got ${JSON.stringify(end.text.slice(0, 400))}`);
  for (const r of responses) assert.match(r, /^200 OK/);
});

test('10,000 idle connections: the daemon keeps max_connections, serves others, and memory stays bounded', async () => {
  // A daemon with the default max_connections (1024) and idle timeout (60 s), so that the bound
  // and not a timeout is what limits it. This process needs 10,000 descriptors of its own.
  const N = 10_000;
  const MAX_CONNECTIONS = 1024;
  const ownLimit = Number(/^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))[1]);
  assert.ok(
    Number.isNaN(ownLimit) || ownLimit >= N + 200,
    `this test opens ${N} connections but this process may open only ${ownLimit} files: run it after \`ulimit -n ${N + 1000}\``,
  );
  const big = await startDaemon();
  try {
    const bigKey = big.apiKey;
    await assertServing('the baseline', big, bigKey);
    const baseline = rss(big.child.pid);
    const clients = [];
    let closedByServer = 0;
    for (let i = 0; i < N; i++) {
      const c = rawClient(big.port);
      c.closed.then(() => closedByServer++);
      clients.push(c);
      if (i % 1000 === 999) await sleep(50); // let accepts keep up with the kernel backlog
    }
    const made = await within(
      20_000,
      Promise.all(clients.map((c) => Promise.race([c.connected, c.closed]))),
    );
    assert.ok(made, 'all 10,000 connections were made (or closed by the daemon) within 20 s');
    await sleep(500);
    await assertServing('10,000 idle connections', big, bigKey);
    const fds = readdirSync(`/proc/${big.child.pid}/fd`).length;
    const grown = rss(big.child.pid) - baseline;
    const open = N - closedByServer;
    // The daemon closed the connections waiting longest to stay within max_connections.
    assert.ok(open <= MAX_CONNECTIONS, `${open} of the idle connections are still open (max_connections ${MAX_CONNECTIONS})`);
    assert.ok(closedByServer >= N - MAX_CONNECTIONS, `${closedByServer} closed by the daemon`);
    // Its own descriptors: the connections it keeps plus database pools, deliveries and logs.
    assert.ok(fds <= MAX_CONNECTIONS + 100, `the daemon has ${fds} descriptors open`);
    // An idle connection costs a few KB (its coroutine, strand and socket state; ~6 KB measured),
    // so 1024 of them stay well under 32 MiB; keeping all 10,000 cost ~46 MiB before the bound.
    assert.ok(grown < 32 * MiB, `RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
    // The limit is logged when it is reached, not once per connection.
    const lines = big.logs().split('\n').filter((l) => l.includes('connection limit'));
    assert.ok(lines.length >= 1 && lines.length <= 3, `connection limit log lines: ${lines.length}\n${lines.slice(0, 5).join('\n')}`);
    for (const c of clients) c.destroy();
    await sleep(200);
    await assertServing('after the idle connections left', big, bigKey);
  } finally {
    await big.stop();
  }
});

// ---------------------------------------------------------------- oversized headers

test('oversized headers, request lines and header counts get 431 in the error shape', async () => {
  const attacks = [
    `GET /unified/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: ${key}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    `GET /unified/webhook?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET /unified/webhook HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`,
  ];
  const clients = [];
  for (let i = 0; i < 10; i++)
    for (const a of attacks) {
      const c = rawClient();
      c.send(a);
      clients.push(c);
    }
  await assertServing('oversized headers');
  const ends = await Promise.all(clients.map((c) => c.closed));
  for (const end of ends) {
    const r = parseResponse(end.text);
    const e = assertError(r, 431, 'headers_too_large');
    assert.match(e.message, /16384 bytes/);
    assert.ok(end.ms < 3000, `closed after ${end.ms} ms`);
  }
});

test('a NUL byte in a header value gets 400', async () => {
  const c = rawClient();
  c.send(`GET /unified/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: ${key}\r\nX-Nul: a\0b\r\n\r\n`);
  await assertServing('a NUL in a header');
  const end = await c.closed;
  assertError(parseResponse(end.text), 400, 'bad_request');
});

// ---------------------------------------------------------------- hostile JSON

test('invalid UTF-8 in JSON strings and keys gets 400 naming the member', async () => {
  const [raw, key2, surrogate, overlong] = await hostileBodies('/unified/webhook', [
    Buffer.from('{"event":"cr\xffeated"}', 'latin1'),
    Buffer.from('{"filters":{"k\xc3":"v"}}', 'latin1'),
    '{"fields":"\\ud800"}',
    Buffer.from('{"hook_url":"https://example.com/\xc0\xaf"}', 'latin1'),
  ]);
  assert.equal(assertError(raw, 400, 'invalid_json', 'event').message, "'event' is not valid UTF-8");
  assert.equal(assertError(key2, 400, 'invalid_json', 'filters').message, "a key in 'filters' is not valid UTF-8");
  assert.match(assertError(surrogate, 400, 'invalid_json', 'fields').message, /unpaired UTF-16 surrogate/);
  assertError(overlong, 400, 'invalid_json', 'hook_url');
});

test('JSON nested deeper than 64 levels gets 400 naming the limit', async () => {
  // The body is level 1, auth level 2, and so on.
  const nest = (n) => '{"auth":' + '{"a":'.repeat(n - 1) + '1' + '}'.repeat(n - 1) + ',"integration_type":"x"}';
  const [atLimit, over, huge] = await hostileBodies(
    '/unified/connection',
    [nest(64), nest(65), '{"auth":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}'],
    3,
  );
  // 64 levels pass the depth check and fail later, on the unknown integration.
  assertError(atLimit, 400, 'invalid_field', 'integration_type');
  for (const r of [over, huge])
    assert.equal(assertError(r, 400, 'invalid_json').message, 'the JSON nests objects and arrays deeper than 64 levels');
});

test('huge numbers get 400 naming the field', async () => {
  const [e400, bigint, negative, uint64] = await hostileBodies('/unified/webhook', [
    '{"interval":1e400}',
    '{"page_max_limit":123456789012345678901234567890}',
    '{"filters":{"a":"b"},"interval":-123456789012345678901234567890}',
    '{"page_max_limit":18446744073709551615}',
  ]);
  assert.equal(assertError(e400, 400, 'invalid_json', 'interval').message, "'interval' is a number out of range: 1e400");
  assert.equal(
    assertError(bigint, 400, 'invalid_json', 'page_max_limit').message,
    "'page_max_limit' is a number out of range: 123456789012345678901234567890",
  );
  assertError(negative, 400, 'invalid_json', 'interval');
  // Within 64 bits the parser reads it; validation then names it as out of range.
  assert.match(assertError(uint64, 400, 'invalid_field', 'page_max_limit').message, /out of range/);
});

test('a duplicate key gets 400 naming it', async () => {
  const [top, nested, escaped] = await hostileBodies('/unified/webhook', [
    '{"event":"created","event":"deleted"}',
    '{"filters":{"k":"1","k":"2"}}',
    '{"hook_url":"https://a.example/","hook_\\u0075rl":"https://b.example/"}',
  ]);
  assert.equal(assertError(top, 400, 'invalid_json', 'event').message, "'event' appears twice; a key may appear only once in an object");
  assertError(nested, 400, 'invalid_json', 'filters.k');
  assertError(escaped, 400, 'invalid_json', 'hook_url');
});

test('NUL characters in JSON strings and keys get 400 naming the member', async () => {
  const [hook, conn, authKey] = await hostileBodies('/unified/connection', [
    '{"integration_type":"jsonserver","external_xref":"a\\u0000b"}',
    '{"integration_type":"jsonserver","auth":{"token":"t\\u0000"}}',
    '{"integration_type":"jsonserver","auth":{"k\\u0000":"v"}}',
  ]);
  assert.equal(assertError(hook, 400, 'invalid_json', 'external_xref').message, "'external_xref' contains a NUL character (\\u0000)");
  assertError(conn, 400, 'invalid_json', 'auth.token');
  assert.equal(assertError(authKey, 400, 'invalid_json', 'auth').message, "a key in 'auth' contains a NUL character (\\u0000)");
  const [escaped, rawNul] = await hostileBodies('/unified/webhook', [
    '{"connection_id":"abc\\u0000def"}',
    Buffer.from('{"connection_id":"abc\0def"}', 'latin1'),
  ]);
  assertError(escaped, 400, 'invalid_json', 'connection_id');
  assert.equal(assertError(rawNul, 400, 'invalid_json', 'connection_id').message, "'connection_id' contains an unescaped control character");
  const listed = await req('GET', '/unified/connection');
  assert.deepEqual(listed.json, [], 'no connection was written');
});
