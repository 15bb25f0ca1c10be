// Encryption at rest for blobs: AES-256-GCM in fixed-size chunks, so that any byte range can be
// decrypted by reading only the chunks it covers, and every chunk is authenticated on its own.
//
// Layout of an encrypted blob:
//   header (16 bytes): "CTB1" | version 1 (u8) | 3 zero bytes | chunk size (u32 BE) | 4 zero bytes
//   chunk 0 … chunk n-1: ciphertext (chunk size bytes, the last one shorter) | GCM tag (16 bytes)
// The chunk size is recorded per blob (256 KiB for new ones): a range costs at most one chunk
// of extra reading at each end.
// The nonce of chunk i is its index (each blob has its own random data key, so nonces never
// repeat under one key). The additional data binds each chunk to its blob key, its index and
// whether it is the last one, so chunks cannot be reordered, swapped between blobs or cut off.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export const HEADER_BYTES = 16;
export const TAG_BYTES = 16;
export const DEFAULT_CHUNK_BYTES = 256 * 1024;
const MAGIC = Buffer.from('CTB1', 'ascii');
const VERSION = 1;

export class BlobIntegrityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlobIntegrityError';
  }
}

export function newDataKey(): Buffer {
  return randomBytes(32);
}

function header(chunkBytes: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt8(VERSION, 4);
  h.writeUInt32BE(chunkBytes, 8);
  return h;
}

function nonce(index: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(index), 4);
  return n;
}

function aad(blobKey: string, index: number, last: boolean): Buffer {
  const tail = Buffer.alloc(9);
  tail.writeBigUInt64BE(BigInt(index), 0);
  tail.writeUInt8(last ? 1 : 0, 8);
  return Buffer.concat([Buffer.from(blobKey, 'utf8'), tail]);
}

/** Decrypts and authenticates one sealed chunk (ciphertext then tag). */
export function openChunk(
  key: Buffer,
  blobKey: string,
  index: number,
  last: boolean,
  sealed: Buffer,
): Buffer {
  if (sealed.length < TAG_BYTES) throw new BlobIntegrityError(`chunk ${index} is truncated`);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce(index));
  decipher.setAAD(aad(blobKey, index, last));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([
      decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new BlobIntegrityError(`chunk ${index} failed authentication`);
  }
}

/** Encrypts one chunk: its ciphertext then its tag, in one buffer. */
export function sealChunk(
  key: Buffer,
  blobKey: string,
  index: number,
  last: boolean,
  plain: Uint8Array,
): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce(index));
  cipher.setAAD(aad(blobKey, index, last));
  const sealed = Buffer.allocUnsafeSlow(plain.length + TAG_BYTES);
  const body = cipher.update(plain);
  body.copy(sealed, 0);
  cipher.final();
  cipher.getAuthTag().copy(sealed, body.length);
  return sealed;
}

/**
 * Where a stream's chunks are sealed or opened and its plaintext hashed, off the event loop's
 * thread (one lane of the cipher pool, see cipher-pool.ts). Answers come in request order; the
 * lane hashes the plaintext of every chunk it sealed or opened, in that order, when asked to.
 */
export interface CipherLane {
  seal(index: number, last: boolean, plain: Buffer): Promise<Buffer>;
  open(index: number, last: boolean, sealed: Buffer): Promise<Buffer>;
  /** SHA-256 (hex) of the plaintext of every chunk before; the lane is done after it. */
  digest(): Promise<string>;
  /** Drops the lane (the stream failed or ended early); pending answers are discarded. */
  release(): void;
}

/** Chunks handed to a lane and not yet emitted, per stream: bounds its memory. */
export const LANE_IN_FLIGHT = 4;

/**
 * Emits the answers of a lane in order and holds the writer back while `max` chunks are in
 * flight. The first failure goes to `fail` (which destroys the stream).
 */
class InOrder {
  private tail: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private waiting: (() => void) | null = null;

  constructor(
    private readonly max: number,
    private readonly fail: (err: Error) => void,
  ) {}

  add(work: Promise<Buffer>, deliver: (out: Buffer) => void): void {
    this.inFlight += 1;
    work.catch(this.fail);
    this.tail = this.tail
      .then(() => work)
      .then((out) => {
        this.inFlight -= 1;
        deliver(out);
        const next = this.waiting;
        if (next && this.inFlight < this.max) {
          this.waiting = null;
          next();
        }
      });
    // Failures reach `fail` through `work`; the chain only carries them to `drained()`.
    this.tail.catch(() => undefined);
  }

  /** Runs `next` now when fewer than `max` chunks are in flight, else once one is emitted. */
  whenRoom(next: () => void): void {
    if (this.inFlight < this.max) next();
    else this.waiting = next;
  }

  /** Resolves once every chunk added so far was emitted. */
  drained(): Promise<void> {
    return this.tail;
  }
}

/** What the encrypting stream learned about the plaintext once it ended. */
export interface PlainSummary {
  size: number;
  sha256: string;
  /** The first bytes of the plaintext (content sniffing). */
  head: Buffer;
}

/**
 * Encrypts a plaintext stream into the blob layout. `summary()` is valid after the stream ends:
 * plaintext size, SHA-256 and first bytes.
 */
export class EncryptStream extends Transform {
  /** The chunk being filled; sealed when full and more data arrives (or at the end). */
  private chunk: Buffer;
  private fill = 0;
  private index = 0;
  private size = 0;
  private readonly hash = createHash('sha256');
  private head: Buffer | null = null;
  private readonly headParts: Buffer[] = [];
  private headLength = 0;
  private done: PlainSummary | null = null;
  private readonly ordered: InOrder | null;

  constructor(
    private readonly key: Buffer,
    private readonly blobKey: string,
    private readonly chunkBytes = DEFAULT_CHUNK_BYTES,
    private readonly headBytes = 4100,
    /** Fails the stream with `limit.error()` once more than `limit.bytes` came in. */
    private readonly limit: { bytes: number; error: () => Error } | null = null,
    /** Seal and hash on this lane (worker thread) rather than on the calling thread. */
    private readonly lane: CipherLane | null = null,
  ) {
    super({ readableHighWaterMark: 2 * chunkBytes, writableHighWaterMark: chunkBytes });
    // With a lane each chunk is handed over (transferred) whole, so each gets its own memory.
    this.chunk = lane ? Buffer.allocUnsafeSlow(chunkBytes) : Buffer.allocUnsafe(chunkBytes);
    this.ordered = lane
      ? new InOrder(LANE_IN_FLIGHT, (err) => {
          this.destroy(err);
        })
      : null;
    this.push(header(chunkBytes));
  }

  /** Seals the filled part of the chunk buffer; the cipher copies it, so the buffer is reused. */
  private seal(last: boolean): void {
    if (this.lane && this.ordered) {
      const index = this.index;
      this.index += 1;
      const plain = this.chunk.subarray(0, this.fill);
      this.chunk = Buffer.allocUnsafeSlow(this.chunkBytes);
      this.fill = 0;
      this.ordered.add(this.lane.seal(index, last, plain), (sealed) => this.push(sealed));
      return;
    }
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(this.index));
    cipher.setAAD(aad(this.blobKey, this.index, last));
    this.index += 1;
    this.push(cipher.update(this.chunk.subarray(0, this.fill)));
    cipher.final();
    this.push(cipher.getAuthTag());
    this.fill = 0;
  }

  override _transform(data: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.size += data.length;
    if (this.limit && this.size > this.limit.bytes) {
      callback(this.limit.error());
      return;
    }
    if (!this.lane) this.hash.update(data);
    if (this.headLength < this.headBytes) {
      const part = data.subarray(0, this.headBytes - this.headLength);
      this.headParts.push(Buffer.from(part));
      this.headLength += part.length;
    }
    let at = 0;
    while (at < data.length) {
      // A full chunk is sealed only once more data arrives: until the end we cannot know
      // whether it is the last one.
      if (this.fill === this.chunkBytes) this.seal(false);
      const n = data.copy(
        this.chunk,
        this.fill,
        at,
        Math.min(data.length, at + this.chunkBytes - this.fill),
      );
      this.fill += n;
      at += n;
    }
    if (this.ordered) this.ordered.whenRoom(callback);
    else callback();
  }

  override _flush(callback: TransformCallback): void {
    this.seal(true);
    this.head = Buffer.concat(this.headParts);
    const head = this.head;
    if (!this.lane || !this.ordered) {
      this.done = { size: this.size, sha256: this.hash.digest('hex'), head };
      callback();
      return;
    }
    const lane = this.lane;
    this.ordered
      .drained()
      .then(() => lane.digest())
      .then(
        (sha256) => {
          this.done = { size: this.size, sha256, head };
          callback();
        },
        (err: unknown) => {
          callback(err as Error);
        },
      );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.lane?.release();
    callback(err);
  }

  summary(): PlainSummary {
    if (!this.done) throw new Error('EncryptStream has not finished');
    return this.done;
  }
}

/** Encrypted size of a plaintext of `size` bytes. */
export function encryptedSize(size: number, chunkBytes = DEFAULT_CHUNK_BYTES): number {
  const chunks = Math.max(1, Math.ceil(size / chunkBytes));
  return HEADER_BYTES + size + chunks * TAG_BYTES;
}

/** The encrypted byte range holding plaintext bytes `start..end` (inclusive), chunk-aligned. */
export function cipherRangeFor(
  size: number,
  start: number,
  end: number,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): { start: number; end: number; firstChunk: number; lastChunk: number } {
  const chunks = Math.max(1, Math.ceil(size / chunkBytes));
  const firstChunk = Math.floor(start / chunkBytes);
  const lastChunk = Math.min(chunks - 1, Math.floor(end / chunkBytes));
  const stride = chunkBytes + TAG_BYTES;
  const lastPlain = Math.min(chunkBytes, size - lastChunk * chunkBytes);
  return {
    start: HEADER_BYTES + firstChunk * stride,
    end: HEADER_BYTES + lastChunk * stride + lastPlain + TAG_BYTES - 1,
    firstChunk,
    lastChunk,
  };
}

export interface DecryptOptions {
  key: Buffer;
  blobKey: string;
  /** Plaintext size of the whole blob. */
  size: number;
  chunkBytes: number;
  /** Plaintext range wanted (inclusive); the whole blob when omitted. */
  start?: number;
  end?: number;
  /** SHA-256 of the whole plaintext: checked at the end when the whole blob is read. */
  sha256?: string;
  /** The input starts at the blob's header (a whole-blob read) rather than at a chunk. */
  withHeader: boolean;
  /** Opens chunks (and hashes, when `hash`) on a lane of the cipher pool instead of inline. */
  lane?: (hash: boolean) => CipherLane;
}

/**
 * Decrypts the encrypted bytes of a range (as returned for `cipherRangeFor`, or the whole blob
 * with its header) into exactly the requested plaintext bytes. Any failed chunk, a short input,
 * or a SHA-256 mismatch ends the stream with a BlobIntegrityError: nothing unauthenticated is
 * ever emitted.
 */
export class DecryptStream extends Transform {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private headerLeft: number;
  private index: number;
  private readonly lastChunk: number;
  private readonly totalChunks: number;
  private readonly rangeStart: number;
  private readonly rangeEnd: number;
  private readonly hash;
  private readonly lane: CipherLane | null;
  private readonly ordered: InOrder | null;
  /** The lane hashes the plaintext (a whole read with a recorded SHA-256). */
  private readonly laneHashes: boolean;

  constructor(private readonly options: DecryptOptions) {
    super();
    const start = options.start ?? 0;
    const end = options.end ?? Math.max(0, options.size - 1);
    const range = cipherRangeFor(options.size, start, end, options.chunkBytes);
    this.rangeStart = start;
    this.rangeEnd = end;
    this.index = range.firstChunk;
    this.lastChunk = range.lastChunk;
    this.totalChunks = Math.max(1, Math.ceil(options.size / options.chunkBytes));
    this.headerLeft = options.withHeader ? HEADER_BYTES : 0;
    const whole = start === 0 && end >= options.size - 1;
    const hashes = whole && options.sha256 !== undefined;
    this.lane = options.lane ? options.lane(hashes) : null;
    this.laneHashes = this.lane !== null && hashes;
    this.hash = hashes && !this.lane ? createHash('sha256') : null;
    this.ordered = this.lane
      ? new InOrder(LANE_IN_FLIGHT, (err) => {
          this.destroy(err);
        })
      : null;
  }

  private sealedLength(index: number): number {
    const plain = Math.min(
      this.options.chunkBytes,
      this.options.size - index * this.options.chunkBytes,
    );
    return Math.max(0, plain) + TAG_BYTES;
  }

  private checkHeader(h: Buffer): void {
    if (!h.subarray(0, 4).equals(MAGIC) || h.readUInt8(4) !== VERSION) {
      throw new BlobIntegrityError('not an encrypted Caretrail blob');
    }
    if (h.readUInt32BE(8) !== this.options.chunkBytes) {
      throw new BlobIntegrityError('chunk size differs from the recorded one');
    }
    // The header is not covered by any tag: its reserved bytes must be exactly what we wrote,
    // or a damaged header would go unnoticed.
    if (!h.equals(header(this.options.chunkBytes))) {
      throw new BlobIntegrityError('the blob header is damaged');
    }
  }

  override _transform(data: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    try {
      this.buffered.push(data);
      this.bufferedBytes += data.length;
      if (this.headerLeft > 0) {
        if (this.bufferedBytes < HEADER_BYTES) {
          callback();
          return;
        }
        const all = Buffer.concat(this.buffered);
        this.checkHeader(all.subarray(0, HEADER_BYTES));
        this.headerLeft = 0;
        this.buffered = [all.subarray(HEADER_BYTES)];
        this.bufferedBytes = all.length - HEADER_BYTES;
      }
      if (this.index <= this.lastChunk && this.bufferedBytes >= this.sealedLength(this.index)) {
        // One copy per write, not one per chunk (see EncryptStream).
        const all = Buffer.concat(this.buffered);
        let at = 0;
        while (this.index <= this.lastChunk) {
          const need = this.sealedLength(this.index);
          if (all.length - at < need) break;
          this.emitChunk(all.subarray(at, at + need));
          at += need;
        }
        const rest = all.subarray(at);
        this.buffered = rest.length > 0 ? [rest] : [];
        this.bufferedBytes = rest.length;
      }
      if (this.ordered) this.ordered.whenRoom(callback);
      else callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  private emitChunk(sealed: Buffer): void {
    const index = this.index;
    const last = index === this.totalChunks - 1;
    this.index += 1;
    if (this.lane && this.ordered) {
      // The lane takes the chunk's memory: a copy of its own, not a view of the read buffer.
      const own = Buffer.allocUnsafeSlow(sealed.length);
      sealed.copy(own);
      this.ordered.add(this.lane.open(index, last, own), (plain) => {
        this.pushRange(index, plain);
      });
      return;
    }
    const plain = openChunk(this.options.key, this.options.blobKey, index, last, sealed);
    this.hash?.update(plain);
    this.pushRange(index, plain);
  }

  /** Emits the part of chunk `index`'s plaintext that falls in the requested range. */
  private pushRange(index: number, plain: Buffer): void {
    const chunkStart = index * this.options.chunkBytes;
    const from = Math.max(0, this.rangeStart - chunkStart);
    const to = Math.min(plain.length, this.rangeEnd - chunkStart + 1);
    if (to > from) this.push(plain.subarray(from, to));
  }

  override _flush(callback: TransformCallback): void {
    if (this.index <= this.lastChunk || this.headerLeft > 0) {
      callback(new BlobIntegrityError('the stored blob is shorter than recorded'));
      return;
    }
    const mismatch = () =>
      new BlobIntegrityError('SHA-256 of the content does not match the recorded one');
    if (this.hash && this.hash.digest('hex') !== this.options.sha256) {
      callback(mismatch());
      return;
    }
    if (!this.lane || !this.ordered) {
      callback();
      return;
    }
    const lane = this.lane;
    this.ordered
      .drained()
      .then(async () => {
        if (this.laneHashes && (await lane.digest()) !== this.options.sha256) throw mismatch();
      })
      .then(
        () => {
          callback();
        },
        (err: unknown) => {
          callback(err as Error);
        },
      );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.lane?.release();
    callback(err);
  }
}
