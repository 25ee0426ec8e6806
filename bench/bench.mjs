// The delivery scenario's driver, started by bench/run once PostgreSQL and nginx are up (it
// reads their addresses from BENCH_* variables). For each trial it runs, one after the other on
// the same machine: the wrk ceiling, graphile-worker tuned (unordered), graphile-worker ordered
// (one queue per webhook) and hookd; then prints one markdown table and, unless --smoke, writes
// it with the machine's description to bench/results/.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { HOOKD_BIN, parallel, spawnHookd, waitFor } from './lib/hookd.mjs';
import { checkpoint, createDb, dbUrl, dropDb } from './lib/postgres.mjs';
import { peakRssMB, postgresCpu, processCpu } from './lib/procfs.mjs';
import { exited, lineReader, runToEnd, stopChild, track } from './lib/processes.mjs';
import { analyzeLog, followLog, rotateLog } from './lib/receiver.mjs';
import { fmt, machine, median, ms, nginxVersion, postgresVersion, sh, writeResults } from './lib/report.mjs';
import { contact, newSecret, signedDelivery, signingKey, webhookObject } from './lib/workload.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- options and sizes --------------------------------------------------------------------------
const USAGE = `usage: bench/run [--smoke] [--trials N] [--label NAME] [--hookd-commit SHA] [--note TEXT]...
                 [--systems wrk,gw-tuned,gw-ordered,hookd]`;
let opt;
try {
  ({ values: opt } = parseArgs({ options: {
    smoke: { type: 'boolean', default: false },
    trials: { type: 'string' },
    label: { type: 'string' },          // results file: <date>-<label>-<commit>.md
    'hookd-commit': { type: 'string' }, // the commit the hookd binary was built from (default HEAD)
    note: { type: 'string', multiple: true, default: [] },
    systems: { type: 'string', default: 'wrk,gw-tuned,gw-ordered,hookd' },
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
const SMOKE = opt.smoke;
const TRIALS = Number(opt.trials ?? (SMOKE ? 1 : 3));
if (!Number.isInteger(TRIALS) || TRIALS < 1) throw new Error('--trials must be a positive integer');
const SYSTEMS = opt.systems.split(',');
for (const sys of SYSTEMS) {
  if (!['wrk', 'gw-tuned', 'gw-ordered', 'hookd'].includes(sys)) {
    console.error(`unknown system ${sys}\n${USAGE}`);
    process.exit(2);
  }
}

// The issue's workload: 100 webhooks (one connection, one feed each), 800 records per feed all
// updated at once, page_max_limit 4: 200 ordered POSTs per webhook, 20,000 in all.
const WEBHOOKS = SMOKE ? 5 : 100;
const RECORDS = SMOKE ? 40 : 800;
const PAGE_MAX = 4;
const SOURCE_PAGE = 100; // jsonserver definition's page size (_limit)
const HOOKD_PER_WEBHOOK = RECORDS / PAGE_MAX;
const HOOKD_POSTS = WEBHOOKS * HOOKD_PER_WEBHOOK;
const GW_PER_WEBHOOK = SMOKE ? 40 : HOOKD_PER_WEBHOOK; // a few hundred jobs in smoke mode
const GW_JOBS = WEBHOOKS * GW_PER_WEBHOOK;
const WRK_SECONDS = SMOKE ? 1 : 5;
const CONCURRENCY = 64; // wrk connections and graphile-worker concurrent jobs

// graphile-worker's tuning (0.16+; found best of a sweep on the 2-core machine, see README):
// - unordered: a local queue of 500 (the pool fetches and locks jobs in batches; a full batch is
//   followed by an immediate refetch) and batched completion (completeJobBatchDelay 0: the jobs
//   finished in the same tick are completed by one statement).
// - ordered: a named queue per webhook runs one job at a time, and a fetch takes at most one
//   job per unlocked queue, so the local queue is sized to the number of webhooks (a full fetch
//   refetches at once) and pollInterval is 2 ms (a short fetch otherwise waits the default 2 s
//   before the next: ~3 deliveries/s). A queue stays locked until its job's completion is
//   committed, so the completion delay is 0 there too.
const GW_TUNING = {
  'gw-tuned': { BENCH_LOCAL_QUEUE: 500, BENCH_COMPLETE_BATCH_MS: 0, BENCH_POOL_SIZE: 10, BENCH_POLL_MS: 2000 },
  'gw-ordered': { BENCH_LOCAL_QUEUE: WEBHOOKS, BENCH_COMPLETE_BATCH_MS: 0, BENCH_POOL_SIZE: 10, BENCH_POLL_MS: 2 },
};
// For exploring the peer's settings: BENCH_GW_TUNING='{"gw-ordered":{"BENCH_LOCAL_QUEUE":-1}}'.
for (const [s, o] of Object.entries(JSON.parse(process.env.BENCH_GW_TUNING || '{}'))) Object.assign(GW_TUNING[s], o);

const env = process.env;
for (const k of ['BENCH_WORK', 'BENCH_PG_URL', 'BENCH_PG_PIDFILE', 'BENCH_NGINX_PIDFILE', 'BENCH_RECEIVER_LOG',
  'BENCH_RECEIVER', 'BENCH_SOURCE']) {
  if (!env[k]) throw new Error(`${k} is not set: run bench/run, not bench.mjs`);
}
const WORK = env.BENCH_WORK;
const RECEIVER = env.BENCH_RECEIVER;
const SOURCE = env.BENCH_SOURCE;
const log = (msg) => process.stderr.write(`bench: ${msg}\n`);

// ---- the source ------------------------------------------------------------------------------------------
// nginx serves source/current/f<w>/<page>.json (see bench/run); "current" points at v1 or v2.
function writeSource() {
  for (const v of [1, 2]) {
    for (let f = 0; f < WEBHOOKS; f++) {
      const dir = path.join(WORK, 'source', `v${v}`, `f${f}`);
      mkdirSync(dir, { recursive: true });
      for (let p = 1; (p - 1) * SOURCE_PAGE < RECORDS; p++) {
        const records = [];
        for (let i = (p - 1) * SOURCE_PAGE; i < Math.min(p * SOURCE_PAGE, RECORDS); i++) records.push(contact(f, i, v));
        writeFileSync(path.join(dir, `${p}.json`), JSON.stringify(records));
      }
    }
  }
  switchSource(1);
}

/** Points the source at version v, atomically (a rename over the symlink). */
function switchSource(v) {
  const tmp = path.join(WORK, 'source', 'current.tmp');
  rmSync(tmp, { force: true });
  symlinkSync(`v${v}`, tmp);
  renameSync(tmp, path.join(WORK, 'source', 'current'));
}

const SECRET = signingKey(newSecret());
// ---- 1. the wrk ceiling -------------------------------------------------------------------------------
// The receiver's own ceiling for the same POST: one wrk thread, 64 keep-alive connections.
async function runWrk(trial) {
  const prefix = `/wrk/t${trial}`;
  const url = `${RECEIVER}${prefix}/w0`;
  const data = JSON.stringify([0, 1, 2, 3].map((i) => contact(0, i, 2)));
  const d = signedDelivery(SECRET, 'msg_wrk', data, JSON.stringify(webhookObject(0, url)));
  const bodyFile = path.join(WORK, 'wrk-body.json');
  const headersFile = path.join(WORK, 'wrk-headers.txt');
  writeFileSync(bodyFile, d.body);
  writeFileSync(headersFile, Object.entries(d.headers).map(([k, v]) => `${k}: ${v}\n`).join(''));
  await rotateLog(`t${trial}-before-wrk`);
  const out = await runToEnd('wrk', ['-t1', `-c${CONCURRENCY}`, `-d${WRK_SECONDS}s`, '-s', path.join(here, 'lib', 'post.lua'), url], {
    env: { ...env, BENCH_BODY_FILE: bodyFile, BENCH_HEADERS_FILE: headersFile },
  });
  const seen = analyzeLog(await rotateLog(`t${trial}-wrk`), prefix);
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const problems = [];
  if (!(rate > 0) || !(requests > 0)) problems.push(`wrk made no requests:\n${out}`);
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (bad) problems.push(`wrk got ${bad[1]} non-2xx responses`);
  if (seen.non2xx) problems.push(`the receiver logged ${seen.non2xx} non-2xx answers`);
  if (seen.count < requests) problems.push(`the receiver logged ${seen.count} requests, wrk counted ${requests}`);
  return { system: 'wrk', trial, rate, deliveries: requests, bodyBytes: d.body.length, problems };
}

// ---- 2. graphile-worker ---------------------------------------------------------------------------------
async function runGraphile(trial, system) {
  const ordered = system === 'gw-ordered';
  const db = `bench_${system.replace('-', '_')}_t${trial}`;
  const prefix = `/${system}/t${trial}`;
  const script = path.join(here, 'lib', 'graphile.mjs');
  await dropDb(db);
  await createDb(db);
  const childEnv = {
    ...env,
    BENCH_DB_URL: dbUrl(db),
    BENCH_SECRET: SECRET.text,
    BENCH_PREFIX: prefix,
    BENCH_WEBHOOKS: String(WEBHOOKS),
    BENCH_JOBS_PER_WEBHOOK: String(GW_PER_WEBHOOK),
    BENCH_RECORDS: String(RECORDS),
    BENCH_ORDERED: ordered ? '1' : '0',
    BENCH_CONCURRENCY: String(CONCURRENCY),
    ...Object.fromEntries(Object.entries(GW_TUNING[system]).map(([k, v]) => [k, String(v)])),
  };
  await runToEnd(process.execPath, [script, 'seed'], { env: childEnv, cwd: here });
  await checkpoint();
  await rotateLog(`t${trial}-before-${system}`);

  const child = track(spawn(process.execPath, [script, 'work'], { env: childEnv, cwd: here, stdio: ['pipe', 'pipe', 'inherit'] }));
  const waitLine = lineReader(child.stdout);
  const problems = [];
  let result = { system, trial, deliveries: GW_JOBS, problems };
  try {
    await waitLine(/^READY$/, 60_000, 'graphile-worker to load');
    const cpu0 = { proc: processCpu(child.pid), pg: postgresCpu(env.BENCH_PG_PIDFILE) };
    child.stdin.write('go\n');
    const m = await waitLine(/^DONE (.*)$/, SMOKE ? 120_000 : 1_800_000, `graphile-worker to finish ${GW_JOBS} jobs`);
    const cpu1 = { proc: processCpu(child.pid), pg: postgresCpu(env.BENCH_PG_PIDFILE) };
    const done = JSON.parse(m[1]);
    const per1000 = GW_JOBS / 1000;
    Object.assign(result, {
      rate: GW_JOBS / done.seconds,
      seconds: done.seconds,
      cpuProc: (cpu1.proc - cpu0.proc) / per1000,
      cpuPg: (cpu1.pg - cpu0.pg) / per1000,
      rssMB: peakRssMB(child.pid),
    });
    if (done.failed) problems.push(`${done.failed} job attempts failed`);
    child.stdin.write('exit\n');
    const r = await Promise.race([exited(child), sleep(30_000).then(() => null)]);
    if (!r) throw new Error('the worker did not stop within 30 s');
    if (r.code !== 0) problems.push(`the worker exited with ${r.code ?? r.signal}`);
  } catch (e) {
    problems.push(e.message);
    await stopChild(child, 'SIGKILL', 5_000);
  }
  const seen = analyzeLog(await rotateLog(`t${trial}-${system}`), prefix);
  result.bodyBytes = seen.count ? seen.bytes / seen.count : NaN;
  if (seen.count !== GW_JOBS) problems.push(`the receiver got ${seen.count} POSTs, expected ${GW_JOBS}`);
  if (seen.non2xx) problems.push(`the receiver answered ${seen.non2xx} POSTs with non-2xx`);
  await dropDb(db);
  return result;
}

// ---- 3. hookd -----------------------------------------------------------------------------------------
async function runHookd(trial) {
  const db = `bench_hookd_t${trial}`;
  const prefix = `/hookd/t${trial}`;
  const dataDir = path.join(WORK, `hookd-t${trial}`);
  const logFile = path.join(WORK, `hookd-t${trial}.log`);
  const problems = [];
  const result = { system: 'hookd', trial, deliveries: HOOKD_POSTS, problems };
  await dropDb(db);
  await createDb(db);
  mkdirSync(dataDir, { recursive: true });
  const { child, logTail, listening } = spawnHookd({ db, dataDir, logFile, secretText: SECRET.text });
  const q = new pg.Client({ connectionString: dbUrl(db) });
  try {
    const api = await listening();

    // 100 connections, each on its own feed of the source, one webhook each.
    const webhooks = await parallel([...Array(WEBHOOKS).keys()], 8, async (w) => {
      const conn = await api('POST', '/unified/connection', { integration_type: 'jsonserver', auth: { api_url: `${SOURCE}/f${w}` } });
      return api('POST', '/unified/webhook', {
        connection_id: conn.id,
        object_type: 'crm_contact',
        event: 'updated',
        hook_url: `${RECEIVER}${prefix}/w${w}`,
        interval: 60, // minutes: nothing polls by itself during the trial
        page_max_limit: PAGE_MAX,
      });
    });
    const triggerAll = () => Promise.all(webhooks.map((h) => api('PUT', `/unified/webhook/${h.id}/trigger`)));

    // The baseline: the first poll of each feed fills its snapshot and emits nothing.
    await q.connect();
    await triggerAll();
    await waitFor('every feed\'s baseline', SMOKE ? 60_000 : 600_000, 100, async () => {
      const f = (await q.query('select count(*)::int as n, count(*) filter (where baseline_done)::int as done from feeds')).rows[0];
      if (f.n !== WEBHOOKS || f.done !== WEBHOOKS) return false;
      const d = (await q.query('select count(*)::int as n from deliveries')).rows[0];
      if (d.n !== 0) return false;
      const list = await api('GET', '/unified/webhook?limit=1000');
      return list.length === WEBHOOKS && list.every((h) => h.checked_at);
    });
    await sleep(1000); // let the baseline runs' last writes settle
    const baseline = analyzeLog(await rotateLog(`t${trial}-hookd-baseline`), prefix);
    if (baseline.count) problems.push(`the baseline delivered ${baseline.count} POSTs (expected none)`);

    // The measured trigger: every record of every feed changes, then all webhooks are triggered.
    switchSource(2);
    await checkpoint();
    const follow = followLog(prefix);
    const cpu0 = { proc: processCpu(child.pid), pg: postgresCpu(env.BENCH_PG_PIDFILE) };
    const t0 = Date.now();
    await triggerAll();
    result.triggerMs = Date.now() - t0;

    // Done: the receiver has every POST, then the database agrees (no delivery outstanding,
    // every cursor at its feed's head).
    //
    // Catch-up triggers: an engine that delivers only part of a backlog per run (the wave-1
    // engine stops after 100 deliveries and leaves the rest to the next slot, an hour away
    // here) would never finish. Once deliveries have started, when no POST has arrived for
    // CATCHUP_MS, the webhooks whose cursor is behind their feed's head and that have no
    // delivery outstanding are triggered again, once per stall (re-armed by the next POST);
    // how many such triggers were needed is reported. An engine that drains its backlog
    // needs none.
    const CATCHUP_MS = 1000;
    result.catchups = 0;
    let count = 0;
    let lastProgress = Date.now();
    let armed = false;
    let lastReport = Date.now();
    const stallMs = SMOKE ? 60_000 : 180_000;
    while (count < HOOKD_POSTS) {
      await sleep(20);
      const c = follow.count();
      if (c !== count) {
        count = c;
        lastProgress = Date.now();
        armed = true;
      }
      if (armed && Date.now() - lastProgress > CATCHUP_MS) {
        armed = false;
        const behind = (await q.query(`select w.id from webhooks w join feeds f on f.id = w.feed_id
            where w.cursor_seq < f.head_seq
              and not exists (select 1 from deliveries d where d.webhook_id = w.id)`)).rows;
        if (behind.length) {
          log(`hookd trial ${trial}: ${count}/${HOOKD_POSTS} POSTs, no progress: catch-up trigger of ${behind.length} webhooks`);
          await Promise.all(behind.map((r) => api('PUT', `/unified/webhook/${r.id}/trigger`)));
          result.catchups += behind.length;
        }
      }
      if (Date.now() - lastReport > 10_000) {
        log(`hookd trial ${trial}: ${count}/${HOOKD_POSTS} POSTs`);
        lastReport = Date.now();
      }
      if (Date.now() - lastProgress > stallMs) throw new Error(`no progress for ${stallMs / 1000} s at ${count}/${HOOKD_POSTS} POSTs`);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error('hookd exited during the run');
    }
    follow.close();
    await waitFor('an empty deliveries table and every cursor at its feed\'s head', 60_000, 20, async () => {
      const r = (await q.query(`select
          (select count(*)::int from deliveries) as outstanding,
          (select count(*)::int from webhooks w left join feeds f on f.id = w.feed_id
            where f.id is null or w.cursor_seq <> f.head_seq) as behind`)).rows[0];
      return r.outstanding === 0 && r.behind === 0;
    });
    const cpu1 = { proc: processCpu(child.pid), pg: postgresCpu(env.BENCH_PG_PIDFILE) };
    result.rssMB = peakRssMB(child.pid);
    const per1000 = HOOKD_POSTS / 1000;
    result.cpuProc = (cpu1.proc - cpu0.proc) / per1000;
    result.cpuPg = (cpu1.pg - cpu0.pg) / per1000;

    await sleep(500); // any extra POST would show up now
    const seen = analyzeLog(await rotateLog(`t${trial}-hookd`), prefix);
    if (seen.count !== HOOKD_POSTS) problems.push(`the receiver got ${seen.count} POSTs, expected ${HOOKD_POSTS}`);
    if (seen.non2xx) problems.push(`the receiver answered ${seen.non2xx} POSTs with non-2xx`);
    const wrong = [...Array(WEBHOOKS).keys()].filter((w) => seen.perWebhook.get(`w${w}`) !== HOOKD_PER_WEBHOOK);
    if (wrong.length) problems.push(`${wrong.length} webhooks did not get exactly ${HOOKD_PER_WEBHOOK} POSTs (e.g. w${wrong[0]}: ${seen.perWebhook.get(`w${wrong[0]}`) ?? 0})`);
    result.rate = seen.count > 1 ? (seen.count / (seen.last - seen.first)) * 1000 : NaN;
    result.firstPostMs = seen.first - t0;
    result.totalMs = seen.last - t0;
    result.bodyBytes = seen.count ? seen.bytes / seen.count : NaN;
  } catch (e) {
    problems.push(`${e.message}\n--- hookd log (last lines) ---\n${logTail()}`);
  } finally {
    const r = await stopChild(child, 'SIGTERM', 60_000);
    if (r.code !== 0 && !problems.length) problems.push(`hookd exited with ${r.code ?? r.signal} on SIGTERM`);
    await q.end().catch(() => {});
    await dropDb(db).catch(() => {});
    switchSource(1);
  }
  return result;
}

// ---- the report -----------------------------------------------------------------------------------------
const NAMES = {
  wrk: 'wrk (ceiling)',
  'gw-tuned': 'graphile-worker, tuned, unordered',
  'gw-ordered': 'graphile-worker, ordered per webhook',
  hookd: 'hookd, ordered per webhook',
};
function summary(results) {
  const by = (s) => results.filter((r) => r.system === s && Number.isFinite(r.rate));
  const med = (s, k) => (by(s).length ? median(by(s).map((r) => r[k])) : NaN);
  const wrkRate = med('wrk', 'rate');
  const hookdRate = med('hookd', 'rate');
  const rows = [
    '| system | deliveries/s (median) | min–max | % of wrk | hookd ÷ system | CPU s/1000: process | CPU s/1000: PostgreSQL | peak RSS | first POST after trigger | trigger → last POST |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of SYSTEMS) {
    const rs = by(s);
    if (!rs.length) {
      rows.push(`| ${NAMES[s]} | failed | | | | | | | | |`);
      continue;
    }
    const rate = med(s, 'rate');
    const rates = rs.map((r) => r.rate);
    rows.push(`| ${NAMES[s]} | ${fmt(rate)} | ${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))} | ` +
      `${s === 'wrk' ? '100%' : `${fmt((rate / wrkRate) * 100, 1)}%`} | ` +
      `${s === 'hookd' ? '1' : fmt(hookdRate / rate, 2)} | ` +
      `${s === 'wrk' ? '—' : fmt(med(s, 'cpuProc'), 3)} | ${s === 'wrk' ? '—' : fmt(med(s, 'cpuPg'), 3)} | ` +
      `${s === 'wrk' ? '—' : `${fmt(med(s, 'rssMB'))} MB`} | ` +
      `${s === 'hookd' ? ms(med(s, 'firstPostMs')) : '—'} | ${s === 'hookd' ? ms(med(s, 'totalMs')) : '—'} |`);
  }
  return rows.join('\n');
}

function catchupNote(results) {
  const n = results.filter((r) => r.system === 'hookd').reduce((a, r) => a + (r.catchups || 0), 0);
  if (!n) return [];
  return [`hookd needed ${fmt(n)} catch-up trigger(s): its runs stop before the backlog is delivered, and the ` +
    'driver triggered the webhooks left behind again (see bench/README.md). The time they waited is in its figures.', ''];
}

function perTrial(results) {
  const rows = [
    '| trial | system | deliveries | deliveries/s | CPU s/1000: process | CPU s/1000: PostgreSQL | peak RSS | body bytes | first POST | last POST | catch-up triggers |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    rows.push(`| ${r.trial} | ${r.system} | ${fmt(r.deliveries)} | ${fmt(r.rate)} | ${fmt(r.cpuProc, 3)} | ${fmt(r.cpuPg, 3)} | ` +
      `${Number.isFinite(r.rssMB) ? `${fmt(r.rssMB)} MB` : '—'} | ${fmt(r.bodyBytes)} | ${ms(r.firstPostMs)} | ${ms(r.totalMs)} | ` +
      `${r.system === 'hookd' ? fmt(r.catchups) : '—'} |`);
  }
  return rows.join('\n');
}

// ---- main ----------------------------------------------------------------------------------------------
const started = Date.now();
log(`${SMOKE ? 'smoke: ' : ''}${TRIALS} trial(s); hookd ${WEBHOOKS} webhooks × ${RECORDS} records → ${HOOKD_POSTS} POSTs; ` +
  `graphile-worker ${GW_JOBS} jobs; wrk ${WRK_SECONDS} s; hookd binary ${HOOKD_BIN}`);
if (SYSTEMS.includes('hookd') && !existsSync(HOOKD_BIN)) throw new Error(`no hookd binary at ${HOOKD_BIN} (build it, or set HOOKD_BIN)`);
writeSource();

const results = [];
for (let trial = 1; trial <= TRIALS; trial++) {
  for (const s of SYSTEMS) {
    const t = Date.now();
    let r;
    if (s === 'wrk') r = await runWrk(trial);
    else if (s === 'gw-tuned' || s === 'gw-ordered') r = await runGraphile(trial, s);
    else if (s === 'hookd') r = await runHookd(trial);
    else throw new Error(`unknown system ${s}`);
    results.push(r);
    log(`trial ${trial} ${s}: ${fmt(r.rate)} deliveries/s` +
      `${Number.isFinite(r.cpuProc) ? `, CPU s/1000 ${fmt(r.cpuProc, 3)} + PostgreSQL ${fmt(r.cpuPg, 3)}` : ''}` +
      `${Number.isFinite(r.firstPostMs) ? `, first POST ${ms(r.firstPostMs)}, last ${ms(r.totalMs)}` : ''}` +
      ` (${((Date.now() - t) / 1000).toFixed(1)} s)${r.problems.length ? ' — FAILED' : ''}`);
    for (const p of r.problems) log(`  problem: ${p}`);
  }
}

const problems = results.flatMap((r) => r.problems.map((p) => `${r.system} trial ${r.trial}: ${p.split('\n')[0]}`));
const gw = JSON.parse(readFileSync(path.join(here, 'node_modules', 'graphile-worker', 'package.json'), 'utf8')).version;
const m = machine({
  hookdBin: HOOKD_BIN,
  hookdCommit: opt['hookd-commit'],
  peers: `graphile-worker ${gw} on Node ${process.version}; ${nginxVersion()}; ${sh('bash', ['-c', 'wrk -v 2>&1 | head -n 1'])}; ${postgresVersion()}`,
});
const report = [
  `## Delivery benchmark${SMOKE ? ' (smoke)' : ''}`,
  '',
  `hookd: ${WEBHOOKS} webhooks × ${RECORDS} updated records, page_max_limit ${PAGE_MAX} → ${fmt(HOOKD_POSTS)} signed, ordered POSTs; ` +
    `graphile-worker: ${fmt(GW_JOBS)} jobs of ${PAGE_MAX} records each, concurrency ${CONCURRENCY}; ` +
    `wrk: -t1 -c${CONCURRENCY} -d${WRK_SECONDS}s, the same body. Durable PostgreSQL, nginx receiver (2 workers), ${TRIALS} trial(s), interleaved.`,
  '',
  summary(results),
  '',
  ...catchupNote(results),
  '### Per trial',
  '',
  perTrial(results),
  '',
  '### Run',
  '',
  m.text,
  ...(opt.note.length ? ['', '### Notes', '', ...opt.note.map((n) => `- ${n}`)] : []),
  ...(problems.length ? ['', '### Problems', '', ...problems.map((p) => `- ${p}`)] : []),
  '',
].join('\n');
process.stdout.write(`\n${report}\n`);

if (!SMOKE) {
  const commit = (opt['hookd-commit'] || m.head || 'unknown').slice(0, 7);
  log(`wrote ${writeResults(`${opt.label ? `${opt.label}-` : ''}${commit}`, report)}`);
}
log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s${problems.length ? `; ${problems.length} problem(s)` : ''}`);
process.exit(problems.length ? 1 : 0);
