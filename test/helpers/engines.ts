// Runs a suite on every database engine: SQLite in a temporary folder and PostgreSQL in a
// database created for this run and dropped after it. Without PostgreSQL the suite is skipped
// with the reason printed, except under CI=true, where a missing service is a failure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe } from 'node:test';
import pg from 'pg';

export type EngineName = 'sqlite' | 'postgres';

export const PG_ADMIN_URL =
  process.env.CARETRAIL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function probeOnce(): Promise<string | null> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('select 1');
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Why PostgreSQL cannot be used, or null. A refused connection answers at once; a slow answer
 * (two cores busy with Chromium and other test files) is tried again before giving up.
 */
async function probePostgres(): Promise<string | null> {
  let problem = await probeOnce();
  for (let attempt = 1; attempt < 3 && problem !== null && /timeout/i.test(problem); attempt++)
    problem = await probeOnce();
  return problem;
}

const pgProblem = await probePostgres();
if (pgProblem !== null && process.env.CI === 'true') {
  throw new Error(
    `PostgreSQL is required under CI=true but is not reachable at ${PG_ADMIN_URL}: ${pgProblem}`,
  );
}

/** Why PostgreSQL suites are skipped here, or null when it answers. */
export function pgUnavailable(): string | null {
  return pgProblem;
}

export function tempDir(prefix = 'caretrail-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Creates a fresh, empty database for one engine and returns its URL and a disposer. */
export async function createTestDatabase(
  engine: EngineName,
): Promise<{ url: string; drop: () => Promise<void> }> {
  if (engine === 'sqlite') {
    const dir = tempDir();
    return {
      url: `sqlite:${path.join(dir, 'caretrail.db')}`,
      drop: () => {
        fs.rmSync(dir, { recursive: true, force: true });
        return Promise.resolve();
      },
    };
  }
  const name = `caretrail_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: PG_ADMIN_URL });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

/**
 * Declares `suite` once per engine. `url()` gives the database URL inside tests; the database
 * is created before the suite and dropped after it.
 */
export function describeEachEngine(
  name: string,
  suite: (ctx: { engine: EngineName; url: () => string }) => void,
): void {
  for (const engine of ['sqlite', 'postgres'] as const) {
    const skip =
      engine === 'postgres' && pgProblem !== null
        ? `PostgreSQL not reachable at ${PG_ADMIN_URL}: ${pgProblem}`
        : false;
    describe(`${name} [${engine}]`, { skip }, () => {
      let database: { url: string; drop: () => Promise<void> } | undefined;
      before(async () => {
        database = await createTestDatabase(engine);
      });
      after(async () => {
        await database?.drop();
      });
      suite({
        engine,
        url: () => {
          if (!database) throw new Error('database not created yet');
          return database.url;
        },
      });
    });
  }
}
