// The peer: graphile-worker delivering the same signed POSTs as hookd, from jobs in the same
// durable PostgreSQL. Two commands, run as separate processes so that the worker's CPU and
// peak RSS cover delivery only:
//
//   node graphile.mjs seed   inserts the jobs (bulk addJobs), before the clock starts
//   node graphile.mjs work   prints READY, waits for "go" on stdin, runs the worker until every
//                            job is done and durably completed, prints DONE {json}, then waits
//                            for "exit" on stdin (the driver reads /proc in between)
//
// Configuration from the environment (set by bench.mjs):
//   BENCH_DB_URL, BENCH_RECEIVER, BENCH_SECRET, BENCH_PREFIX (receiver path prefix, e.g.
//   /gw-tuned/t1), BENCH_WEBHOOKS, BENCH_JOBS_PER_WEBHOOK, BENCH_RECORDS, BENCH_ORDERED (1: one
//   queueName per webhook, so each webhook's jobs run one at a time, in order),
//   BENCH_CONCURRENCY, BENCH_LOCAL_QUEUE, BENCH_COMPLETE_BATCH_MS, BENCH_POOL_SIZE.
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import { contact, signedDelivery, signingKey, webhookObject } from './workload.mjs';

const env = process.env;
const num = (name, dflt) => (env[name] === undefined || env[name] === '' ? dflt : Number(env[name]));
const DB = env.BENCH_DB_URL;
const WEBHOOKS = num('BENCH_WEBHOOKS', 100);
const JOBS_PER_WEBHOOK = num('BENCH_JOBS_PER_WEBHOOK', 200);
const RECORDS = num('BENCH_RECORDS', 800);
const ORDERED = env.BENCH_ORDERED === '1';
const TOTAL = WEBHOOKS * JOBS_PER_WEBHOOK;
const PAGE = 4; // records per POST, as hookd's page_max_limit in the benchmark

// Errors only: graphile-worker logs a line per job at info level otherwise.
const logger = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

async function seed() {
  const utils = await makeWorkerUtils({ connectionString: DB, logger });
  try {
    await utils.migrate();
    // Job n of every webhook before job n+1 of any: an unordered worker sees them mixed, and
    // within one queue the ids ascend in delivery order.
    let batch = [];
    for (let n = 0; n < JOBS_PER_WEBHOOK; n++) {
      for (let w = 0; w < WEBHOOKS; w++) {
        const data = [];
        for (let k = 0; k < PAGE; k++) data.push(contact(w, (n * PAGE + k) % RECORDS, 2));
        const spec = { identifier: 'deliver', payload: { w, n, data }, maxAttempts: 25 };
        if (ORDERED) spec.queueName = `webhook-${w}`;
        batch.push(spec);
        if (batch.length === 1000) {
          await utils.addJobs(batch);
          batch = [];
        }
      }
    }
    if (batch.length) await utils.addJobs(batch);
  } finally {
    await utils.release();
  }
}

async function work() {
  const secret = signingKey(env.BENCH_SECRET);
  const receiver = new URL(env.BENCH_RECEIVER);
  const concurrency = num('BENCH_CONCURRENCY', 64);
  // One keep-alive connection per concurrent job, as a delivery worker in production would.
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  const webhooks = [];
  for (let w = 0; w < WEBHOOKS; w++) {
    const path = `${env.BENCH_PREFIX}/w${w}`;
    webhooks.push({ path, json: JSON.stringify(webhookObject(w, `${receiver.origin}${path}`)) });
  }

  function post(path, { body, headers }) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: receiver.hostname, port: receiver.port, method: 'POST', path, agent,
          headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () =>
            res.statusCode >= 200 && res.statusCode < 300 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  // The task: sign the job's records and POST them. The webhook-id is the job id, so a retry
  // carries the same id, as a delivery system's must.
  const taskList = {
    deliver: async (payload, helpers) => {
      const wh = webhooks[payload.w];
      await post(wh.path, signedDelivery(secret, `msg_${helpers.job.id}`, JSON.stringify(payload.data), wh.json));
    },
  };

  const lines = createInterface({ input: process.stdin });
  const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
  process.stdout.write('READY\n');
  if ((await nextLine()).trim() !== 'go') throw new Error('expected "go"');

  const events = new EventEmitter();
  let succeeded = 0;
  let failed = 0;
  let allSucceeded;
  const done = new Promise((resolve) => (allSucceeded = resolve));
  events.on('job:success', () => {
    if (++succeeded === TOTAL) allSucceeded();
  });
  events.on('job:error', () => failed++);

  const localQueue = num('BENCH_LOCAL_QUEUE', -1);
  const completeBatch = num('BENCH_COMPLETE_BATCH_MS', -1);
  const start = performance.now();
  const runner = await run({
    taskList,
    noHandleSignals: true,
    preset: {
      worker: {
        connectionString: DB,
        concurrentJobs: concurrency,
        maxPoolSize: num('BENCH_POOL_SIZE', 10),
        pollInterval: num('BENCH_POLL_MS', 2000),
        logger,
        events,
        ...(localQueue > 1 ? { localQueue: { size: localQueue } } : {}),
        completeJobBatchDelay: completeBatch,
        failJobBatchDelay: completeBatch,
      },
    },
  });
  await done;
  // Done means durably done: with batched completion the last jobs' deletes may still be
  // pending, so wait until the jobs table is empty (polling starts only after the last POST).
  const check = new pg.Client({ connectionString: DB });
  await check.connect();
  for (;;) {
    const r = await check.query('select count(*)::int as n from graphile_worker._private_jobs');
    if (r.rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const seconds = (performance.now() - start) / 1000;
  await check.end();
  process.stdout.write(`DONE ${JSON.stringify({ seconds, jobs: TOTAL, succeeded, failed })}\n`);

  await nextLine(); // "exit": the driver has read our CPU time and peak RSS
  await runner.stop();
  agent.destroy();
  lines.close();
}

const command = process.argv[2];
if (command === 'seed') await seed();
else if (command === 'work') await work();
else {
  console.error('usage: node graphile.mjs seed|work');
  process.exit(2);
}
