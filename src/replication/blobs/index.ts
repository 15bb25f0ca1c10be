// Blob replication (issue 17, part 2): every stored blob (document versions, their thumbnails,
// files of results) is copied to a second blob store, CARETRAIL_BLOB_REPLICA_URL (a folder or
// an S3 bucket), so the files survive the loss of the first.
//
// README
// - What is copied: the encrypted bytes exactly as the file store holds them (the vault's
//   chunked AES-256-GCM; data keys stay wrapped in the database), so the replica never holds
//   plaintext, and a replica alone opens nothing. Each copy is checked on the way: length, every
//   chunk's tag, the plaintext's SHA-256 as recorded (verified-copy.ts).
// - At least once: the unit of work that commits a row pointing at a blob also inserts its
//   blob_replicas row and a `blob.replicate` outbox job (src/replication/blobs/track.ts). The
//   relay retries a failed copy forever (backoff up to 5 minutes): a replica outage loses
//   nothing, the lag grows and is reported, and copying resumes by itself.
// - Deletions: only a retention purge deletes on the replica (`blob.replica.delete`, queued in
//   the purge's unit); soft deletes, the archive tier and failed uploads never do.
// - Backfill: at start-up every live blob without a row gets one; such backlog rows are queued a
//   bounded number at a time (replicator.ts), so other outbox work is never held back.
// - Lag: status() / blobReplicationStatus() → pending, oldestPendingSeconds, lastReplicatedAt,
//   lastError (for `caretrail replicate status`, /readyz and the admin page); registered with
//   the server's ReplicationMonitor as the part "files".
// - Restore: restoreBlobs() copies every blob a restored database references from the replica to
//   a fresh store, verifying each, and names missing and damaged ones by ids.
import type { Logger } from 'pino';
import { openBlobStore, type BlobStoreOptions } from '../../blobs/index.js';
import type { BlobRef, Vault } from '../../blobs/vault.js';
import { AppError } from '../../domain/errors.js';
import type { Clock } from '../../domain/clock.js';
import type { OutboxHandler } from '../../jobs/outbox-relay.js';
import type { Database } from '../../store/database.js';
import type { OutboxTopic } from '../../store/outbox.store.js';
import type { ReplicaPartStatus, ReplicationMonitor } from '../index.js';
import {
  blobReplicationStatus,
  createBlobReplicator,
  type BlobReplicationSettings,
  type BlobReplicationStatus,
} from './replicator.js';

export { blobReplicationStatus, type BlobReplicationSettings, type BlobReplicationStatus };
export {
  restoreBlobs,
  type BlobProblem,
  type RestoreBlobsOptions,
  type RestoreBlobsReport,
} from './restore-blobs.js';
import { copyVerified, TargetStoreError, type CopyResult } from './verified-copy.js';

export { copyVerified, TargetStoreError, type CopyResult };

export interface BlobReplication {
  /** Whether CARETRAIL_BLOB_REPLICA_URL is set. */
  readonly enabled: boolean;
  /** The replica store without credentials; null when off. */
  readonly replica: string | null;
  /** Outbox handlers to register with the relay (none when off). */
  readonly handlers: Partial<Record<OutboxTopic, OutboxHandler>>;
  /** The lag: pending, oldestPendingSeconds, lastReplicatedAt, lastError, … */
  status(): Promise<BlobReplicationStatus>;
  /** Tracks live blobs stored while replication was off; returns how many (0 when off). */
  backfill(): Promise<number>;
  /** Queues backlog rows (bounded) and re-queues given-up jobs; returns how many it queued. */
  sweep(): Promise<number>;
  /** Start-up backfill, then a sweep every minute (a serving instance). */
  start(): void;
  /**
   * Copies a blob just stored, before the row pointing at it commits (synchronous mode: an
   * upload is acknowledged only once its bytes are on the replica too). Verified as the relay's
   * copies are; a replica that fails is an AppError 'unavailable' (503), nothing kept.
   */
  copyNow(ref: BlobRef): Promise<CopyResult>;
  /** Removes such a copy again when its row did not commit (the upload failed after all). */
  dropCopy(blobKey: string): Promise<void>;
  /** Stops the sweeps and closes the replica store. */
  close(): Promise<void>;
}

/** How often the status the monitor shows (synchronously) is read again from the database. */
const MONITOR_REFRESH_MS = 1000;

/** The replication monitor's view of the files (/readyz, the Backups page). */
export function filesPartStatus(s: BlobReplicationStatus | null): ReplicaPartStatus {
  if (s === null)
    return { state: 'ok', lagSeconds: 0, lastError: null, details: { checking: true } };
  const state: ReplicaPartStatus['state'] =
    s.failed > 0 ? 'behind' : s.lastError !== null ? 'unreachable' : s.behind ? 'behind' : 'ok';
  return { state, lagSeconds: s.oldestPendingSeconds, lastError: s.lastError, details: { ...s } };
}

/**
 * The blob replication of a server: off (status only) when `url` is empty. Refuses a replica
 * that is the file store itself. With a `monitor`, registers the part "files" there.
 */
export function openBlobReplication(
  deps: {
    db: Database;
    clock: Clock;
    log: Logger;
    vault: Vault;
    onQueued?: () => void;
    monitor?: ReplicationMonitor;
  },
  options: {
    url: string;
    storeOptions?: Pick<BlobStoreOptions, 's3Credentials'>;
    settings?: BlobReplicationSettings;
  },
): BlobReplication {
  if (options.url === '') {
    return {
      enabled: false,
      replica: null,
      handlers: {},
      status: () =>
        blobReplicationStatus(deps.db.read, deps.clock.now(), { enabled: false, replica: null }),
      backfill: () => Promise.resolve(0),
      sweep: () => Promise.resolve(0),
      start: () => undefined,
      copyNow: () => Promise.reject(new Error('blob replication is off')),
      dropCopy: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
  }
  const replica = openBlobStore(options.url, options.storeOptions ?? {});
  if (replica.description === deps.vault.store.description) {
    void replica.close();
    throw new Error(
      'CARETRAIL_BLOB_REPLICA_URL names the file store itself (CARETRAIL_BLOB_URL); the replica must be another folder or bucket.',
    );
  }
  const replicator = createBlobReplicator({ ...deps, replica }, options.settings);
  // The monitor asks synchronously: it gets the last status read, refreshed in the background.
  let latest: { status: BlobReplicationStatus; at: number } | null = null;
  let refreshing: Promise<void> | null = null;
  let closed = false;
  let timer: NodeJS.Timeout | null = null;
  const refresh = (): void => {
    if (closed || refreshing) return;
    refreshing = replicator
      .status()
      .then((status) => {
        latest = { status, at: Date.now() };
      })
      .catch((err: unknown) => {
        deps.log.warn({ err }, 'blob replication: cannot read its status');
      })
      .finally(() => {
        refreshing = null;
      });
  };
  deps.monitor?.register('files', () => {
    if (!latest || Date.now() - latest.at > MONITOR_REFRESH_MS) refresh();
    return filesPartStatus(latest?.status ?? null);
  });
  return {
    enabled: true,
    replica: replica.description,
    handlers: replicator.handlers,
    status: () => replicator.status(),
    backfill: () => replicator.backfill(),
    sweep: () => replicator.sweep(),
    async copyNow(ref) {
      try {
        return await copyVerified({
          from: deps.vault.store,
          to: replica,
          ref,
          keyring: deps.vault.keyring,
          pool: deps.vault.pool,
        });
      } catch (err) {
        if (err instanceof TargetStoreError)
          throw new AppError(
            'unavailable',
            'Synchronous replication is on and the replica file store cannot take this file now: nothing was saved. Try again shortly.',
            { retryAfterSeconds: 5 },
          );
        throw err;
      }
    },
    dropCopy: (blobKey) => replica.delete(blobKey),
    start: () => {
      replicator.start();
      if (deps.monitor && !timer) {
        refresh();
        timer = setInterval(refresh, MONITOR_REFRESH_MS);
        timer.unref();
      }
    },
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await refreshing;
      await replicator.stop();
      await replica.close();
    },
  };
}
