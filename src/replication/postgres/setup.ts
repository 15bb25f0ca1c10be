// `caretrail replicate setup` on PostgreSQL: writes pgBackRest's configuration for the server in
// CARETRAIL_DATABASE_URL and the repository in CARETRAIL_REPLICA_URL, checks the server's
// archiving settings (printing the ALTER SYSTEM lines needed, applying them only with --apply),
// creates the stanza and, once archiving works, runs `pgbackrest check`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../config.js';
import { repositoryKeys, type RepositoryKey } from './cipher-pass.js';
import { PgReplicationError } from './errors.js';
import {
  DEFAULT_CONFIG_FILE,
  pgbackrest,
  readConfigFile,
  renderConfig,
  statePaths,
  type PgBackRestContext,
} from './pgbackrest.js';
import { makeDir, runAsOwnerOf, writePrivateFile } from './run.js';
import {
  checkServer,
  connect,
  readServerFacts,
  settingChanges,
  type SettingChange,
} from './server-settings.js';

export interface PgSetupOptions {
  /** Run the ALTER SYSTEM lines (and reload); a restart is still the operator's. */
  apply?: boolean;
  /** pgBackRest configuration file (default /etc/pgbackrest/caretrail.conf). */
  configFile?: string;
  /** Folder for pgBackRest's lock, log and spool (default: pgBackRest's own folders). */
  stateDir?: string;
}

export interface PgSetupReport {
  configFile: string;
  repository: string;
  /** Id of the master key the repository's cipher pass is derived from. */
  keyId: string;
  /** Settings that were wrong when setup looked. */
  changes: SettingChange[];
  /** Those it changed (with --apply). */
  applied: SettingChange[];
  /** wal_level or archive_mode changed but the server still runs with the old value. */
  restartNeeded: boolean;
  /** CARETRAIL_REPLICA_SYNC: synchronous_standby_names is left until the WAL receiver is connected. */
  waitingForReceiver: boolean;
  /** `pgbackrest check` passed: WAL reaches the repository. */
  checked: boolean;
}

/** The repository folder of a `file:` replica URL; PostgreSQL's replica is a pgBackRest folder. */
export function repositoryPath(replicaUrl: string): string {
  if (replicaUrl === '')
    throw new PgReplicationError(
      'CARETRAIL_REPLICA_URL is not set: give the repository folder, file:/other/disk/caretrail',
    );
  if (!replicaUrl.startsWith('file:'))
    throw new PgReplicationError(
      "on PostgreSQL CARETRAIL_REPLICA_URL is pgBackRest's repository folder, file:/path (S3 repositories are not wired in yet)",
    );
  return path.resolve(replicaUrl.slice('file:'.length));
}

export function checkPostgresUrl(databaseUrl: string): URL {
  if (!/^postgres(ql)?:\/\//.test(databaseUrl))
    throw new PgReplicationError('CARETRAIL_DATABASE_URL is not a postgres:// URL');
  return new URL(databaseUrl);
}

/** pgBackRest runs beside PostgreSQL (archive_command runs there): the URL must be local. */
function checkLocal(url: URL): void {
  const host = url.searchParams.get('host') ?? url.hostname;
  if (!['', 'localhost', '127.0.0.1', '[::1]', '::1'].includes(host) && !host.startsWith('/'))
    throw new PgReplicationError(
      `the database is on ${host}: run caretrail replicate setup on the database machine, with CARETRAIL_DATABASE_URL pointing to it locally`,
    );
}

/** The key of an existing configuration (kept across a master key rotation), else the active one. */
function keyFor(keys: RepositoryKey[], configFile: string): RepositoryKey {
  const active = keys[0];
  if (!active) throw new PgReplicationError('no master key');
  if (!fs.existsSync(configFile)) return active;
  const { keyId } = readConfigFile(configFile);
  if (keyId === '' || keyId === active.keyId) return active;
  const kept = keys.find((k) => k.keyId === keyId);
  if (!kept)
    throw new PgReplicationError(
      `the repository was set up under master key ${keyId}, which this installation no longer has: put it back (CARETRAIL_MASTER_KEY, after the active key) or point CARETRAIL_REPLICA_URL to a new folder`,
    );
  return kept;
}

export async function pgReplicateSetup(
  config: Config,
  options: PgSetupOptions = {},
): Promise<PgSetupReport> {
  const url = checkPostgresUrl(config.databaseUrl);
  checkLocal(url);
  const repository = repositoryPath(config.replicaUrl);
  const configFile = path.resolve(options.configFile ?? DEFAULT_CONFIG_FILE);
  const key = keyFor(repositoryKeys(config), configFile);

  const client = await connect(config.databaseUrl);
  try {
    let facts = await readServerFacts(client);
    checkServer(facts);
    const user = runAsOwnerOf(facts.dataDirectory);
    const state = statePaths(options.stateDir);

    makeDir(repository, user, 0o750);
    makeDir(path.dirname(configFile), null, 0o755);
    for (const dir of [state.lock, state.log, state.spool]) makeDir(dir, user, 0o750);
    writePrivateFile(
      configFile,
      renderConfig({
        repoPath: repository,
        cipherPass: key.pass,
        keyId: key.keyId,
        retentionDays: config.replicaRetentionDays,
        state,
        pg: {
          path: facts.dataDirectory,
          port: facts.port,
          socketPath: facts.socketDirectory,
          // pgBackRest connects over the socket as the cluster's OS user (peer authentication).
          user: user ?? os.userInfo().username,
          database: 'postgres',
        },
      }),
      user,
    );

    const changes = settingChanges(facts, { configFile, sync: config.replicaSync });
    const applied: SettingChange[] = [];
    let waitingForReceiver = false;
    if (options.apply === true) {
      for (const change of changes) {
        // A synchronous standby that is not there would hold every commit.
        if (change.name === 'synchronous_standby_names' && !facts.receiverConnected) {
          waitingForReceiver = true;
          continue;
        }
        await client.query(change.sql);
        applied.push(change);
      }
      if (applied.length > 0) await client.query('select pg_reload_conf()');
      // The reload is asynchronous: read the settings again once it has been seen.
      await new Promise((r) => setTimeout(r, 300));
      facts = await readServerFacts(client);
    } else if (config.replicaSync && !facts.receiverConnected) waitingForReceiver = true;
    const remaining = settingChanges(facts, { configFile, sync: config.replicaSync });
    const restartNeeded =
      facts.pendingRestart.some((n) => n === 'wal_level' || n === 'archive_mode') ||
      remaining.some((c) => c.restart);

    const ctx: PgBackRestContext = { configFile, user, secret: key.pass };
    await pgbackrest(ctx, 'stanza-create', [], 120_000);
    let checked = false;
    if (!restartNeeded && !remaining.some((c) => c.name === 'archive_command')) {
      await pgbackrest(ctx, 'check', [], 120_000);
      checked = true;
    }
    return {
      configFile,
      repository,
      keyId: key.keyId,
      changes,
      applied,
      restartNeeded,
      waitingForReceiver,
      checked,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}
