// Shipping anchors: the outbox handler of `audit.anchor` items (queued with each checkpoint), the
// shipping status for status pages, and its report to the replication monitor (/readyz).
import type { Logger } from 'pino';
import type { Keyring } from '../../blobs/master-key.js';
import type { Clock } from '../../domain/clock.js';
import { PermanentFailure, type OutboxHandler } from '../../jobs/outbox-relay.js';
import { topicProgress } from '../../store/outbox.store.js';
import type { Database } from '../../store/database.js';
import type { Tx } from '../../store/tables.js';
import { ReplicaUnavailableError, type ReplicaDestination } from '../destination.js';
import { partState, type ReplicaPartStatus, type ReplicationMonitor } from '../index.js';
import { anchorName, asCheckpoint, sealAnchor } from './format.js';

/**
 * Anchors are retried for as long as the replica stays away (doubling from
 * CARETRAIL_DELIVERY_BACKOFF_MS up to five minutes), never dead-lettered for a mere outage.
 */
export const ANCHOR_RETRY = { maxAttempts: Number.POSITIVE_INFINITY, maxBackoffMs: 5 * 60_000 };

/**
 * The `audit.anchor` outbox handler: seals the checkpoint and puts it on the replica. Without a
 * replica (a database restored where none is configured yet) the anchors queued before are given
 * up with that reason.
 */
export function createAnchorHandler(
  destination: ReplicaDestination | null,
  keyring: Keyring,
): OutboxHandler {
  return {
    kind: 'io',
    retry: ANCHOR_RETRY,
    run: async (payload) => {
      const checkpoint = asCheckpoint(payload);
      if (!checkpoint) throw new PermanentFailure('the anchor item is not a checkpoint');
      if (!destination)
        throw new PermanentFailure(
          `CARETRAIL_REPLICA_URL is not set: the anchor of checkpoint ${String(checkpoint.seq)} is not shipped`,
        );
      try {
        // The same name and content on a retry: shipping twice is harmless.
        await destination.put(anchorName(checkpoint), sealAnchor(keyring, checkpoint));
      } catch (err) {
        if (err instanceof ReplicaUnavailableError) throw err;
        const code = (err as { code?: unknown }).code;
        throw new Error(
          `could not write anchor ${String(checkpoint.seq)} to the replica at ${destination.description}` +
            (typeof code === 'string' ? ` (${code})` : ''),
        );
      }
    },
  };
}

export interface AnchorShippingStatus {
  /** The anchor shipped last, as the outbox recorded it. */
  newest: { seq: number; createdAt: string; shippedAt: string } | null;
  /** Anchors waiting to be shipped (queued, or retrying after a failure). */
  pending: number;
  /** When the oldest waiting anchor was queued (null: none waits). */
  oldestPendingSince: string | null;
  /** Anchors given up on (not a checkpoint): an operator should look. */
  failed: number;
  /** The oldest waiting anchor's last failure, or null when it has not failed. */
  lastError: { message: string; attempts: number; nextAttemptAt: string } | null;
}

/** Newest anchor shipped, pending anchors and the last error: for status pages. */
export async function anchorShippingStatus(db: Tx): Promise<AnchorShippingStatus> {
  const progress = await topicProgress(db, 'audit.anchor');
  const done = progress.newestDone;
  const checkpoint = done ? asCheckpoint(JSON.parse(done.payload)) : null;
  const waiting = progress.oldestPending;
  return {
    newest:
      done && checkpoint
        ? {
            seq: checkpoint.seq,
            createdAt: checkpoint.createdAt,
            shippedAt: done.done_at ?? done.created_at,
          }
        : null,
    pending: progress.pending,
    oldestPendingSince: waiting?.created_at ?? null,
    failed: progress.dead,
    lastError:
      waiting?.last_error != null
        ? {
            message: waiting.last_error,
            attempts: waiting.attempts,
            nextAttemptAt: waiting.available_at,
          }
        : null,
  };
}

/** The part's name among the replication monitor's (the Backups page, /readyz). */
export const ANCHORS_PART = 'audit anchors';

/**
 * Reports anchor shipping to the server's replication monitor: read from the outbox every
 * `intervalMs` (the monitor asks synchronously), unreachable while the oldest waiting anchor's
 * last attempt failed, behind while one has waited longer than BEHIND_AFTER_SECONDS.
 */
export function watchAnchors(
  deps: { db: Database; clock: Clock; log: Logger },
  monitor: ReplicationMonitor,
  intervalMs = 5000,
): { refresh(): Promise<void>; stop(): void } {
  let current: ReplicaPartStatus = { state: 'ok', lagSeconds: 0, lastError: null, details: {} };
  let failedBefore = false;
  monitor.register(ANCHORS_PART, () => current);
  const refresh = async () => {
    try {
      const s = await anchorShippingStatus(deps.db.read);
      const lagSeconds =
        s.oldestPendingSince === null
          ? 0
          : Math.max(0, (deps.clock.now().getTime() - Date.parse(s.oldestPendingSince)) / 1000);
      const lastError = s.lastError?.message ?? null;
      current = {
        state: partState(lagSeconds, lastError),
        lagSeconds,
        lastError,
        details: { ...s },
      };
      failedBefore = false;
    } catch (err) {
      // The database is the primary's own: its failures are reported elsewhere; keep the last figures.
      if (!failedBefore) deps.log.warn({ err }, "cannot read the audit anchors' status");
      failedBefore = true;
    }
  };
  const timer = setInterval(() => void refresh(), intervalMs);
  timer.unref();
  void refresh();
  return {
    refresh,
    stop() {
      clearInterval(timer);
    },
  };
}
