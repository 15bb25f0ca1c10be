// The seeded dataset per engine and scale, built once and cached (a SQLite data folder, or a
// PostgreSQL template database plus its data folder); each run works on a fresh copy of it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pathToFileURL } from 'node:url';
import type { MigrationProvider } from 'kysely';
import { seedDataset, type Sample, type Scale } from './seed.js';
import { MAIN, post, runCli, startCaretrail } from './server.js';

export type Engine = 'sqlite' | 'postgres';
export const PG_ADMIN_URL =
  process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const BENCH_PASSWORD = 'bench password 123';

export interface Dataset {
  engine: Engine;
  dataDir: string;
  env: Record<string, string>;
  sample: Sample;
  /** Drops the copy (temp folder; PostgreSQL database). */
  drop(): Promise<void>;
}

const DEFAULT_CACHE = path.join(os.homedir(), '.cache', 'caretrail-bench');
const CACHE = process.env.BENCH_CACHE ?? DEFAULT_CACHE;
// Another cache folder has its own PostgreSQL templates: a seed started because one folder has no
// sample.json drops and rebuilds the template, which must not be another folder's.
const CACHE_TAG =
  CACHE === DEFAULT_CACHE ? '' : `_${createHash('sha256').update(CACHE).digest('hex').slice(0, 8)}`;

function pgUrl(db: string): string {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${db}`;
  return url.toString();
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** Settings every bench server runs with: no lockouts or alert storms from one busy clinician. */
export function serverEnv(dataDir: string, databaseUrl: string): Record<string, string> {
  return {
    CARETRAIL_DATA_DIR: dataDir,
    CARETRAIL_DATABASE_URL: databaseUrl,
    CARETRAIL_LOGIN_IP_MAX_FAILURES: '100000',
    CARETRAIL_ALERT_DISTINCT_PATIENTS: '100000',
    CARETRAIL_MAX_UPLOAD_BYTES: String(200 * 1024 * 1024),
    CARETRAIL_PREVIEW_MAX_BYTES: '1024',
  };
}

/** The clinic (CLI admin, then a clinician over HTTP), then the bulk seed. */
async function build(engine: Engine, scale: Scale, dir: string, tplDb: string): Promise<Sample> {
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const url = engine === 'sqlite' ? `sqlite:${path.join(dataDir, 'caretrail.db')}` : pgUrl(tplDb);
  const env = serverEnv(dataDir, url);
  const pw = path.join(dir, 'pw');
  fs.writeFileSync(pw, BENCH_PASSWORD);
  const email = ['--email', 'admin@bench.test', '--password-file', pw];
  await runCli(['admin', 'create', '--org', 'Bench Clinic', ...email], env);
  fs.rmSync(pw);
  const server = await startCaretrail(env);
  let ids: { orgId: string; userId: string };
  try {
    const login = { email: 'admin@bench.test', password: BENCH_PASSWORD };
    const admin = await post<{ token: string }>(server.baseUrl, '/api/v1/auth/login', login);
    const vet = { email: 'vet@bench.test', name: 'Bench Vet', role: 'clinician' };
    const user = await post<{ id: string; organizationId: string }>(
      server.baseUrl,
      '/api/v1/users',
      { ...vet, password: BENCH_PASSWORD },
      admin.token,
    );
    ids = { orgId: user.organizationId, userId: user.id };
  } finally {
    await server.stop();
  }
  return seedDataset(url, dataDir, scale, ids);
}

/** A fresh copy of the cached dataset, seeding it first when the cache has none. */
export async function dataset(engine: Engine, scale: Scale): Promise<Dataset> {
  // The schema of the server build that runs (BENCH_MAIN may name an older one).
  const migrations = path.join(path.dirname(MAIN), '..', 'store', 'migrations', 'index.js');
  const { migrationProvider } = (await import(pathToFileURL(migrations).href)) as {
    migrationProvider: MigrationProvider;
  };
  const schema = Object.keys(await migrationProvider.getMigrations()).length;
  const key = `${engine}-${scale.name}-s${String(schema)}-v2`;
  const cached = path.join(CACHE, key);
  const tplDb = `caretrail_bench_${key.replace(/-/g, '_')}${CACHE_TAG}`;
  if (!fs.existsSync(path.join(cached, 'sample.json'))) {
    const started = Date.now();
    process.stdout.write(`seeding ${key} (cached in ${cached}) … `);
    fs.rmSync(cached, { recursive: true, force: true });
    if (engine === 'postgres') {
      await adminQuery(`drop database if exists ${tplDb}`);
      await adminQuery(`create database ${tplDb}`);
    }
    const sample = await build(engine, scale, cached, tplDb);
    fs.writeFileSync(path.join(cached, 'sample.json'), JSON.stringify(sample));
    process.stdout.write(`${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  }
  const sample = JSON.parse(fs.readFileSync(path.join(cached, 'sample.json'), 'utf8')) as Sample;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `caretrail-bench-${engine}-`));
  const dataDir = path.join(work, 'data');
  fs.cpSync(path.join(cached, 'data'), dataDir, { recursive: true });
  let runDb = '';
  if (engine === 'postgres') {
    runDb = `caretrail_bench_run_${String(process.pid)}`;
    await adminQuery(`drop database if exists ${runDb}`);
    await adminQuery(`create database ${runDb} template ${tplDb}`);
  }
  const url = engine === 'sqlite' ? `sqlite:${path.join(dataDir, 'caretrail.db')}` : pgUrl(runDb);
  return {
    engine,
    dataDir,
    env: serverEnv(dataDir, url),
    sample,
    async drop() {
      fs.rmSync(work, { recursive: true, force: true });
      if (runDb) await adminQuery(`drop database if exists ${runDb} with (force)`);
    },
  };
}
