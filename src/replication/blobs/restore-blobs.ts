// Brings the files back after a disaster: every blob the restored database points at is copied
// from the blob replica to a fresh file store, each one checked on the way as the vault checks a
// download (length, every chunk's tag under its data key, the plaintext's SHA-256 as the
// database records it). Blobs missing on the replica or failing a check are named by ids only.
import { BlobIntegrityError } from '../../blobs/blob-crypto.js';
import { BlobNotFoundError, type BlobStore } from '../../blobs/blob-store.js';
import { openBlobStore, type BlobStoreOptions } from '../../blobs/index.js';
import { MasterKeyError, type Keyring } from '../../blobs/master-key.js';
import { safeError } from '../../log.js';
import {
  liveBlobsPage,
  type BlobOwner,
  type LiveBlob,
  type LiveCursor,
} from '../../store/blob-replica.store.js';
import type { Tx } from '../../store/tables.js';
import { TargetStoreError, copyVerified } from './verified-copy.js';

/** One blob that could not be restored: ids only (never a filename or a patient's name). */
export type BlobProblem = BlobOwner & { blobKey: string; reason: string };

export interface RestoreBlobsReport {
  /** Blobs written to the target store (each verified on the way). */
  copied: number;
  /** Blobs whose checks passed (equal to `copied`, unless only verifying). */
  verified: number;
  /** Blobs the replica does not hold. */
  missing: number;
  /** Blobs the replica holds damaged (or whose data key the keyring cannot unwrap). */
  bad: number;
  /** The first LIST_LIMIT missing and bad blobs. */
  missingBlobs: BlobProblem[];
  badBlobs: BlobProblem[];
}

const LIST_LIMIT = 1000;

export interface RestoreBlobsOptions {
  /** The blob replica (CARETRAIL_BLOB_REPLICA_URL), or a store already open. */
  from: string | BlobStore;
  /** The fresh file store (CARETRAIL_BLOB_URL); null only verifies the replica, writing nothing. */
  to: string | BlobStore | null;
  /** The restored database (a Database's `read`, or any Kysely over its schema). */
  db: Tx | { read: Tx };
  /** The master keyring the database's data keys are wrapped with. */
  keyring: Keyring;
  /** S3 credentials for URLs given (else the usual AWS_* variables). */
  storeOptions?: Pick<BlobStoreOptions, 's3Credentials'>;
  /** Blobs copied at once (default 4). */
  concurrency?: number;
  /** Told after each blob, with the running report (for progress output). */
  onProgress?: (report: Readonly<RestoreBlobsReport>) => void;
}

/**
 * Copies every blob the database references from the replica to the target, verifying each.
 * A store error (the target is full, the replica unreachable) stops it with that error: run it
 * again once fixed (it starts over; copies are idempotent). Never throws for a missing or
 * damaged blob: those are counted and listed.
 */
export async function restoreBlobs(options: RestoreBlobsOptions): Promise<RestoreBlobsReport> {
  const db: Tx = 'read' in options.db ? options.db.read : options.db;
  const storeOptions = options.storeOptions ?? {};
  const from =
    typeof options.from === 'string' ? openBlobStore(options.from, storeOptions) : options.from;
  const to = typeof options.to === 'string' ? openBlobStore(options.to, storeOptions) : options.to;
  const report: RestoreBlobsReport = {
    copied: 0,
    verified: 0,
    missing: 0,
    bad: 0,
    missingBlobs: [],
    badBlobs: [],
  };

  async function restoreOne(blob: LiveBlob): Promise<void> {
    const problem = (reason: string): BlobProblem => ({
      ...blob.owner,
      blobKey: blob.ref.blobKey,
      reason,
    });
    try {
      // The replica holds every blob in one tier, whatever the database says.
      await copyVerified({ from, to, ref: blob.ref, keyring: options.keyring, tier: 'hot' });
      if (to) report.copied += 1;
      report.verified += 1;
    } catch (err) {
      if (err instanceof BlobNotFoundError) {
        report.missing += 1;
        if (report.missingBlobs.length < LIST_LIMIT)
          report.missingBlobs.push(problem('not on the replica'));
      } else if (err instanceof BlobIntegrityError || err instanceof MasterKeyError) {
        report.bad += 1;
        if (report.badBlobs.length < LIST_LIMIT)
          report.badBlobs.push(problem(String(safeError(err).message)));
      } else if (err instanceof TargetStoreError) {
        throw new Error(
          `writing to the target file store failed: ${String(safeError(err.reason).message)}`,
        );
      } else {
        throw new Error(`reading the replica failed: ${String(safeError(err).message)}`);
      }
    }
    options.onProgress?.(report);
  }

  try {
    let cursor: LiveCursor | null = null;
    const width = Math.max(1, options.concurrency ?? 4);
    do {
      const page = await liveBlobsPage(db, cursor, 200);
      let next = 0;
      let failed = false;
      const worker = async () => {
        while (!failed && next < page.blobs.length) {
          const blob = page.blobs[next];
          next += 1;
          if (blob)
            await restoreOne(blob).catch((err: unknown) => {
              failed = true;
              throw err;
            });
        }
      };
      // Every worker stops before the stores close; the first error is the answer.
      const outcomes = await Promise.allSettled(Array.from({ length: width }, worker));
      const rejected = outcomes.find((o) => o.status === 'rejected');
      if (rejected) throw rejected.reason;
      cursor = page.next;
    } while (cursor !== null);
    return report;
  } finally {
    if (typeof options.from === 'string') await from.close();
    if (typeof options.to === 'string') await to?.close();
  }
}
