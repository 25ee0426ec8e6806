// The scheduling scenario's driver, started by `bench/run --scenario schedule` once PostgreSQL
// and nginx are up: many webhooks at a 1-minute interval on a source that never changes. Does
// hookd run every webhook on time (schedule lag, overdue webhooks), what does that cost (CPU of
// hookd and of PostgreSQL, hookd's memory per webhook, database growth), and does its API stay
// responsive meanwhile? Prints one markdown table and, unless --smoke, writes it with the
// machine's description to bench/results/.
import { createReadStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { HOOKD_BIN, parallel, spawnHookd } from './lib/hookd.mjs';
import { checkpoint, createDb, dbUrl, dropDb } from './lib/postgres.mjs';
import { memoryKB, postgresCpu, processCpu } from './lib/procfs.mjs';
import { stopChild } from './lib/processes.mjs';
import { LIVE_LOG, analyzeLog } from './lib/receiver.mjs';
import { fmt, machine, ms, nginxVersion, postgresVersion, quantile, writeResults } from './lib/report.mjs';
import { contact, newSecret } from './lib/workload.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sleepUntil = (t) => sleep(Math.max(0, t - performance.now()));
const log = (msg) => process.stderr.write(`bench: ${msg}\n`);

// ---- options and sizes --------------------------------------------------------------------------
const USAGE = `usage: bench/run --scenario schedule [--smoke] [--webhooks N] [--warmup S] [--window S]
                 [--label NAME] [--hookd-commit SHA] [--note TEXT]...`;
let opt;
try {
  ({ values: opt } = parseArgs({ options: {
    smoke: { type: 'boolean', default: false },
    webhooks: { type: 'string' },
    warmup: { type: 'string' },         // seconds from the last create to the window
    window: { type: 'string' },         // seconds measured
    label: { type: 'string' },          // results file: <date>-schedule-<label>.md
    'hookd-commit': { type: 'string' }, // the commit the hookd binary was built from (default HEAD)
    note: { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  } }));
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}

function numberOption(name, fallback, { integer = false } = {}) {
  const v = Number(opt[name] ?? fallback);
  if (!(v > 0) || (integer && !Number.isInteger(v))) {
    console.error(`--${name} must be a positive ${integer ? 'integer' : 'number'}\n${USAGE}`);
    process.exit(2);
  }
  return v;
}

const SMOKE = opt.smoke;
const WEBHOOKS = numberOption('webhooks', SMOKE ? 300 : 100_000, { integer: true });
// Smoke mode polls every 15 s, so that a window of under half a minute still sees every
// webhook run (the first run of a new webhook is jittered by up to min(interval, 30 s)).
const INTERVAL_MIN = SMOKE ? 0.25 : 1;
const INTERVAL_S = INTERVAL_MIN * 60;
const WARMUP_S = numberOption('warmup', SMOKE ? 15 : 60);
const WINDOW_S = numberOption('window', SMOKE ? 25 : 120);
const EVENTS = ['created', 'updated', 'deleted']; // a connection's three webhooks share its feed
const CONNECTIONS = Math.ceil(WEBHOOKS / EVENTS.length);
const RECORDS = 10;          // the source's one page, the same at every poll
const CONCURRENCY = 32;      // API requests in flight while creating
const BURST = SMOKE ? 100 : 1000; // webhooks created (and deleted) during the window
const BURST_CONNECTIONS = Math.min(10, CONNECTIONS);
const BURST_AT = 1 / 3;      // of the window
const GETS_PER_S = 20;
// "Every webhook ran in the window" needs a slot of each one inside it, with room for lag.
const WINDOW_HAS_EVERY_SLOT = WINDOW_S >= INTERVAL_S + 10;
if (SMOKE && !WINDOW_HAS_EVERY_SLOT) {
  console.error(`--smoke checks that every webhook ran in the window: --window must be at least ${INTERVAL_S + 10}`);
  process.exit(2);
}

const env = process.env;
for (const k of ['BENCH_WORK', 'BENCH_PG_URL', 'BENCH_PG_PIDFILE', 'BENCH_RECEIVER_LOG', 'BENCH_RECEIVER', 'BENCH_SOURCE']) {
  if (!env[k]) throw new Error(`${k} is not set: run bench/run --scenario schedule, not schedule.mjs`);
}
const WORK = env.BENCH_WORK;
const RECEIVER = env.BENCH_RECEIVER;
const SOURCE = env.BENCH_SOURCE;

// ---- the source: one page of unchanged records -----------------------------------------------------
// nginx answers every /s<N>/contacts with this file (see bench/run).
function writeSource() {
  const dir = path.join(WORK, 'source', 'schedule');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'contacts.json'), JSON.stringify(Array.from({ length: RECORDS }, (_, i) => contact(0, i, 1))));
}

// ---- the workload through hookd's API ------------------------------------------------------------------
function webhookBody(connectionId, name, event) {
  return {
    connection_id: connectionId,
    object_type: 'crm_contact',
    event,
    hook_url: `${RECEIVER}/schedule/${name}`,
    interval: INTERVAL_MIN,
  };
}

/** CONNECTIONS connections, each on its own source path, with its webhooks (3, the last maybe
 *  fewer). Returns the connection and webhook ids and the objects created per second. */
async function createAll(api) {
  const webhookIds = new Array(WEBHOOKS);
  let created = 0;
  const t0 = performance.now();
  const progress = setInterval(() => log(`created ${fmt(created)} of ${fmt(CONNECTIONS + WEBHOOKS)} objects`), 10_000);
  try {
    const connectionIds = await parallel([...Array(CONNECTIONS).keys()], CONCURRENCY, async (c) => {
      const conn = await api('POST', '/unified/connection', { integration_type: 'jsonserver', auth: { api_url: `${SOURCE}/s${c}` } });
      created++;
      for (let w = c * EVENTS.length; w < Math.min(WEBHOOKS, (c + 1) * EVENTS.length); w++) {
        webhookIds[w] = (await api('POST', '/unified/webhook', webhookBody(conn.id, `w${w}`, EVENTS[w % EVENTS.length]))).id;
        created++;
      }
      return conn.id;
    });
    const seconds = (performance.now() - t0) / 1000;
    return { connectionIds, webhookIds, seconds, rate: created / seconds };
  } finally {
    clearInterval(progress);
  }
}

/** At `at`, BURST more webhooks on a few existing connections, CONCURRENCY in flight; then
 *  deletes them again, so that the rest of the window measures the same N webhooks. */
async function burst(api, connectionIds, at) {
  await sleepUntil(at);
  const t0 = performance.now();
  const ids = await parallel([...Array(BURST).keys()], CONCURRENCY, async (k) =>
    (await api('POST', '/unified/webhook', webhookBody(connectionIds[k % BURST_CONNECTIONS], `b${k}`, EVENTS[k % EVENTS.length]))).id);
  const t1 = performance.now();
  await parallel(ids, CONCURRENCY, (id) => api('DELETE', `/unified/webhook/${id}`));
  const t2 = performance.now();
  return { from: t0, to: t2, createRate: BURST / ((t1 - t0) / 1000), deleteRate: BURST / ((t2 - t1) / 1000) };
}

/** GET /unified/webhook/{id} of random webhooks at GETS_PER_S until `until`, open loop (a slow
 *  answer does not delay the next request, so a stall shows as latency, not as fewer samples).
 *  Returns each request's { at, ms } and the errors. */
async function getLoad(api, ids, until) {
  const requests = [];
  const errors = [];
  const inFlight = new Set();
  for (let next = performance.now(); next < until; next += 1000 / GETS_PER_S) {
    await sleepUntil(next);
    const t = performance.now();
    const p = api('GET', `/unified/webhook/${ids[Math.floor(Math.random() * ids.length)]}`)
      .then(() => requests.push({ at: t, ms: performance.now() - t }), (e) => errors.push(e.message))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  return { requests, errors };
}

// ---- what the database says --------------------------------------------------------------------------
// Overdue: due and not yet finished. A claimed webhook keeps its next_run_at until its run is
// recorded, so the overdue ones include those running (under a live lease), counted apart.
const OVERDUE_SQL = `
  select count(*)::int as overdue,
         count(*) filter (where lease_expires_at > now())::int as running,
         coalesce(extract(epoch from now() - min(next_run_at)) * 1000, 0)::float8 as max_age_ms
    from webhooks
   where next_run_at < now() - interval '0 s' and not is_paused`;

/** One sample of OVERDUE_SQL a second until `until`. */
async function sampleOverdue(q, until) {
  const samples = [];
  for (let next = performance.now(); next < until; next += 1000) {
    await sleepUntil(next);
    samples.push((await q.query(OVERDUE_SQL)).rows[0]);
  }
  return samples;
}

/** The window's edges: the database clock (runs are timed by it), CPU, database size. */
async function mark(q, pid) {
  const r = (await q.query('select now() as at, pg_database_size(current_database())::float8 as bytes')).rows[0];
  return { at: r.at, dbBytes: r.bytes, wall: performance.now(), hookdCpu: processCpu(pid), pgCpu: postgresCpu(env.BENCH_PG_PIDFILE) };
}

/** The runs of the (still existing) webhooks that started in [from, to): how many, how late
 *  (started_at - scheduled_for), the most in one second (slots need not be spread evenly), and
 *  how many webhooks did not run at all. */
async function runsIn(q, from, to) {
  const lag = (await q.query(`
    select count(*)::int as runs,
           percentile_disc(0.5) within group (order by lag_ms) as p50,
           percentile_disc(0.99) within group (order by lag_ms) as p99,
           max(lag_ms) as max
      from (select extract(epoch from r.started_at - r.scheduled_for)::float8 * 1000 as lag_ms
              from webhook_runs r join webhooks w on w.id = r.webhook_id
             where r.started_at >= $1 and r.started_at < $2) t`, [from, to])).rows[0];
  const busiest = (await q.query(`
    select coalesce(max(n), 0)::int as n
      from (select count(*) as n from webhook_runs
             where started_at >= $1 and started_at < $2 group by date_trunc('second', started_at)) t`, [from, to])).rows[0];
  const idle = (await q.query(`
    select count(*)::int as n from webhooks w
     where not exists (select 1 from webhook_runs r
                        where r.webhook_id = w.id and r.started_at >= $1 and r.started_at < $2)`, [from, to])).rows[0];
  return { ...lag, busiestSecond: busiest.n, notRun: idle.n };
}

/** Runs that did not end "ok", since the start (an unchanged source gives no reason to fail). */
async function failedRuns(q) {
  return (await q.query(`select status, count(*)::int as n, min(error) as example
                           from webhook_runs where status <> 'ok' group by status order by status`)).rows;
}

/** hookd's log lines at warning level or above: how many, and the first few. Read as a stream:
 *  with a line per run, the log of a full-size run is hundreds of MB. */
async function logWarnings(file) {
  const w = { count: 0, first: [] };
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (!/^\S+ (warning|error|critical) /.test(line)) continue;
    if (w.count++ < 5) w.first.push(line.length > 300 ? `${line.slice(0, 300)}…` : line);
  }
  return w;
}

// ---- the scenario ----------------------------------------------------------------------------------------
async function runScenario() {
  const db = 'bench_schedule';
  const dataDir = path.join(WORK, 'hookd-schedule');
  const logFile = path.join(WORK, 'hookd-schedule.log');
  const problems = [];
  const r = { problems };
  await dropDb(db);
  await createDb(db);
  mkdirSync(dataDir, { recursive: true });
  const { child, logTail, listening } = spawnHookd({ db, dataDir, logFile, secretText: newSecret() });
  const q = new pg.Client({ connectionString: dbUrl(db) });
  try {
    const api = await listening();
    await q.connect();
    r.idleKB = memoryKB(child.pid).rss;

    log(`creating ${fmt(CONNECTIONS)} connections and ${fmt(WEBHOOKS)} webhooks, ${CONCURRENCY} requests in flight`);
    const made = await createAll(api);
    r.create = made;
    log(`created in ${made.seconds.toFixed(1)} s (${fmt(made.rate)} objects/s); warm-up ${WARMUP_S} s`);
    await sleep(WARMUP_S * 1000);
    await checkpoint();

    log(`window ${WINDOW_S} s`);
    const start = await mark(q, child.pid);
    const until = start.wall + WINDOW_S * 1000;
    const gets = getLoad(api, made.webhookIds, until);
    // Caught here so that a failure waits for the window's end instead of going unhandled.
    const burstDone = burst(api, made.connectionIds, start.wall + WINDOW_S * 1000 * BURST_AT).catch((e) => ({ error: e }));
    r.samples = await sampleOverdue(q, until);
    await sleepUntil(until);
    const end = await mark(q, child.pid);
    r.memKB = memoryKB(child.pid);
    const seconds = (end.wall - start.wall) / 1000;
    r.hookdCores = (end.hookdCpu - start.hookdCpu) / seconds;
    r.pgCores = (end.pgCpu - start.pgCpu) / seconds;
    r.dbBytes = [start.dbBytes, end.dbBytes];
    r.seconds = seconds;
    r.gets = await gets;
    r.burst = await burstDone;
    if (r.burst.error) throw r.burst.error;

    await sleep(3000); // the runs that started by the window's end are recorded as they finish
    r.runs = await runsIn(q, start.at, end.at);
    r.runsPerS = r.runs.runs / ((end.at - start.at) / 1000);
    r.failed = await failedRuns(q);
    r.posts = analyzeLog(LIVE_LOG, '/schedule').count;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('hookd exited during the run');

    if (r.gets.errors.length) problems.push(`${r.gets.errors.length} GET requests failed (e.g. ${r.gets.errors[0]})`);
    for (const f of r.failed) problems.push(`${f.n} runs ended ${f.status} (e.g. ${f.example || 'no error text'})`);
    if (r.posts) problems.push(`the receiver got ${r.posts} POSTs from an unchanged source (expected none)`);
    if (SMOKE && r.runs.notRun) problems.push(`${r.runs.notRun} of ${WEBHOOKS} webhooks did not run in the window`);
  } catch (e) {
    problems.push(`${e.message}\n--- hookd log (last lines) ---\n${logTail()}`);
  } finally {
    const stopped = await stopChild(child, 'SIGTERM', 60_000);
    if (stopped.code !== 0) problems.push(`hookd exited with ${stopped.code ?? stopped.signal} on SIGTERM`);
    await q.end().catch(() => {});
    await dropDb(db).catch(() => {});
    r.warnings = await logWarnings(logFile);
  }
  return r;
}

// ---- the report -----------------------------------------------------------------------------------------
const MB = (bytes) => `${fmt(bytes / 2 ** 20, 1)} MB`;
const verdict = (ok) => (ok ? 'pass' : '**fail**');

function table(r) {
  const rows = ['| figure | value | target | |', '|---|---|---|---|'];
  const row = (figure, value, target = '', ok = undefined) =>
    rows.push(`| ${figure} | ${value} | ${target} | ${ok === undefined ? '' : verdict(ok)} |`);
  const needed = WEBHOOKS / INTERVAL_S;
  const maxAge = r.samples?.length ? Math.max(...r.samples.map((s) => s.max_age_ms)) : NaN;
  const overdue = r.samples?.map((s) => s.overdue) ?? [];
  const latencies = r.gets?.requests.map((g) => g.ms) ?? [];
  const getP99 = quantile(latencies, 0.99);
  const outsideBurst = r.gets?.requests.filter((g) => !(g.at >= r.burst?.from && g.at <= r.burst?.to)).map((g) => g.ms) ?? [];
  const rssPer = r.memKB?.rss / WEBHOOKS;

  row('webhooks', `${fmt(WEBHOOKS)} on ${fmt(CONNECTIONS)} connections, every ${fmt(INTERVAL_S)} s`);
  row('create: connections + webhooks', r.create ? `${fmt(r.create.rate)} objects/s (${fmt(CONNECTIONS + WEBHOOKS)} in ${fmt(r.create.seconds, 1)} s)` : '—',
    '≥ 500/s', r.create?.rate >= 500);
  row('runs/s: achieved / needed', r.runs
    ? `${fmt(r.runsPerS, 1)} / ${fmt(needed, 1)} (${fmt((r.runsPerS / needed) * 100, 1)}%; busiest second ${fmt(r.runs.busiestSecond)})`
    : '—');
  row('webhooks that ran in the window', r.runs ? `${fmt(WEBHOOKS - r.runs.notRun)} of ${fmt(WEBHOOKS)}` : '—',
    WINDOW_HAS_EVERY_SLOT ? 'all' : `(window < interval + 10 s)`, WINDOW_HAS_EVERY_SLOT ? r.runs?.notRun === 0 : undefined);
  row('schedule lag p50', ms(r.runs?.p50));
  row('schedule lag p99', ms(r.runs?.p99), '< 1 s', r.runs?.p99 < 1000);
  row('schedule lag max', ms(r.runs?.max));
  row('overdue webhooks per sample: mean / max', overdue.length
    ? `${fmt(overdue.reduce((a, b) => a + b, 0) / overdue.length, 1)} / ${fmt(Math.max(...overdue))} (${fmt(Math.max(...r.samples.map((s) => s.running)))} running at most)`
    : '—');
  row('oldest overdue webhook, any sample', ms(maxAge), '≤ 2 s', maxAge <= 2000);
  row('runs failed', r.failed ? fmt(r.failed.reduce((a, f) => a + f.n, 0)) : '—', '0', r.failed?.length === 0);
  row('POSTs to the receiver', fmt(r.posts), '0', r.posts === 0);
  row('CPU: hookd', r.hookdCores === undefined ? '—' : `${fmt(r.hookdCores, 2)} cores`, '< 0.5 core', r.hookdCores < 0.5);
  row('CPU: PostgreSQL', r.pgCores === undefined ? '—' : `${fmt(r.pgCores, 2)} cores`, '< 1 core', r.pgCores < 1);
  row('hookd RSS at the end: VmRSS / VmHWM', r.memKB ? `${MB(r.memKB.rss * 1024)} / ${MB(r.memKB.hwm * 1024)}` : '—');
  row('hookd RSS per webhook (VmRSS ÷ webhooks)', r.memKB
    ? `${fmt(rssPer, 2)} KB (VmHWM ${fmt(r.memKB.hwm / WEBHOOKS, 2)} KB; ${fmt((r.memKB.rss - r.idleKB) / WEBHOOKS, 2)} KB above the idle ${MB(r.idleKB * 1024)})`
    : '—', '< 5 KB', rssPer < 5);
  row('database size: window start → end', r.dbBytes
    ? `${MB(r.dbBytes[0])} → ${MB(r.dbBytes[1])} (${MB(((r.dbBytes[1] - r.dbBytes[0]) / r.seconds) * 60)}/min)`
    : '—');
  row(`GET /unified/webhook/{id} at ${GETS_PER_S}/s: p50 / p99`, latencies.length
    ? `${fmt(quantile(latencies, 0.5), 1)} / ${fmt(getP99, 1)} ms (${fmt(latencies.length)} requests; ` +
      `outside the create burst: p99 ${fmt(quantile(outsideBurst, 0.99), 1)} ms)`
    : '—', 'p99 < 50 ms', getP99 < 50);
  row(`create ${fmt(BURST)} webhooks during the window`, r.burst?.createRate
    ? `${fmt(r.burst.createRate)}/s (deleted again right after, ${fmt(r.burst.deleteRate)}/s)`
    : '—', '≥ 500/s', r.burst?.createRate >= 500);
  return rows.join('\n');
}

function hookdLog(w) {
  if (!w) return [];
  return ['### hookd log', '', `${fmt(w.count)} line(s) at warning level or above${w.count ? ', the first:' : '.'}`,
    ...(w.count ? ['', '```', ...w.first, '```'] : []), ''];
}

// ---- main ----------------------------------------------------------------------------------------------
const started = Date.now();
log(`${SMOKE ? 'smoke: ' : ''}scheduling: ${fmt(WEBHOOKS)} webhooks on ${fmt(CONNECTIONS)} connections every ${INTERVAL_S} s; ` +
  `warm-up ${WARMUP_S} s, window ${WINDOW_S} s; hookd binary ${HOOKD_BIN}`);
if (!existsSync(HOOKD_BIN)) throw new Error(`no hookd binary at ${HOOKD_BIN} (build it, or set HOOKD_BIN)`);
writeSource();
const r = await runScenario();
for (const p of r.problems) log(`problem: ${p}`);

const m = machine({ hookdBin: HOOKD_BIN, hookdCommit: opt['hookd-commit'], peers: `${nginxVersion()}; ${postgresVersion()}` });
const report = [
  `## Scheduling benchmark${SMOKE ? ' (smoke)' : ''}`,
  '',
  `hookd: ${fmt(WEBHOOKS)} webhooks (crm_contact created, updated, deleted: the three of a connection share its feed) on ` +
    `${fmt(CONNECTIONS)} jsonserver connections, each polling its own path of a source that answers the same ${RECORDS} records, ` +
    `interval ${fmt(INTERVAL_S)} s. Created through the API (${CONCURRENCY} requests in flight), then ${fmt(WARMUP_S)} s of warm-up ` +
    `and a ${fmt(WINDOW_S)} s window: overdue webhooks sampled every second, ${GETS_PER_S} GETs/s of random webhooks, and at ` +
    `${fmt(WINDOW_S * BURST_AT)} s ${fmt(BURST)} webhooks created on ${BURST_CONNECTIONS} connections and deleted again. ` +
    `Durable PostgreSQL, nginx source and receiver.${SMOKE ? ' Smoke: the targets are shown, not asserted.' : ''}`,
  '',
  table(r),
  '',
  ...hookdLog(r.warnings),
  '### Run',
  '',
  m.text,
  ...(opt.note.length ? ['', '### Notes', '', ...opt.note.map((n) => `- ${n}`)] : []),
  ...(r.problems.length ? ['', '### Problems', '', ...r.problems.map((p) => `- ${p.split('\n')[0]}`)] : []),
  '',
].join('\n');
process.stdout.write(`\n${report}\n`);

if (!SMOKE) log(`wrote ${writeResults(`schedule-${opt.label || (opt['hookd-commit'] || m.head || 'unknown').slice(0, 7)}`, report)}`);
log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s${r.problems.length ? `; ${r.problems.length} problem(s)` : ''}`);
process.exit(r.problems.length ? 1 : 0);
