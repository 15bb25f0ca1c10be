// Patient search at the query level (no HTTP, no audit, no other load on the server): the bench
// seed's patients and owners at a given count, then each search the HTTP bench sends, timed one
// at a time. Takes a source tree, so the same script measures an older commit for an A/B:
//   node --import tsx bench/search-query.bench.ts [tree=.] [sqlite|postgres] [patients=100000]
// The rows are inserted before migration 0010, so the later migrations' backfills build the
// search tables (their time is printed too).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  sql,
  type MigrationProvider,
} from 'kysely';
import pg from 'pg';

const tree = path.resolve(process.argv[2] ?? '.');
const engine = process.argv[3] === 'postgres' ? 'postgres' : 'sqlite';
const count = Number(process.argv[4] ?? 100_000);
const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const load = async <T>(rel: string) =>
  (await import(pathToFileURL(path.join(tree, rel)).href)) as T;
const { migrationProvider } = await load<{ migrationProvider: MigrationProvider }>(
  'src/store/migrations/index.ts',
);
const { openDatabase } =
  await load<typeof import('../src/store/database.js')>('src/store/database.ts');
const { searchPatients } = await load<typeof import('../src/store/patient.store.js')>(
  'src/store/patient.store.ts',
);
const { searchKey } =
  await load<typeof import('../src/domain/patient.js')>('src/domain/patient.ts');

// The names of bench/seed.ts.
const NAMES = [
  ...['Bella', 'Max', 'Luna', 'Charlie', 'Daisy', 'Milo', 'Coco', 'Rocky', 'Ruby', 'Oscar'],
  ...['Teddy', 'Willow', 'Pepper', 'Bailey', 'Ziggy', 'Nala', 'Hazel', 'Jasper', 'Olive'],
];
const SURNAMES = ['Smith', 'Jones', 'Taylor', 'Brown', 'Wilson', 'Evans', 'Thomas', 'Roberts'];
const FIRST = ['Anna', 'Ben', 'Clara', 'David', 'Emma', 'Frank', 'Grace', 'Henry', 'Iris', 'Jack'];
const patientName = (i: number) =>
  `${NAMES[i % NAMES.length] ?? ''} ${SURNAMES[Math.floor(i / NAMES.length) % SURNAMES.length] ?? ''}`;
const ownerName = (i: number) =>
  `${FIRST[i % FIRST.length] ?? ''} ${SURNAMES[Math.floor(i / 7) % SURNAMES.length] ?? ''}`;
const id = (kind: string, i: number) => `${kind}-${String(i).padStart(8, '0')}`;
const chip = (i: number) => `985${String(i).padStart(12, '0')}`;

let url: string;
let dropDb = async () => {};
if (engine === 'sqlite') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-search-bench-'));
  url = `sqlite:${path.join(dir, 'caretrail.db')}`;
  dropDb = () => {
    fs.rmSync(dir, { recursive: true, force: true });
    return Promise.resolve();
  };
} else {
  const name = `caretrail_search_bench_${String(process.pid)}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  url = u.toString();
  dropDb = async () => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL });
    await c.connect();
    await c.query(`drop database if exists ${name} with (force)`);
    await c.end();
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows of any table, by name
const raw: Kysely<any> =
  engine === 'sqlite'
    ? new Kysely({ dialect: new SqliteDialect({ database: new BetterSqlite3(url.slice(7)) }) })
    : new Kysely({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
      });
const migrator = new Migrator({
  db: raw,
  provider: migrationProvider,
  migrationTableName: 'schema_migrations',
  migrationLockTableName: 'schema_migrations_lock',
});
const to0009 = await migrator.migrateTo('0009-addendum-release');
if (to0009.error) throw new Error('migration to 0009 failed', { cause: to0009.error });
const at = new Date().toISOString();
await raw
  .insertInto('organizations')
  .values({ id: 'org', name: 'Bench', created_at: at })
  .execute();
await raw
  .insertInto('users')
  .values({
    ...{ id: 'user', organization_id: 'org', email: 'v@b.test', name: 'V', role: 'clinician' },
    ...{ password_hash: 'x', disabled: 0, totp_secret: null, totp_pending_secret: null },
    ...{ totp_enabled: 0, totp_last_step: null, version: 1, created_at: at, updated_at: at },
  })
  .execute();
const base = { organization_id: 'org', created_at: at, updated_at: at };
for (let start = 0; start < count; start += 1000) {
  const range = Array.from({ length: Math.min(1000, count - start) }, (_, k) => start + k);
  await raw.transaction().execute(async (tx) => {
    await tx
      .insertInto('patients')
      .values(
        range.map((i) => ({
          ...base,
          id: id('p', i),
          name: patientName(i),
          name_search: searchKey(patientName(i)),
          species: 'canine',
          version: 1,
          created_by: 'user',
        })),
      )
      .execute();
    await tx
      .insertInto('owners')
      .values(
        range.map((i) => ({
          ...base,
          id: id('o', i),
          name: ownerName(i),
          name_search: searchKey(ownerName(i)),
        })),
      )
      .execute();
    await tx
      .insertInto('patient_owners')
      .values(range.map((i) => ({ patient_id: id('p', i), owner_id: id('o', i), position: 0 })))
      .execute();
    await tx
      .insertInto('patient_identifiers')
      .values(
        range.map((i) => ({
          id: id('i', i),
          organization_id: 'org',
          patient_id: id('p', i),
          system: 'microchip',
          value: chip(i),
        })),
      )
      .execute();
  });
}
const migrateStart = performance.now();
const rest = await migrator.migrateToLatest();
if (rest.error) throw new Error('migration to the latest failed', { cause: rest.error });
const migrateMs = performance.now() - migrateStart;
if (engine === 'postgres') await sql`analyze`.execute(raw);
await raw.destroy();

const db = await openDatabase(url);
const ms = (xs: number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
};
const time = async (
  label: string,
  search: Omit<Parameters<typeof searchPatients>[1], 'organizationId' | 'limit'>,
) => {
  const took: number[] = [];
  let found = 0;
  for (let k = 0; k < 60; k++) {
    const t = performance.now();
    const rows = await searchPatients(db.read, { organizationId: 'org', limit: 11, ...search });
    took.push(performance.now() - t);
    found = rows.length;
  }
  const measured = took.slice(10);
  console.log(
    `${label.padEnd(24)} p50 ${ms(measured, 0.5).toFixed(2)} ms  p99 ${ms(measured, 0.99).toFixed(2)} ms  (${String(found)} rows)`,
  );
};
console.log(
  `${path.basename(tree)} ${engine}, ${String(count)} patients; migrations 0010+ with backfill ${(migrateMs / 1000).toFixed(1)} s`,
);
const asTyped = (q: string) => ({ text: q, identifierValues: [q, q.toUpperCase()] });
for (const q of ['bel', 'max', 'wil', 'smi', 'emm', 'jon', 'zig']) await time(`q=${q}`, asTyped(q));
const firstPage = await searchPatients(db.read, {
  organizationId: 'org',
  limit: 10,
  ...asTyped('wil'),
});
const last = firstPage.at(-1);
if (last)
  await time('q=wil, page 2', {
    ...asTyped('wil'),
    after: { nameSearch: last.name_search, id: last.id },
  });
await time('q=s (one letter)', asTyped('s'));
await time('q=emma smi', asTyped('emma smi'));
await time('q=bella jon', asTyped('bella jon'));
await time('q=emma zzz (no match)', asTyped('emma zzz'));
await time('microchip', {
  identifier: { system: 'microchip', value: chip(Math.floor(count / 2)) },
});
await db.close();
if (process.env.SEARCH_BENCH_KEEP) console.log(url);
else await dropDb();
