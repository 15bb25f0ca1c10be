// Keeps the blob replica (CARETRAIL_BLOB_REPLICA_URL) in step with the rows that point at blobs:
// called inside the unit of work that commits such a row, so a copy is queued if and only if
// the row is committed (at least once, through the outbox; src/replication/blobs/).
import { markBlobPurged, trackStoredBlob } from '../../store/blob-replica.store.js';
import type { Tx } from '../../store/tables.js';
import type { ServiceDeps } from '../../services/deps.js';

const replicating = (deps: Pick<ServiceDeps, 'settings'>): boolean =>
  deps.settings.blobReplicaUrl !== '';

/**
 * A committed row now points at `blobKey` (content, thumbnail, result file): copy it, unless
 * `copied` says it is on the replica already (synchronous mode copies before the commit).
 */
export async function replicateBlob(
  deps: Pick<ServiceDeps, 'settings'>,
  tx: Tx,
  now: Date,
  blobKey: string,
  copied?: { bytes: number; sha256: string },
): Promise<void> {
  // Replication off: nothing is tracked; the start-up backfill finds the blob once it is on.
  if (!replicating(deps)) return;
  await trackStoredBlob(tx, now, blobKey, copied ? { queue: false, copied } : { queue: true });
}

/** A retention purge removed `blobKey` for good: its replica copy goes too (and only then). */
export async function purgeReplicaCopy(
  deps: Pick<ServiceDeps, 'settings'>,
  tx: Tx,
  now: Date,
  blobKey: string,
): Promise<void> {
  await markBlobPurged(tx, now, blobKey, { queue: replicating(deps) });
}
