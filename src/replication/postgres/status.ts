// `caretrail replicate status` on PostgreSQL (and the admin page): what the repository holds
// (backups, the newest archived WAL and when it arrived), how far the server is ahead of it, the
// WAL receiver when replication is synchronous, and every problem found, as a plain object.
// It never throws for a problem it can describe: those go to `errors`.
import path from 'node:path';
import type { Config } from '../../config.js';
import { PgReplicationError } from './errors.js';
import {
  DEFAULT_CONFIG_FILE,
  readConfigFile,
  stanzaInfo,
  type PgBackRestContext,
  type StanzaInfo,
} from './pgbackrest.js';
import { runAsOwnerOf } from './run.js';
import { RECEIVER_NAME, connect, readServerFacts, settingChanges } from './server-settings.js';
import { checkPostgresUrl, repositoryPath } from './setup.js';
import { WAL_SEGMENT_BYTES, listArchivedWal, missingSegments, segNoOfLsn } from './wal-names.js';

export interface PgReplicationStatus {
  engine: 'postgres';
  repository: string;
  configFile: string;
  retentionDays: number;
  synchronous: boolean;
  lastBackupAt: string | null;
  lastBackup: {
    label: string;
    type: string;
    sizeBytes: number;
    repositoryBytes: number;
    durationSeconds: number;
  } | null;
  backups: number;
  /** The earliest moment a restore can reach (the oldest backup's end, within retention). */
  earliestRestorableAt: string | null;
  /** When the newest WAL segment arrived in the repository. */
  lastArchivedAt: string | null;
  lastArchivedWal: string | null;
  /**
   * Seconds of writes the repository may be missing: 0 when the server has written nothing
   * since the newest archived segment ended, else the time since that segment arrived (an upper
   * bound). null when the server cannot be asked.
   */
  lagSeconds: number | null;
  /** CARETRAIL_REPLICA_SYNC: the WAL receiver as the server sees it. */
  receiver: { connected: boolean; syncState: string | null; flushLagSeconds: number | null } | null;
  errors: string[];
}

/** A backup older than this makes restores replay too much WAL (RTO) and is reported. */
const STALE_BACKUP_HOURS = 48;

export async function pgReplicateStatus(
  config: Config,
  options: { configFile?: string; now?: Date } = {},
): Promise<PgReplicationStatus> {
  const now = options.now ?? new Date();
  const configFile = path.resolve(options.configFile ?? DEFAULT_CONFIG_FILE);
  const errors: string[] = [];
  const describe = (err: unknown) =>
    err instanceof PgReplicationError ? err.message : 'unexpected error (see the server log)';
  let repository = '';
  try {
    repository = repositoryPath(config.replicaUrl);
    checkPostgresUrl(config.databaseUrl);
  } catch (err) {
    errors.push(describe(err));
  }
  const status: PgReplicationStatus = {
    engine: 'postgres',
    repository: repository === '' ? '' : `file:${repository}`,
    configFile,
    retentionDays: config.replicaRetentionDays,
    synchronous: config.replicaSync,
    lastBackupAt: null,
    lastBackup: null,
    backups: 0,
    earliestRestorableAt: null,
    lastArchivedAt: null,
    lastArchivedWal: null,
    lagSeconds: null,
    receiver: null,
    errors,
  };
  if (repository === '') return status;

  // The repository, through pgBackRest (it holds the pass).
  let info: StanzaInfo | null = null;
  try {
    const { options: conf } = readConfigFile(configFile);
    if (conf.get('repo1-path') !== repository)
      errors.push(
        `${configFile} names another repository (${conf.get('repo1-path') ?? 'none'}): run caretrail replicate setup`,
      );
    const ctx: PgBackRestContext = {
      configFile,
      user: runAsOwnerOf(configFile),
      secret: conf.get('repo1-cipher-pass') ?? '',
    };
    info = await stanzaInfo(ctx);
    if (info.statusCode === 1)
      errors.push('the repository has no stanza yet: run caretrail replicate setup');
    else if (info.statusCode === 2 || info.backups.length === 0)
      errors.push('the repository holds no backup yet: run caretrail replicate backup');
    else if (info.statusCode !== 0 && info.statusCode !== 2)
      errors.push(`pgBackRest reports: ${info.statusMessage}`);
  } catch (err) {
    errors.push(describe(err));
  }
  const oldest = info?.backups[0];
  const newest = info?.backups[info.backups.length - 1];
  status.backups = info?.backups.length ?? 0;
  if (newest) {
    status.lastBackupAt = newest.stoppedAt.toISOString();
    status.lastBackup = {
      label: newest.label,
      type: newest.type,
      sizeBytes: newest.sizeBytes,
      repositoryBytes: newest.repositoryBytes,
      durationSeconds: (newest.stoppedAt.getTime() - newest.startedAt.getTime()) / 1000,
    };
    const ageHours = (now.getTime() - newest.stoppedAt.getTime()) / 3_600_000;
    if (ageHours > STALE_BACKUP_HOURS)
      errors.push(
        `the newest backup is ${Math.floor(ageHours)} hours old: a restore replays all WAL since (run caretrail replicate backup daily)`,
      );
  }
  if (oldest) {
    const windowStart = now.getTime() - config.replicaRetentionDays * 86_400_000;
    // Backup times are whole seconds: the backup is consistent within the second after.
    status.earliestRestorableAt = new Date(
      Math.max(oldest.stoppedAt.getTime() + 1000, windowStart),
    ).toISOString();
  }
  const archived = listArchivedWal(repository);
  const last = archived[archived.length - 1];
  if (last) {
    status.lastArchivedAt = last.archivedAt.toISOString();
    status.lastArchivedWal = last.name;
  }
  const gaps = oldest ? missingSegments(archived, oldest.walStart) : [];
  if (gaps.length > 0)
    errors.push(
      `WAL missing from the repository: ${gaps.slice(0, 5).join(', ')}${gaps.length > 5 ? ` and ${gaps.length - 5} more` : ''} (restores stop before it)`,
    );

  // The server: how far ahead of the repository it is, and whether archiving works.
  let client;
  try {
    client = await connect(config.databaseUrl);
  } catch (err) {
    errors.push(describe(err));
    return status;
  }
  try {
    const facts = await readServerFacts(client);
    for (const change of settingChanges(facts, { configFile, sync: config.replicaSync }))
      errors.push(
        `${change.name} is ${JSON.stringify(change.current)}, wanted ${JSON.stringify(change.wanted)}: run caretrail replicate setup`,
      );
    const { rows } = await client.query<{
      lsn: string;
      last_archived_time: Date | null;
      last_failed_time: Date | null;
      last_failed_wal: string | null;
    }>(
      `select pg_current_wal_lsn()::text as lsn,
              last_archived_time, last_failed_time, last_failed_wal
         from pg_stat_archiver`,
    );
    const row = rows[0];
    if (row) {
      if (
        row.last_failed_time !== null &&
        (row.last_archived_time === null || row.last_failed_time > row.last_archived_time)
      )
        errors.push(
          `archiving is failing: PostgreSQL could not archive ${row.last_failed_wal ?? 'a segment'} at ${row.last_failed_time.toISOString()} (see its log)`,
        );
      if (last) {
        const current = segNoOfLsn(row.lsn);
        const offset = parseInt(row.lsn.split('/')[1] ?? '0', 16) % WAL_SEGMENT_BYTES;
        const sinceArchived = Math.max(0, (now.getTime() - last.archivedAt.getTime()) / 1000);
        const timeout = Number(facts.settings.archive_timeout);
        // Finished segments not in the repository yet: behind since the newest one arrived.
        if (current > last.segNo + 1) status.lagSeconds = sinceArchived;
        // Writing the segment after the newest archived one: archive_timeout finishes it, so
        // what it holds is at most that old (nothing when the server has not written into it).
        else if (current === last.segNo + 1 && offset > 0)
          status.lagSeconds = timeout > 0 ? Math.min(sinceArchived, timeout) : sinceArchived;
        else status.lagSeconds = 0;
      }
    }
    if (config.replicaSync) {
      const r = await client.query<{ sync_state: string; flush_lag: number | null }>(
        `select sync_state, extract(epoch from flush_lag)::float8 as flush_lag
           from pg_stat_replication where application_name = $1`,
        [RECEIVER_NAME],
      );
      const receiver = r.rows[0];
      status.receiver = {
        connected: receiver !== undefined,
        syncState: receiver?.sync_state ?? null,
        flushLagSeconds: receiver?.flush_lag ?? null,
      };
      if (!receiver)
        errors.push(
          'the WAL receiver is not connected: with synchronous_standby_names set, commits wait for it (run caretrail replicate receive)',
        );
      else if (receiver.sync_state !== 'sync')
        errors.push(`the WAL receiver is connected but ${receiver.sync_state}, not sync`);
    }
  } catch (err) {
    errors.push(describe(err));
  } finally {
    await client.end().catch(() => undefined);
  }
  return status;
}
