// The throw-away PostgreSQL server bench/run started (BENCH_PG_URL): one database per system
// and trial, created fresh and dropped after.
import pg from 'pg';

export function dbUrl(name) {
  const u = new URL(process.env.BENCH_PG_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function admin(sql) {
  const c = new pg.Client({ connectionString: process.env.BENCH_PG_URL });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

export const createDb = (name) => admin(`create database ${name}`);
export const dropDb = (name) => admin(`drop database if exists ${name} with (force)`);
// Before each measured window, so that no system pays for the previous one's dirty pages.
export const checkpoint = () => admin('checkpoint');
