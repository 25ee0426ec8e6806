// What a process costs, read from /proc: CPU seconds (user + system, all threads) and memory.
// The drivers read these around their measured windows, whatever the process does.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

function procStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return { ppid: Number(f[1]), own: (Number(f[11]) + Number(f[12])) / TICK, reaped: (Number(f[13]) + Number(f[14])) / TICK };
  } catch {
    return null;
  }
}

/** CPU seconds of one process (all its threads, and its waited-for children). */
export function processCpu(pid) {
  const s = procStat(pid);
  if (!s) throw new Error(`process ${pid} is gone`);
  return s.own + s.reaped;
}

/** CPU seconds of the whole PostgreSQL server: the postmaster, its live children (backends,
 *  WAL writer, checkpointer, autovacuum...) and, through the postmaster's cutime/cstime, the
 *  children that have exited (a client's backend ends when it disconnects). */
export function postgresCpu(pidFile) {
  const pm = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  const m = procStat(pm);
  let total = m.own + m.reaped;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = procStat(e);
    if (s && s.ppid === pm) total += s.own;
  }
  return total;
}

/** Resident memory in KB: now (VmRSS) and the peak so far (VmHWM). */
export function memoryKB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

export const peakRssMB = (pid) => memoryKB(pid).hwm / 1024;
