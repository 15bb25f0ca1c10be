// Copies one encrypted blob from one store to another as it is (ciphertext in, the same
// ciphertext out: the target never sees plaintext), checking it on the way: its length must be
// the recorded size's encrypted length, every chunk must authenticate under the blob's data key,
// and the plaintext's SHA-256 must be the recorded one. A blob that fails any check is not left
// on the target (the store's put removes a body that fails).
import { createHash } from 'node:crypto';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { BlobIntegrityError, DecryptStream, encryptedSize } from '../../blobs/blob-crypto.js';
import type { BlobStore, BlobTier } from '../../blobs/blob-store.js';
import type { CipherPool } from '../../blobs/cipher-pool.js';
import type { Keyring } from '../../blobs/master-key.js';
import type { BlobRef } from '../../blobs/vault.js';

/** Writing to the target store failed (unreachable, full, refused); the source was fine so far. */
export class TargetStoreError extends Error {
  constructor(readonly reason: unknown) {
    super(reason instanceof Error ? reason.message : String(reason));
    this.name = 'TargetStoreError';
  }
}

export interface CopyResult {
  /** Encrypted bytes copied. */
  bytes: number;
  /** SHA-256 (hex) of the encrypted bytes copied. */
  sha256: string;
}

/**
 * Passes the encrypted bytes through unchanged while a DecryptStream beside it authenticates
 * every chunk and checks the plaintext's SHA-256; the stream only ends once that check passed,
 * so a store that takes it as a body keeps it only when it is whole and right.
 */
class VerifyingPassThrough extends Transform {
  private readonly decrypt: DecryptStream;
  private readonly hash = createHash('sha256');
  private readonly expected: number;
  bytes = 0;
  digest = '';
  /** Why the blob failed its checks, if it did. */
  failure: Error | null = null;

  constructor(ref: BlobRef, key: Buffer, pool: CipherPool | null) {
    super({ highWaterMark: 1024 * 1024 });
    this.expected = encryptedSize(ref.size, ref.chunkBytes);
    this.decrypt = new DecryptStream({
      key,
      blobKey: ref.blobKey,
      size: ref.size,
      chunkBytes: ref.chunkBytes,
      sha256: ref.sha256,
      withHeader: true,
      ...(pool ? { lane: (hash: boolean) => pool.lane(key, ref.blobKey, hash) } : {}),
    });
    // The plaintext is only checked, never kept.
    this.decrypt.resume();
    this.decrypt.once('error', (err) => {
      this.fail(err);
    });
  }

  private fail(err: Error): void {
    if (this.destroyed) return;
    this.failure ??= err;
    this.destroy(err);
  }

  override _transform(data: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += data.length;
    if (this.bytes > this.expected) {
      this.failure ??= new BlobIntegrityError(
        `the stored blob is longer than recorded (more than ${this.expected} bytes)`,
      );
      callback(this.failure);
      return;
    }
    this.hash.update(data);
    this.push(data);
    if (this.decrypt.write(data)) callback();
    else
      this.decrypt.once('drain', () => {
        callback();
      });
  }

  override _flush(callback: TransformCallback): void {
    if (this.bytes !== this.expected) {
      this.failure ??= new BlobIntegrityError(
        `the stored blob is ${this.bytes} bytes, ${this.expected} were recorded`,
      );
      callback(this.failure);
      return;
    }
    this.decrypt.end();
    finished(this.decrypt).then(
      () => {
        this.digest = this.hash.digest('hex');
        callback();
      },
      (err: unknown) => {
        // Destroyed from outside (the target failed): that is not the blob's fault.
        if (!this.destroyed) this.failure ??= err as Error;
        callback(err as Error);
      },
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.decrypt.destroy();
    callback(err);
  }
}

/**
 * Copies `ref`'s encrypted blob from `from` to `to` (or only checks it when `to` is null),
 * verified as above. Throws BlobNotFoundError when `from` has no such blob, BlobIntegrityError
 * when it fails a check, MasterKeyError when its data key cannot be unwrapped, `from`'s own
 * errors when reading fails, and TargetStoreError when writing to `to` fails.
 */
export async function copyVerified(options: {
  from: BlobStore;
  to: BlobStore | null;
  ref: BlobRef;
  keyring: Keyring;
  pool?: CipherPool | null;
  /** Where to read from in `from` (the tier its row records; a replica holds everything hot). */
  tier?: BlobTier;
}): Promise<CopyResult> {
  const { ref } = options;
  const key = options.keyring.unwrap({ keyId: ref.keyId, wrapped: ref.wrapped }, ref.blobKey);
  const source: Readable = await options.from.get(ref.blobKey, options.tier ?? ref.tier);
  const verify = new VerifyingPassThrough(ref, key, options.pool ?? null);
  let sourceError: Error | null = null;
  source.once('error', (err) => {
    sourceError = err;
    // As the vault does: a source that fails mid-way fails the body, so nothing is kept.
    verify.destroy(err);
  });
  try {
    if (options.to) {
      source.pipe(verify);
      try {
        await options.to.put(ref.blobKey, verify);
      } catch (err) {
        throw verify.failure ?? sourceError ?? new TargetStoreError(err);
      }
      if (verify.failure) throw verify.failure;
    } else {
      await pipeline(
        source,
        verify,
        new Writable({
          write(_chunk, _enc, done) {
            done();
          },
        }),
      );
    }
  } catch (err) {
    throw verify.failure ?? err;
  } finally {
    source.destroy();
    verify.destroy();
  }
  return { bytes: verify.bytes, sha256: verify.digest };
}
