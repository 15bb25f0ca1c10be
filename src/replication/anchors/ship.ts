// Shipping anchors: the outbox handler of `audit.anchor` items (queued with each checkpoint) and
// the shipping status for status pages.
import type { Keyring } from '../../blobs/master-key.js';
import { PermanentFailure, type OutboxHandler } from '../../jobs/outbox-relay.js';
import { topicProgress } from '../../store/outbox.store.js';
import type { Tx } from '../../store/tables.js';
import { ReplicaUnavailableError, type ReplicaDestination } from '../destination.js';
import { anchorName, asCheckpoint, sealAnchor } from './format.js';

/**
 * Anchors are retried for as long as the replica stays away (doubling from
 * CARETRAIL_DELIVERY_BACKOFF_MS up to five minutes), never dead-lettered for a mere outage.
 */
export const ANCHOR_RETRY = { maxAttempts: Number.POSITIVE_INFINITY, maxBackoffMs: 5 * 60_000 };

/** The `audit.anchor` outbox handler: seals the checkpoint and puts it on the replica. */
export function createAnchorHandler(
  destination: ReplicaDestination,
  keyring: Keyring,
): OutboxHandler {
  return {
    kind: 'io',
    retry: ANCHOR_RETRY,
    run: async (payload) => {
      const checkpoint = asCheckpoint(payload);
      if (!checkpoint) throw new PermanentFailure('the anchor item is not a checkpoint');
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
  /** Anchors given up on (not a checkpoint): an operator should look. */
  failed: number;
  /** The oldest waiting anchor's last failure, or null when none is failing. */
  lastError: { message: string; attempts: number; nextAttemptAt: string } | null;
}

/** Newest anchor shipped, pending anchors and the last error: for status pages. */
export async function anchorShippingStatus(db: Tx): Promise<AnchorShippingStatus> {
  const progress = await topicProgress(db, 'audit.anchor');
  const done = progress.newestDone;
  const checkpoint = done ? asCheckpoint(JSON.parse(done.payload)) : null;
  const failing = progress.failing;
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
    failed: progress.dead,
    lastError:
      failing?.last_error != null
        ? {
            message: failing.last_error,
            attempts: failing.attempts,
            nextAttemptAt: failing.available_at,
          }
        : null,
  };
}
