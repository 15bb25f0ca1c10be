// Encrypted blobs: the blob store plus the master keyring. Every blob gets its own data key,
// wrapped by the active master key; what a row needs to find and open its blob is a BlobRef.
import { randomUUID } from 'node:crypto';
import { finished, Readable } from 'node:stream';
import { AppError } from '../domain/errors.js';
import {
  BlobIntegrityError,
  DEFAULT_CHUNK_BYTES,
  DecryptStream,
  EncryptStream,
  cipherRangeFor,
  newDataKey,
} from './blob-crypto.js';
import type { BlobStore, BlobTier, Retrieval } from './blob-store.js';
import type { CipherPool } from './cipher-pool.js';
import type { Keyring, WrappedKey } from './master-key.js';

export interface BlobRef {
  blobKey: string;
  tier: BlobTier;
  size: number;
  sha256: string;
  chunkBytes: number;
  keyId: string;
  wrapped: string;
}

export interface StoredBlob extends BlobRef {
  /** The first bytes of the plaintext, for content sniffing. */
  head: Buffer;
}

/**
 * Resolves once `stream` has its first bytes ready (or ended), rejecting if it failed first: a
 * corrupt or unreachable blob is then an error answer, not a response cut off after its headers.
 */
export function primed(stream: Readable): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      stream.off('readable', onReadable);
      stream.off('error', onError);
      if (err) reject(err);
      else resolve(stream);
    };
    const onReadable = () => {
      done();
    };
    const onError = (err: Error) => {
      done(err);
    };
    stream.once('readable', onReadable);
    stream.once('error', onError);
  });
}

/**
 * The vault over `store`; with a `pool`, chunks are sealed, opened and hashed on its worker
 * threads (CARETRAIL_CIPHER_THREADS), else inline on the calling thread. Same bytes either way.
 */
export function createVault(store: BlobStore, keyring: Keyring, pool: CipherPool | null = null) {
  const dataKeyOf = (ref: Pick<BlobRef, 'blobKey' | 'keyId' | 'wrapped'>): Buffer =>
    keyring.unwrap({ keyId: ref.keyId, wrapped: ref.wrapped }, ref.blobKey);

  return {
    store,
    keyring,
    pool,

    /**
     * Encrypts and stores `source`, streaming. Resolves when durable; on any failure (the source
     * errors or exceeds `maxBytes`, the store fails) nothing is left behind.
     */
    async put(source: Readable, maxBytes: number): Promise<StoredBlob> {
      const blobKey = randomUUID();
      const dataKey = newDataKey();
      const encrypt = new EncryptStream(
        dataKey,
        blobKey,
        DEFAULT_CHUNK_BYTES,
        4100,
        {
          bytes: maxBytes,
          error: () =>
            new AppError(
              'payload_too_large',
              `The file is larger than the limit of ${maxBytes} bytes; nothing was stored.`,
            ),
        },
        pool?.lane(dataKey, blobKey, true) ?? null,
      );
      // An error, or a close before the end (a multipart part its reader gave up on), fails the
      // store: pipe() alone would leave it waiting for an end that never comes.
      const stopWatching = finished(source, { writable: false }, (err) => {
        if (err) encrypt.destroy(err);
      });
      source.pipe(encrypt);
      try {
        await store.put(blobKey, encrypt);
      } catch (err) {
        source.unpipe(encrypt);
        // The store's own verdict (full, unreachable) first; else what broke the stream.
        if (err instanceof AppError) throw err;
        throw encrypt.errored ?? err;
      } finally {
        stopWatching();
      }
      const summary = encrypt.summary();
      const wrapped = keyring.wrap(dataKey, blobKey);
      return {
        blobKey,
        tier: 'hot',
        size: summary.size,
        sha256: summary.sha256,
        chunkBytes: DEFAULT_CHUNK_BYTES,
        keyId: wrapped.keyId,
        wrapped: wrapped.wrapped,
        head: summary.head,
      };
    },

    putBuffer(data: Buffer): Promise<StoredBlob> {
      return this.put(Readable.from([data]), data.length);
    },

    prepareRead(ref: BlobRef): Promise<Retrieval> {
      return store.prepareRead(ref.blobKey, ref.tier);
    },

    /**
     * The plaintext of the blob, or of bytes `start..end` (inclusive). Every chunk is
     * authenticated before it is emitted; a whole read also checks the SHA-256 at the end.
     */
    async open(ref: BlobRef, range?: { start: number; end: number }): Promise<Readable> {
      const key = dataKeyOf(ref);
      const options = {
        key,
        blobKey: ref.blobKey,
        size: ref.size,
        chunkBytes: ref.chunkBytes,
        sha256: ref.sha256,
        ...(pool ? { lane: (hash: boolean) => pool.lane(key, ref.blobKey, hash) } : {}),
      };
      const raw = range
        ? await store.get(
            ref.blobKey,
            ref.tier,
            (() => {
              const cipher = cipherRangeFor(ref.size, range.start, range.end, ref.chunkBytes);
              return { start: cipher.start, end: cipher.end };
            })(),
          )
        : await store.get(ref.blobKey, ref.tier);
      const out = new DecryptStream(
        range ? { ...options, ...range, withHeader: false } : { ...options, withHeader: true },
      );
      // The two live and die together: a store stream that fails mid-way (S3 drops the
      // connection) fails the download, and a download that ends early (the client went away,
      // a chunk failed) releases the file descriptor or the S3 socket.
      raw.once('error', (err) => out.destroy(err));
      out.once('close', () => raw.destroy());
      // With a cipher pool, chunks are opened ahead of the reader, so a damaged later chunk can
      // fail the stream before its consumer (the HTTP reply, after the audit append) listens.
      // The error then stays on the stream (`errored`, seen by whoever pipes it next) instead of
      // being thrown as an unhandled 'error' event that would stop the process.
      out.on('error', () => undefined);
      return raw.pipe(out);
    },

    /** The whole plaintext in memory: only for small blobs (thumbnails, previews under a limit). */
    async read(ref: BlobRef): Promise<Buffer> {
      const stream = await this.open(ref);
      const parts: Buffer[] = [];
      for await (const part of stream) parts.push(part as Buffer);
      return Buffer.concat(parts);
    },

    /** Stops the cipher pool's threads (the store is closed by its owner). */
    async close(): Promise<void> {
      await pool?.close();
    },

    /** The data key of `ref` wrapped again under the active master key. */
    rewrap(ref: Pick<BlobRef, 'blobKey' | 'keyId' | 'wrapped'>): WrappedKey {
      return keyring.wrap(dataKeyOf(ref), ref.blobKey);
    },

    wrapSecret(secret: Buffer, context: string): WrappedKey {
      return keyring.wrap(secret, context);
    },

    unwrapSecret(key: WrappedKey, context: string): Buffer {
      return keyring.unwrap(key, context);
    },
  };
}

export type Vault = ReturnType<typeof createVault>;

export function isIntegrityError(err: unknown): boolean {
  return err instanceof BlobIntegrityError;
}
