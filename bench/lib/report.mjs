// The drivers' reports: number formats, the run's description (command, machine, commit,
// versions) and the results file under bench/results/.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO = path.resolve(BENCH, '..');

export const fmt = (x, digits = 0) =>
  (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '—');
export const ms = (x) => (Number.isFinite(x) ? `${fmt(x)} ms` : '—');

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The q-quantile (0..1) of xs, nearest rank; NaN when there are none. */
export function quantile(xs, q) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** A command's output, or '' when it fails (a version that cannot be read is not an error). */
export function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
  } catch {
    return '';
  }
}

export const nginxVersion = () => sh('bash', ['-c', 'nginx -v 2>&1']);

export function postgresVersion() {
  const major = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b)).pop();
  return sh(`/usr/lib/postgresql/${major}/bin/postgres`, ['--version']);
}

/**
 * The "Run" section: command, date, machine, load, repository commit, hookd binary, `peers`
 * (the versions of everything else that ran). Returns { head, text }.
 */
export function machine({ hookdBin, hookdCommit, peers }) {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
  const head = sh('git', ['rev-parse', 'HEAD']);
  const dirty = sh('git', ['status', '--porcelain']) ? ' (dirty)' : '';
  const env = process.env;
  return {
    head,
    text: [
      `- command: \`${env.BENCH_COMMAND || 'bench/run'}\`${env.HOOKD_BIN ? ` with HOOKD_BIN=${env.HOOKD_BIN}` : ''}`,
      `- date: ${new Date().toISOString()}`,
      `- machine: ${os.cpus().length} CPUs (nproc ${sh('nproc', [])}), ${cpu}, ${fmt(os.totalmem() / 2 ** 30, 1)} GiB, ${os.type()} ${os.release()}`,
      `- load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
      `- repository: ${head}${dirty}`,
      `- hookd: ${hookdBin} (${sh(hookdBin, ['version']) || 'version unknown'})${hookdCommit ? `, built from ${hookdCommit}` : ''}`,
      `- peers: ${peers}`,
    ].join('\n'),
  };
}

/** Writes bench/results/<UTC date>-<name>.md (a time suffix if that exists); returns its path
 *  relative to the repository. */
export function writeResults(name, text) {
  const dir = path.join(BENCH, 'results');
  mkdirSync(dir, { recursive: true });
  const now = new Date().toISOString();
  let file = path.join(dir, `${now.slice(0, 10)}-${name}.md`);
  if (existsSync(file)) file = file.replace(/\.md$/, `-${now.slice(11, 19).replaceAll(':', '')}.md`);
  writeFileSync(file, text);
  return path.relative(REPO, file);
}
