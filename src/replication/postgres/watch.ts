// A serving instance's view of PostgreSQL replication (the part "database" of the replication
// monitor: /readyz, the Backups page), and in synchronous mode its write gate.
//
// Once a second it asks the server what pg_stat_archiver and pg_stat_replication say: whether
// archiving fails, how old the newest unarchived WAL may be (the lag), and, with
// CARETRAIL_REPLICA_SYNC, whether the WAL receiver is connected as synchronous standby. It needs
// no access to the repository (the server may run elsewhere) and no privilege beyond what any
// role can read; without pg_read_all_stats (pg_monitor) the receiver's sync state is unknown and
// taken as connected.
//
// Synchronous mode: while synchronous_standby_names names the receiver, PostgreSQL holds every
// commit until the receiver has flushed its WAL, without a time limit. So while the receiver is
// away, writes are refused before they start (503, nothing written), and a write that was
// already under way when it went away (committing, or waiting for the locks a committing one
// holds) is answered 503 too, after WAITING_COMMIT_MS: it is not acknowledged; it completes on
// the server when the receiver is back, and a retry with the same Idempotency-Key then returns
// its outcome.
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { AppError } from '../../domain/errors.js';
import type { Database } from '../../store/database.js';
import { partState, type ReplicaPartStatus, type ReplicationMonitor } from '../index.js';
import { RECEIVER_NAME } from './server-settings.js';
import { WAL_SEGMENT_BYTES, parseWalName, segNoOfLsn } from './wal-names.js';

const POLL_MS = 1000;
/** How long a commit may wait for the receiver, once it is known to be away, before a 503. */
export const WAITING_COMMIT_MS = 2000;

export interface PgWatchStatus {
  engine: 'postgres';
  mode: 'async' | 'sync';
  /**
   * Seconds of writes the replica may lack: with the synchronous receiver in step, its flush
   * lag (the spool holds the newest WAL); else how old the newest WAL not in the repository may
   * be (an upper bound). null until first read.
   */
  lagSeconds: number | null;
  /** How old the newest WAL not in the repository may be (archive_timeout bounds it). */
  archiveLagSeconds: number | null;
  lastArchivedWal: string | null;
  lastArchivedAt: string | null;
  /** Sync mode: whether the WAL receiver is connected (null: async, or not read yet). */
  receiverConnected: boolean | null;
  receiverSyncState: string | null;
  /** Commits answered 503 so far because the receiver was away while they waited. */
  unconfirmedCommits: number;
  lastError: string | null;
  checkedAt: string | null;
}

export interface PgReplicationWatch {
  status(): PgWatchStatus;
  /** For openDatabase({ writeGate }): refuses writes while the synchronous receiver is away. */
  writeGate(): Error | null;
  /** For openDatabase({ awaitCommit }): a commit held for the absent receiver becomes a 503. */
  awaitCommit<T>(commit: Promise<T>): Promise<T>;
  /** Reads the server's state now (the timer does this every second). */
  check(): Promise<void>;
  attach(db: Database, monitor: ReplicationMonitor): void;
  start(): void;
  stop(): void;
}

interface ServerRow {
  lsn: string;
  last_archived_wal: string | null;
  last_archived_time: Date | null;
  last_failed_wal: string | null;
  last_failed_time: Date | null;
  archive_timeout: string;
  standby_names: string;
  receiver_pid: number | null;
  sync_state: string | null;
  flush_lag: number | null;
}

const receiverAway = () =>
  new AppError(
    'unavailable',
    'Synchronous replication is on and the WAL receiver is not connected: no write is accepted until it is back. Nothing was saved; try again shortly.',
    { retryAfterSeconds: 5 },
  );

const unconfirmed = () =>
  new AppError(
    'unavailable',
    'The WAL receiver went away while this write was in progress: it is not acknowledged, and it completes on the database server once the receiver is back. Retry with the same Idempotency-Key to get its outcome.',
    { retryAfterSeconds: 5 },
  );

export function watchPostgresReplication(
  config: Pick<Config, 'replicaSync'>,
  log: Logger,
): PgReplicationWatch {
  const sync = config.replicaSync;
  let db: Database | null = null;
  let timer: NodeJS.Timeout | null = null;
  let checking: Promise<void> | null = null;
  /** Whether commits wait for the receiver now (synchronous_standby_names names it). */
  let commitsWait = false;
  let lastLogged: string | null = null;
  const state: PgWatchStatus = {
    engine: 'postgres',
    mode: sync ? 'sync' : 'async',
    lagSeconds: null,
    archiveLagSeconds: null,
    lastArchivedWal: null,
    lastArchivedAt: null,
    receiverConnected: null,
    receiverSyncState: null,
    unconfirmedCommits: 0,
    lastError: null,
    checkedAt: null,
  };

  const gateClosed = () => sync && commitsWait && state.receiverConnected === false;

  async function read(): Promise<void> {
    if (!db) return;
    const now = new Date();
    let row: ServerRow | undefined;
    try {
      ({
        rows: [row],
      } = await sql<ServerRow>`
        select pg_current_wal_lsn()::text as lsn,
               a.last_archived_wal, a.last_archived_time, a.last_failed_wal, a.last_failed_time,
               current_setting('archive_timeout') as archive_timeout,
               current_setting('synchronous_standby_names') as standby_names,
               r.pid as receiver_pid, r.sync_state, r.flush_lag
          from pg_stat_archiver a
          left join lateral (
            select pid, sync_state, extract(epoch from flush_lag)::float8 as flush_lag
              from pg_stat_replication
             where application_name = ${RECEIVER_NAME}
             order by sync_state = 'sync' desc limit 1
          ) r on true`.execute(db.read));
    } catch {
      // The database itself is away: its own errors answer the requests; keep the last view.
      state.lastError = 'cannot read the replication state from the database server';
      state.checkedAt = now.toISOString();
      return;
    }
    if (!row) return;
    const problems: string[] = [];
    const archivedAt = row.last_archived_time;
    state.lastArchivedWal = row.last_archived_wal;
    state.lastArchivedAt = archivedAt?.toISOString() ?? null;
    if (row.last_failed_time !== null && (archivedAt === null || row.last_failed_time > archivedAt))
      problems.push(
        `archiving is failing: PostgreSQL could not archive ${row.last_failed_wal ?? 'a segment'} (see its log)`,
      );
    const archived = row.last_archived_wal === null ? null : parseWalName(row.last_archived_wal);
    if (archived === null || archivedAt === null) {
      state.archiveLagSeconds = null;
      problems.push('PostgreSQL has archived no WAL yet: run caretrail replicate setup');
    } else {
      const current = segNoOfLsn(row.lsn);
      const offset = parseInt(row.lsn.split('/')[1] ?? '0', 16) % WAL_SEGMENT_BYTES;
      const since = Math.max(0, (now.getTime() - archivedAt.getTime()) / 1000);
      const timeout = parseArchiveTimeout(row.archive_timeout);
      // As `replicate status` (status.ts) computes it: finished segments not archived yet make
      // the lag the time since the newest arrived; the segment being written holds at most
      // archive_timeout's worth.
      if (current > archived.segNo + 1) state.archiveLagSeconds = since;
      else if (current === archived.segNo + 1 && offset > 0)
        state.archiveLagSeconds = timeout > 0 ? Math.min(since, timeout) : since;
      else state.archiveLagSeconds = 0;
    }
    state.lagSeconds = state.archiveLagSeconds;
    if (sync) {
      commitsWait = row.standby_names.includes(RECEIVER_NAME);
      state.receiverConnected = row.receiver_pid !== null;
      state.receiverSyncState = row.sync_state;
      if (!commitsWait)
        problems.push(
          'synchronous mode is not in force: synchronous_standby_names does not name the WAL receiver (run caretrail replicate setup --apply once it runs)',
        );
      if (!state.receiverConnected)
        problems.push(
          'the WAL receiver is not connected: writes are refused until it is back (run caretrail replicate receive)',
        );
      else if (row.sync_state !== null && row.sync_state !== 'sync')
        problems.push(`the WAL receiver is connected but ${row.sync_state}, not sync`);
      else if (commitsWait) state.lagSeconds = row.flush_lag ?? 0;
    }
    state.lastError = problems.length > 0 ? problems.join('; ') : null;
    state.checkedAt = now.toISOString();
    if (state.lastError !== lastLogged) {
      lastLogged = state.lastError;
      if (state.lastError !== null) log.error(`replication: ${state.lastError}`);
      else log.info('replication: the database replica is in step again');
    }
  }

  const check = (): Promise<void> => {
    checking ??= read().finally(() => {
      checking = null;
    });
    return checking;
  };

  return {
    status: () => ({ ...state }),
    check,
    writeGate: () => (gateClosed() ? receiverAway() : null),
    awaitCommit<T>(commit: Promise<T>): Promise<T> {
      if (!sync) return commit;
      return new Promise<T>((resolve, reject) => {
        let awaySince: number | null = null;
        const poll = setInterval(() => {
          if (!gateClosed()) {
            awaySince = null;
            return;
          }
          awaySince ??= Date.now();
          if (Date.now() - awaySince < WAITING_COMMIT_MS) return;
          clearInterval(poll);
          state.unconfirmedCommits += 1;
          reject(unconfirmed());
        }, 100);
        commit.then(
          (value) => {
            clearInterval(poll);
            resolve(value);
          },
          (err: unknown) => {
            clearInterval(poll);
            reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
      });
    },
    attach(database, monitor) {
      db = database;
      monitor.register('database', (): ReplicaPartStatus => {
        const lag = state.lagSeconds ?? 0;
        return {
          state: state.checkedAt === null ? 'ok' : partState(lag, state.lastError),
          lagSeconds: lag,
          lastError: state.lastError,
          details: { ...state },
        };
      });
    },
    start() {
      if (timer) return;
      void check();
      timer = setInterval(() => void check(), POLL_MS);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}

/** archive_timeout as current_setting shows it ("1s", "60s", "1min", "0"), in seconds. */
function parseArchiveTimeout(value: string): number {
  const m = /^(\d+)\s*(ms|s|min|h)?$/.exec(value.trim());
  if (!m) return 0;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'ms':
      return n / 1000;
    case 'min':
      return n * 60;
    case 'h':
      return n * 3600;
    default:
      return n;
  }
}
