// Where file bodies live: a local folder or any S3 API, behind one interface. Stores only ever
// see encrypted bytes (see blob-crypto.ts); they know nothing of documents or patients.
import type { Readable } from 'node:stream';
import { AppError } from '../domain/errors.js';

/** Hot blobs are read any time; archived ones may need a retrieval first (S3 Glacier classes). */
export type BlobTier = 'hot' | 'archive';

export interface ByteRange {
  /** Inclusive offsets. */
  start: number;
  end: number;
}

export type Retrieval = { ready: true } | { ready: false; retryAfterSeconds: number };

export interface BlobStore {
  readonly kind: 'file' | 's3';
  /** A description without credentials, for logs and health output. */
  readonly description: string;
  /** How long reading an archived blob may have to wait for a retrieval (0: immediate). */
  readonly archiveDelaySeconds: number;
  /**
   * Stores `body` under `key` and resolves once it is durable (fsync'd, or acknowledged by S3).
   * When `body` fails or is cut off, nothing is left under `key` and temporary data is removed.
   */
  put(key: string, body: Readable): Promise<{ bytes: number }>;
  /** Reads the blob (or one byte range of it) from the tier the database recorded. */
  get(key: string, tier: BlobTier, range?: ByteRange): Promise<Readable>;
  /** Moves a blob to the archive tier. Idempotent: archiving an archived blob does nothing. */
  archive(key: string): Promise<void>;
  /** Whether an archived blob can be read now; starts a retrieval when the tier needs one. */
  prepareRead(key: string, tier: BlobTier): Promise<Retrieval>;
  /** Removes the blob from every tier. Idempotent. Only retention purges call this. */
  delete(key: string): Promise<void>;
  /** Throws when the store cannot be reached (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class BlobNotFoundError extends Error {
  constructor(key: string) {
    super(`blob ${key} is missing from the file store`);
    this.name = 'BlobNotFoundError';
  }
}

export const storeUnavailable = (): AppError =>
  new AppError(
    'unavailable',
    'The file store is not reachable right now; nothing was changed. Try again in a minute.',
    { retryAfterSeconds: 30 },
  );

export const storeFull = (): AppError =>
  new AppError(
    'insufficient_storage',
    'The file store is full; nothing was changed. Ask an operator to free space, then try again.',
  );
