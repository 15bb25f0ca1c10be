// The blob replicator of a serving instance: the outbox handlers that copy a blob to the replica
// store (`blob.replicate`) and delete a purged one there (`blob.replica.delete`), the start-up
// backfill of blobs stored while replication was off, the feeder that queues the backlog a
// bounded number of jobs at a time, and the lag it reports.
import type { Logger } from 'pino';
import { BlobIntegrityError } from '../../blobs/blob-crypto.js';
import { BlobNotFoundError, type BlobStore } from '../../blobs/blob-store.js';
import { MasterKeyError } from '../../blobs/master-key.js';
import type { Vault } from '../../blobs/vault.js';
import type { Clock } from '../../domain/clock.js';
import { AppError } from '../../domain/errors.js';
import { PermanentFailure, type OutboxHandler } from '../../jobs/outbox-relay.js';
import { safeError } from '../../log.js';
import {
  REPLICA_DELETE_TOPIC,
  REPLICATE_TOPIC,
  findBlobReplica,
  findLiveBlob,
  liveBlobsPage,
  markRemoved,
  markReplicated,
  queueBacklog,
  recordReplicaError,
  releaseDeadJobs,
  replicaCounts,
  requeueReplicaDelete,
  retryFailed,
  trackStoredBlob,
  trackedAmong,
  type LiveCursor,
} from '../../store/blob-replica.store.js';
import type { Database } from '../../store/database.js';
import type { Tx } from '../../store/tables.js';
import { TargetStoreError, copyVerified } from './verified-copy.js';

export interface BlobReplicationStatus {
  /** CARETRAIL_BLOB_REPLICA_URL is set (this instance copies). */
  enabled: boolean;
  /** The replica store, without credentials; null when off. */
  replica: string | null;
  /** Blobs not yet on the replica (including those being retried). */
  pending: number;
  /** How long the oldest of them has waited (0 when none does). */
  oldestPendingSeconds: number;
  /** When the last copy was verified on the replica. */
  lastReplicatedAt: string | null;
  /** The latest error of a copy or deletion still to do; null once everything caught up. */
  lastError: string | null;
  lastErrorAt: string | null;
  /** Blobs the file store itself holds damaged or not at all: they cannot be copied. */
  failed: number;
  /** Purged blobs still to delete on the replica. */
  removalsPending: number;
  /** True when a copy has waited longer than the threshold, or a blob cannot be copied. */
  behind: boolean;
}

export interface BlobReplicationSettings {
  /** Backlog jobs in the outbox at once, so a backfill never holds other work back. */
  maxQueued?: number;
  /** Rows read per backfill page. */
  backfillBatch?: number;
  /** How often the backlog and dead jobs are looked at besides after each job. */
  sweepIntervalMs?: number;
  /**
   * Longest delay between two tries while the replica is down (the first is the relay's
   * CARETRAIL_DELIVERY_BACKOFF_MS, doubling): also how long recovery may take once it is back.
   */
  retryMaxBackoffMs?: number;
  /** `behind` once the oldest pending copy waited this long. */
  behindAfterSeconds?: number;
}

const DEFAULTS = {
  maxQueued: 32,
  backfillBatch: 500,
  sweepIntervalMs: 60_000,
  retryMaxBackoffMs: 5 * 60_000,
  behindAfterSeconds: 15 * 60,
} satisfies Required<BlobReplicationSettings>;

/**
 * The replication lag from the database alone (works without a running server, e.g. for
 * `caretrail replicate status`).
 */
export async function blobReplicationStatus(
  db: Tx,
  now: Date,
  options: { enabled: boolean; replica: string | null; behindAfterSeconds?: number },
): Promise<BlobReplicationStatus> {
  const counts = await replicaCounts(db);
  const waitedMs = counts.oldestPendingAt
    ? Math.max(0, now.getTime() - Date.parse(counts.oldestPendingAt))
    : 0;
  const limit = options.behindAfterSeconds ?? DEFAULTS.behindAfterSeconds;
  return {
    enabled: options.enabled,
    replica: options.replica,
    pending: counts.pending,
    oldestPendingSeconds: Math.floor(waitedMs / 1000),
    lastReplicatedAt: counts.lastReplicatedAt,
    lastError: counts.lastError?.message ?? null,
    lastErrorAt: counts.lastError?.at ?? null,
    failed: counts.failed,
    removalsPending: counts.purging,
    behind: options.enabled && (counts.failed > 0 || waitedMs > limit * 1000),
  };
}

/** What went wrong, in words an operator can act on; never a path, a name or file content. */
function describeFailure(err: unknown): { message: string; permanent: boolean } {
  const text = (e: unknown): string => {
    const message = safeError(e).message;
    return typeof message === 'string' ? message : 'unknown error';
  };
  if (err instanceof BlobNotFoundError)
    return { message: 'the file store has no copy of this blob', permanent: true };
  if (err instanceof BlobIntegrityError)
    return { message: `the file store's copy is damaged: ${text(err)}`, permanent: true };
  if (err instanceof MasterKeyError)
    return { message: `its data key cannot be unwrapped: ${text(err)}`, permanent: true };
  if (err instanceof TargetStoreError) {
    const reason = err.reason;
    if (reason instanceof AppError && reason.code === 'unavailable')
      return { message: 'the replica store is not reachable', permanent: false };
    if (reason instanceof AppError && reason.code === 'insufficient_storage')
      return { message: 'the replica store is full', permanent: false };
    return { message: `the replica store failed: ${text(reason)}`, permanent: false };
  }
  if (err instanceof AppError && err.code === 'unavailable')
    return { message: 'the file store is not reachable', permanent: false };
  return { message: text(err), permanent: false };
}

function blobKeyOf(payload: unknown): string {
  const key = (payload as { key?: unknown } | null)?.key;
  if (typeof key !== 'string' || key === '') throw new PermanentFailure('no blob key in the job');
  return key;
}

export interface BlobReplicator {
  readonly replica: BlobStore;
  readonly handlers: {
    [REPLICATE_TOPIC]: OutboxHandler;
    [REPLICA_DELETE_TOPIC]: OutboxHandler;
  };
  status(): Promise<BlobReplicationStatus>;
  /** Tracks every live blob the table does not know yet (bounded pages); returns how many. */
  backfill(): Promise<number>;
  /** Releases dead jobs and queues backlog rows up to the bound; returns how many it queued. */
  sweep(): Promise<number>;
  /** Start-up work (failed rows retried, backfill, sweep) then a sweep every interval. */
  start(): void;
  stop(): Promise<void>;
}

export function createBlobReplicator(
  deps: {
    db: Database;
    clock: Clock;
    log: Logger;
    vault: Vault;
    replica: BlobStore;
    /** Called after jobs were queued outside a request (the relay's kick). */
    onQueued?: () => void;
  },
  settings: BlobReplicationSettings = {},
): BlobReplicator {
  const { db, clock, log, vault, replica } = deps;
  const s = { ...DEFAULTS, ...settings };
  const retry = { maxAttempts: Infinity, maxBackoffMs: s.retryMaxBackoffMs };
  let backlog = false;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let started = false;
  let backfilled = false;
  let sweeping: Promise<void> | null = null;
  /** Pokes so far: a poke during a sweep runs another sweep after it. */
  let pokes = 0;
  let startup: Promise<void> | null = null;

  const iso = () => clock.now().toISOString();
  const isStopped = () => stopped;

  async function replicate(payload: unknown): Promise<void> {
    const key = blobKeyOf(payload);
    const row = await findBlobReplica(db.read, key);
    // Copied already (a job that ran twice), or purged meanwhile (its deletion job handles it).
    if (!row || row.state !== 'pending') return;
    const found = await findLiveBlob(db.read, key);
    if (!('live' in found)) {
      // Purged before it was copied: nothing to keep, and no stray copy may stay behind.
      await replica.delete(key);
      await db.write((tx) => markRemoved(tx, key, iso()));
      return;
    }
    const { ref, owner } = found.live;
    const ready = await vault.store.prepareRead(key, ref.tier);
    if (!ready.ready) {
      const message = `the file is in the archive tier; it is copied once its retrieval is done (about ${ready.retryAfterSeconds} s)`;
      await db.write((tx) => recordReplicaError(tx, key, iso(), message, false));
      throw new Error(message);
    }
    let copy;
    try {
      copy = await copyVerified({
        from: vault.store,
        to: replica,
        ref,
        keyring: vault.keyring,
        pool: vault.pool,
      });
    } catch (err) {
      const { message, permanent } = describeFailure(err);
      await db.write((tx) => recordReplicaError(tx, key, iso(), message, permanent));
      if (permanent) {
        // Ids only: which blob of which document or result, never its name or content.
        log.error(
          { blobKey: key, ...owner, problem: message },
          'a file cannot be replicated: the file store itself lacks it or holds it damaged',
        );
        throw new PermanentFailure(message);
      }
      throw new Error(message);
    }
    const at = iso();
    const requeued = await db.write(async (tx) => {
      if (await markReplicated(tx, key, at, copy)) return false;
      // A retention purge came while copying; its deletion may have run before this copy
      // landed, so delete again, after it.
      const current = await findBlobReplica(tx, key);
      if (current?.state !== 'purging' && current?.state !== 'removed') return false;
      await requeueReplicaDelete(tx, clock.now(), key);
      return true;
    });
    if (requeued) deps.onQueued?.();
    if (backlog) poke();
  }

  async function removePurged(payload: unknown): Promise<void> {
    const key = blobKeyOf(payload);
    try {
      await replica.delete(key);
    } catch (err) {
      const { message } = describeFailure(new TargetStoreError(err));
      await db.write((tx) => recordReplicaError(tx, key, iso(), message, false));
      throw new Error(message);
    }
    await db.write((tx) => markRemoved(tx, key, iso()));
    if (backlog) poke();
  }

  async function backfill(): Promise<number> {
    let cursor: LiveCursor | null = null;
    let added = 0;
    do {
      const page = await liveBlobsPage(db.read, cursor, s.backfillBatch);
      const known = await trackedAmong(
        db.read,
        page.blobs.map((b) => b.ref.blobKey),
      );
      const missing = page.blobs.filter((b) => !known.has(b.ref.blobKey));
      if (missing.length > 0) {
        added += await db.write(async (tx) => {
          let n = 0;
          const now = clock.now();
          for (const b of missing)
            if (
              await trackStoredBlob(tx, now, b.ref.blobKey, { storedAt: b.createdAt, queue: false })
            )
              n += 1;
          return n;
        });
      }
      cursor = page.next;
    } while (cursor !== null && !stopped);
    if (added > 0)
      log.info(
        { blobs: added },
        'blob replication: files stored earlier are queued for the replica',
      );
    return added;
  }

  async function sweep(): Promise<number> {
    const released = await db.write((tx) => releaseDeadJobs(tx));
    if (released > 0)
      log.warn({ blobs: released }, 'blob replication: jobs given up earlier are queued again');
    const { queued, more } = await db.write((tx) => queueBacklog(tx, clock.now(), s.maxQueued));
    backlog = more;
    if (queued > 0) deps.onQueued?.();
    return queued;
  }

  /** Runs a sweep soon (one at a time; a poke during one runs another after it). */
  function poke(): void {
    if (stopped) return;
    pokes += 1;
    if (sweeping) return;
    sweeping = (async () => {
      for (;;) {
        const seen = pokes;
        await sweep();
        if (pokes === seen || isStopped()) return;
      }
    })()
      .catch((err: unknown) => {
        log.warn({ err }, 'blob replication: queueing the backlog failed; tried again shortly');
      })
      .finally(() => {
        sweeping = null;
      });
  }

  async function startupWork(): Promise<void> {
    const retried = await db.write((tx) => retryFailed(tx));
    if (retried > 0)
      log.info({ blobs: retried }, 'blob replication: failed copies are tried again');
    await backfill();
    backfilled = true;
    poke();
  }

  function runStartup(): void {
    startup = startupWork()
      .catch((err: unknown) => {
        log.warn(
          { err },
          'blob replication: the start-up backfill failed; it resumes on the next sweep',
        );
      })
      .finally(() => {
        startup = null;
      });
  }

  return {
    replica,
    handlers: {
      [REPLICATE_TOPIC]: { kind: 'io', retry, run: replicate },
      [REPLICA_DELETE_TOPIC]: { kind: 'io', retry, run: removePurged },
    },
    status: () =>
      blobReplicationStatus(db.read, clock.now(), {
        enabled: true,
        replica: replica.description,
        behindAfterSeconds: s.behindAfterSeconds,
      }),
    backfill,
    sweep,
    start() {
      if (started || stopped) return;
      started = true;
      runStartup();
      timer = setInterval(() => {
        if (!backfilled && !startup) runStartup();
        else poke();
      }, s.sweepIntervalMs);
      timer.unref();
    },
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await startup;
      await sweeping;
    },
  };
}

export { DEFAULTS as BLOB_REPLICATION_DEFAULTS };
