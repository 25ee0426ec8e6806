// The receiver's access log (nginx, see bench/run): one line per request,
// "$msec $request_method $uri $status $content_length". Each system posts under its own path
// prefix (/wrk/t1, /gw-tuned/t1/w17, /hookd/t1/w17, /schedule/w17, ...). The log is rotated
// (renamed, then nginx reopens it on SIGUSR1) around every measured window, so each window's
// lines end up in a file of their own.
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync } from 'node:fs';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const LIVE_LOG = process.env.BENCH_RECEIVER_LOG;
let rotations = 0;

export async function rotateLog(name) {
  const archived = path.join(process.env.BENCH_WORK, 'nginx', `${String(++rotations).padStart(2, '0')}-${name}.log`);
  renameSync(LIVE_LOG, archived);
  process.kill(Number(readFileSync(process.env.BENCH_NGINX_PIDFILE, 'utf8').trim()), 'SIGUSR1');
  for (let i = 0; !existsSync(LIVE_LOG); i++) {
    if (i > 500) throw new Error('nginx did not reopen its access log');
    await sleep(10);
  }
  await sleep(300); // the workers flush their buffers into the old file as they reopen
  return archived;
}

function parseLine(line) {
  const [msec, method, uri, status, length] = line.split(' ');
  return { t: Number(msec) * 1000, method, uri, status: Number(status), length: Number(length) || 0 };
}

/** The requests under `prefix` in a log file: count, per webhook, first/last times, statuses. */
export function analyzeLog(file, prefix) {
  const r = { count: 0, non2xx: 0, first: Infinity, last: -Infinity, bytes: 0, perWebhook: new Map() };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    const e = parseLine(line);
    if (!e.uri.startsWith(`${prefix}/`)) continue;
    r.count++;
    if (e.status < 200 || e.status > 299) r.non2xx++;
    r.first = Math.min(r.first, e.t);
    r.last = Math.max(r.last, e.t);
    r.bytes += e.length;
    const w = e.uri.slice(prefix.length + 1);
    r.perWebhook.set(w, (r.perWebhook.get(w) || 0) + 1);
  }
  return r;
}

/** Follows the live log: count() returns how many requests under `prefix` it has seen so far. */
export function followLog(prefix) {
  const fd = openSync(LIVE_LOG, 'r');
  let offset = 0;
  let rest = '';
  let count = 0;
  const buf = Buffer.alloc(1 << 20);
  return {
    count() {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        const lines = (rest + buf.toString('utf8', 0, n)).split('\n');
        rest = lines.pop();
        for (const l of lines) if (l.includes(` ${prefix}/`)) count++;
      }
      return count;
    },
    close: () => closeSync(fd),
  };
}
