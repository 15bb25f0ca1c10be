// `caretrail replicate backup` on PostgreSQL: a pgBackRest backup into the repository (full, or
// incremental on top of the last one), then pgBackRest's own expiry by the retention window.
// Meant to run from a timer (docs/DISASTER-RECOVERY.md ("PostgreSQL")); WAL archiving fills the time in between.
import path from 'node:path';
import type { Config } from '../../config.js';
import { PgReplicationError } from './errors.js';
import {
  DEFAULT_CONFIG_FILE,
  pgbackrest,
  readConfigFile,
  stanzaInfo,
  type PgBackRestContext,
} from './pgbackrest.js';
import { runAsOwnerOf } from './run.js';
import { repositoryPath } from './setup.js';

export type PgBackupType = 'full' | 'diff' | 'incr';

export interface PgBackupReport {
  label: string;
  /** pgBackRest turns an incremental into a full one when there is nothing to build on. */
  type: PgBackupType;
  startedAt: string;
  stoppedAt: string;
  durationSeconds: number;
  sizeBytes: number;
  repositoryBytes: number;
  /** Backups kept after expiry. */
  backups: number;
}

/** The pgBackRest context of the configuration file setup wrote. */
export function configuredContext(
  config: Config,
  configFile = DEFAULT_CONFIG_FILE,
): PgBackRestContext {
  const file = path.resolve(configFile);
  const { options } = readConfigFile(file);
  const repository = repositoryPath(config.replicaUrl);
  if (options.get('repo1-path') !== repository)
    throw new PgReplicationError(
      `${file} names another repository than CARETRAIL_REPLICA_URL: run caretrail replicate setup`,
    );
  return {
    configFile: file,
    user: runAsOwnerOf(file),
    secret: options.get('repo1-cipher-pass') ?? '',
  };
}

export async function pgBackup(
  config: Config,
  options: { type?: PgBackupType; configFile?: string } = {},
): Promise<PgBackupReport> {
  const type = options.type ?? 'incr';
  if (!['full', 'diff', 'incr'].includes(type))
    throw new PgReplicationError('the backup type must be full, diff or incr');
  const ctx = configuredContext(config, options.configFile);
  const before = new Set((await stanzaInfo(ctx)).backups.map((b) => b.label));
  await pgbackrest(ctx, 'backup', [`--type=${type}`]);
  const info = await stanzaInfo(ctx);
  const made = info.backups.filter((b) => !before.has(b.label)).pop();
  if (!made)
    throw new PgReplicationError('pgbackrest backup reported success but no new backup is listed');
  return {
    label: made.label,
    type: made.type,
    startedAt: made.startedAt.toISOString(),
    stoppedAt: made.stoppedAt.toISOString(),
    durationSeconds: (made.stoppedAt.getTime() - made.startedAt.getTime()) / 1000,
    sizeBytes: made.sizeBytes,
    repositoryBytes: made.repositoryBytes,
    backups: info.backups.length,
  };
}
