// The drivers' child processes (hookd, the graphile-worker peer, wrk): started, followed line by
// line, stopped. Every child is tracked so that an interrupted benchmark leaves none behind:
// SIGINT or SIGTERM to the driver kills them (bench/run then stops PostgreSQL and nginx).
import { spawn } from 'node:child_process';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const children = new Set();
export function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

export function lineReader(stream) {
  let buf = '';
  const waiting = [];
  const lines = [];
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of [...waiting]) w();
  });
  /** Resolves with the first line (from the start) that matches. */
  return (re, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < lines.length; seen++) {
          const m = re.exec(lines[seen]);
          if (m) {
            clearTimeout(timer);
            waiting.splice(waiting.indexOf(check), 1);
            resolve(m);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(check), 1);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      waiting.push(check);
      check();
    });
}

export function exited(child) {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    : new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
}

export async function stopChild(child, signal, graceMs) {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  const r = await Promise.race([exited(child), sleep(graceMs).then(() => null)]);
  if (r) return r;
  child.kill('SIGKILL');
  return exited(child);
}

export function runToEnd(cmd, args, options) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options }));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}):\n${out}`)));
  });
}
