// Disaster recovery: continuous off-site replication (CARETRAIL_REPLICA_URL), restore, drills.
//
//   destination.ts        where replicas go: a folder on another disk, or an S3 bucket and prefix
//   sealed.ts             every object is AES-256-GCM sealed under the master keyring, name bound in
//   wal.ts                reads SQLite's write-ahead log as its recovery does
//   sqlite-replicator.ts  ships the log's committed frames and snapshots (SQLite, in the server)
//   restore.ts            rebuilds a SQLite database from the replica, to the latest state or --at
//   postgres/             pgBackRest: configuration, backups, WAL archive, point-in-time restore
//   blobs/                files copied to CARETRAIL_BLOB_REPLICA_URL through the outbox, restored
//   anchors/              signed audit checkpoints on the replica, `audit verify --replica`
//   backups.service.ts    the admin Backups page's answer (GET /api/v1/admin/backups)
//   cli.ts, drill.ts      `replicate status`, `restore`, `dr drill` (drill-workload.ts: both drills)
//
// This file wires replication into a running server and reports its health: `/readyz` says
// "degraded" when a replica falls behind or cannot be reached, and the admin Backups page and
// `caretrail replicate status` show the figures. Each part (the database, the files) registers a
// status function with the monitor.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Keyring } from '../blobs/master-key.js';
import type { Config } from '../config.js';
import type { Database, OpenOptions } from '../store/database.js';
import { openReplicaDestination } from './destination.js';
import { createSqliteReplicator, type SqliteReplicator } from './sqlite-replicator.js';
import { watchPostgresReplication } from './postgres/watch.js';

/** Lag above which a replica counts as behind (asynchronous mode ships every 250 ms). */
export const BEHIND_AFTER_SECONDS = 5;

export interface ReplicaPartStatus {
  /** 'ok', 'behind' (lag above BEHIND_AFTER_SECONDS), 'unreachable' (the last attempt failed). */
  state: 'ok' | 'behind' | 'unreachable';
  lagSeconds: number;
  lastError: string | null;
  /** Everything else the part reports (shown as is on the Backups page and by the CLI). */
  details: Record<string, unknown>;
}

export interface ReplicationMonitor {
  register(part: string, status: () => ReplicaPartStatus): void;
  /** Every registered part's status (an empty object: replication is off). */
  parts(): Record<string, ReplicaPartStatus>;
  /** For /readyz: 'off', 'ok', or 'degraded' (some part behind or unreachable). */
  health(): 'off' | 'ok' | 'degraded';
}

export function createReplicationMonitor(): ReplicationMonitor {
  const parts = new Map<string, () => ReplicaPartStatus>();
  const all = () => Object.fromEntries([...parts].map(([name, status]) => [name, status()]));
  return {
    register(part, status) {
      parts.set(part, status);
    },
    parts: all,
    health() {
      if (parts.size === 0) return 'off';
      return Object.values(all()).every((p) => p.state === 'ok') ? 'ok' : 'degraded';
    },
  };
}

export function partState(
  lagSeconds: number,
  lastError: string | null,
): ReplicaPartStatus['state'] {
  if (lastError !== null) return 'unreachable';
  return lagSeconds > BEHIND_AFTER_SECONDS ? 'behind' : 'ok';
}

/** Where a serving SQLite instance writes its replication status for `caretrail replicate status`. */
export const STATUS_FILE = 'replication-status.json';

/**
 * The database's replication for a server, or null when CARETRAIL_REPLICA_URL is empty: open
 * the database with `openOptions`, then `attach` once it is open and migrated; `start` with the
 * server's jobs, `stop` when it closes. SQLite ships its own log (sqlite-replicator.ts);
 * PostgreSQL is replicated by its own tools and only watched here (postgres/watch.ts).
 */
export function databaseReplication(config: Config, log: Logger) {
  if (config.replicaUrl === '') return null;
  if (config.databaseUrl.startsWith('sqlite:')) return sqliteReplication(config, log);
  const watch = watchPostgresReplication(config, log);
  const openOptions: OpenOptions = {
    writeGate: () => watch.writeGate(),
    awaitCommit: (commit) => watch.awaitCommit(commit),
  };
  return {
    openOptions,
    attach(db: Database, _keyring: Keyring, monitor: ReplicationMonitor): void {
      watch.attach(db, monitor);
    },
    start(): Promise<void> {
      watch.start();
      log.info({ mode: config.replicaSync ? 'sync' : 'async' }, 'watching the database replica');
      return Promise.resolve();
    },
    stop(): Promise<void> {
      watch.stop();
      return Promise.resolve();
    },
  };
}

/**
 * SQLite database replication for a server: the database's hooks (open the database with
 * `openOptions`), then `attach` once it is open and migrated.
 */
export function sqliteReplication(config: Config, log: Logger) {
  let replicator: SqliteReplicator | null = null;
  let statusTimer: NodeJS.Timeout | null = null;
  const openOptions: OpenOptions = {
    checkpoints: 'caller',
    afterCommit: (raw, batch) => replicator?.afterCommit(raw, batch),
    writeGate: () => replicator?.writeGate() ?? null,
  };
  const statusFile = path.join(config.dataDir, STATUS_FILE);
  const writeStatus = () => {
    if (!replicator) return;
    const tmp = `${statusFile}.tmp`;
    try {
      fs.writeFileSync(
        tmp,
        JSON.stringify({ ...replicator.status(), writtenAt: new Date().toISOString() }),
      );
      fs.renameSync(tmp, statusFile);
    } catch (err) {
      log.warn({ code: (err as NodeJS.ErrnoException).code }, 'cannot write replication status');
    }
  };
  let lastLogged: string | null = null;
  return {
    openOptions,
    attach(db: Database, keyring: Keyring, monitor: ReplicationMonitor): SqliteReplicator {
      replicator = createSqliteReplicator({
        db,
        destination: openReplicaDestination(config.replicaUrl),
        keyring,
        sync: config.replicaSync,
        retentionMs: config.replicaRetentionDays * 24 * 3600_000,
        snapshotEveryMs: config.replicaSnapshotHours * 3600_000,
        onError: (err) => {
          // Once per distinct failure, not every 250 ms; messages name the replica, no data.
          if (err.message === lastLogged) return;
          lastLogged = err.message;
          log.error({ replica: config.replicaUrl.split('?')[0] }, `replication: ${err.message}`);
        },
      });
      const own = replicator;
      monitor.register('database', () => {
        const s = own.status();
        return {
          state: partState(s.lagSeconds, s.lastError),
          lagSeconds: s.lagSeconds,
          lastError: s.lastError,
          details: { ...s },
        };
      });
      return own;
    },
    async start(): Promise<void> {
      if (!replicator) return;
      await replicator.start();
      log.info(
        {
          replica: replicator.status().destination,
          mode: config.replicaSync ? 'sync' : 'async',
          retentionDays: config.replicaRetentionDays,
        },
        'replicating the database',
      );
      writeStatus();
      statusTimer = setInterval(writeStatus, 1000);
      statusTimer.unref();
    },
    async stop(): Promise<void> {
      if (statusTimer) clearInterval(statusTimer);
      statusTimer = null;
      await replicator?.stop();
      writeStatus();
    },
  };
}
