// Shared by the PostgreSQL replication tests: a private PostgreSQL cluster (its own folder and
// port, run as the postgres user) archiving into a temporary pgBackRest repository, and the
// Caretrail configuration pointing at both. Without pgbackrest, PostgreSQL's server binaries or
// root (to run as postgres) the tests are skipped with the reason, except under CI=true.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config.js';
import { createPrivateCluster, type LocalCluster } from '../../src/replication/postgres/cluster.js';
import { pgReplicateSetup } from '../../src/replication/postgres/setup.js';
import { tempDir } from '../helpers/engines.js';

export const CI = process.env.CI === 'true';

/** Why these tests cannot run here, or null. */
export function pgBackRestProblem(): string | null {
  if (spawnSync('pgbackrest', ['version']).error) return 'pgbackrest is not installed';
  if (!fs.existsSync('/usr/lib/postgresql'))
    return 'PostgreSQL server binaries (initdb) are not installed';
  if (process.getuid?.() !== 0)
    return 'a private PostgreSQL cluster needs root (to run as postgres)';
  if (spawnSync('runuser', ['--help']).error) return 'runuser is missing';
  return null;
}

/** node:test options: skipped with the reason on a laptop, run (and failing) under CI. */
export function needsPgBackRest(timeout: number): { skip: string | false; timeout: number } {
  return { skip: CI ? false : (pgBackRestProblem() ?? false), timeout };
}

export function assertCanRun(): void {
  const problem = pgBackRestProblem();
  if (problem) throw new Error(`CI=true: ${problem}`);
}

export interface ArchivedCluster {
  dir: string;
  cluster: LocalCluster;
  config: Config;
  masterKey: string;
  /** Where pgBackRest's configuration and working folders are (outside the repository). */
  options: { configFile: string; stateDir: string };
  repository: string;
  /** Runs SQL in the caretrail database. */
  sql(text: string): Promise<string>;
  remove(): Promise<void>;
}

/**
 * A private cluster with a `caretrail` database, set up by pgReplicateSetup --apply (and the
 * restart it asks for), so that it archives into a fresh repository.
 */
export async function archivedCluster(env: Record<string, string> = {}): Promise<ArchivedCluster> {
  const dir = tempDir('caretrail-pgdr-');
  fs.chmodSync(dir, 0o755);
  const cluster = await createPrivateCluster({ dir: path.join(dir, 'pg') });
  await cluster.query('create database caretrail');
  const masterKey = randomBytes(32).toString('base64');
  const repository = path.join(dir, 'repository');
  const config = loadConfig({
    CARETRAIL_DATABASE_URL: cluster.url('caretrail'),
    CARETRAIL_REPLICA_URL: `file:${repository}`,
    CARETRAIL_MASTER_KEY: masterKey,
    CARETRAIL_DATA_DIR: path.join(dir, 'app'),
    ...env,
  });
  const options = {
    configFile: path.join(dir, 'etc', 'pgbackrest.conf'),
    stateDir: path.join(dir, 'pgbackrest'),
  };
  const first = await pgReplicateSetup(config, { ...options, apply: true });
  if (first.restartNeeded) {
    await cluster.stop();
    await cluster.start();
  }
  return {
    dir,
    cluster,
    config,
    masterKey,
    options,
    repository,
    sql: (text) => cluster.query(text, 'caretrail'),
    async remove() {
      await cluster.stop('immediate').catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every file under `dir`. */
export function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
