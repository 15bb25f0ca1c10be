// Tests for chunked blob encryption: round trips, exact ranges, tampering always detected.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BlobIntegrityError,
  DEFAULT_CHUNK_BYTES,
  DecryptStream,
  EncryptStream,
  HEADER_BYTES,
  TAG_BYTES,
  cipherRangeFor,
  encryptedSize,
  newDataKey,
  type DecryptOptions,
  type PlainSummary,
} from '../../src/blobs/blob-crypto.js';

const BLOB_KEY = 'blob-0001';

/** Deterministic pseudo-random bytes, so a failing case can be replayed from its seed. */
function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(`seed:${seed}`).digest();
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at, 0, Math.min(block.length, size - at));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

function pieces(data: Buffer, pieceBytes: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += pieceBytes) out.push(data.subarray(at, at + pieceBytes));
  return out;
}

async function encrypt(
  plain: Buffer,
  options: { key?: Buffer; blobKey?: string; chunkBytes?: number; pieceBytes?: number } = {},
): Promise<{ cipher: Buffer; summary: PlainSummary; key: Buffer }> {
  const key = options.key ?? newDataKey();
  const stream = new EncryptStream(
    key,
    options.blobKey ?? BLOB_KEY,
    options.chunkBytes ?? DEFAULT_CHUNK_BYTES,
  );
  const parts: Buffer[] = [];
  await pipeline(
    Readable.from(pieces(plain, options.pieceBytes ?? Math.max(1, plain.length))),
    stream,
    async (source: AsyncIterable<Buffer>) => {
      for await (const part of source) parts.push(part);
    },
  );
  return { cipher: Buffer.concat(parts), summary: stream.summary(), key };
}

/** Everything the decrypting stream emitted (also before an error), and the error if any. */
async function decrypt(
  input: Buffer,
  options: DecryptOptions,
  pieceBytes = 4096,
): Promise<{ out: Buffer; error: unknown }> {
  const stream = new DecryptStream(options);
  const parts: Buffer[] = [];
  stream.on('data', (part: Buffer) => parts.push(part));
  try {
    await pipeline(Readable.from(pieces(input, pieceBytes)), stream);
    return { out: Buffer.concat(parts), error: undefined };
  } catch (error) {
    return { out: Buffer.concat(parts), error };
  }
}

function wholeOptions(
  key: Buffer,
  plain: Buffer,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): DecryptOptions {
  return {
    key,
    blobKey: BLOB_KEY,
    size: plain.length,
    chunkBytes,
    sha256: createHash('sha256').update(plain).digest('hex'),
    withHeader: true,
  };
}

/** The read failed, and what came out before the failure is true plaintext from the start. */
function assertRejectedSafely(result: { out: Buffer; error: unknown }, plain: Buffer): void {
  assert.ok(
    result.error instanceof BlobIntegrityError,
    `expected BlobIntegrityError, got ${String(result.error)}`,
  );
  assert.ok(result.out.length <= plain.length, 'emitted more bytes than the plaintext has');
  assert.ok(
    result.out.equals(plain.subarray(0, result.out.length)),
    'emitted bytes that are not a prefix of the plaintext',
  );
}

/** Offset in the encrypted blob of sealed chunk `index` (ciphertext then tag). */
function chunkOffset(index: number, chunkBytes: number): number {
  return HEADER_BYTES + index * (chunkBytes + TAG_BYTES);
}

describe('blob encryption round trips', () => {
  const C = DEFAULT_CHUNK_BYTES;
  for (const size of [0, 1, C - 1, C, C + 1, 3 * C + 517]) {
    it(`encrypts and decrypts ${size} bytes`, async () => {
      const plain = bytes(size, size);
      for (const pieceBytes of [Math.max(1, size), 1000]) {
        const { cipher, summary, key } = await encrypt(plain, { pieceBytes });
        assert.equal(cipher.length, encryptedSize(size));
        assert.equal(cipher.subarray(0, 4).toString('ascii'), 'CTB1');
        assert.equal(summary.size, size);
        assert.equal(summary.sha256, createHash('sha256').update(plain).digest('hex'));
        assert.ok(summary.head.equals(plain.subarray(0, 4100)));
        const result = await decrypt(cipher, wholeOptions(key, plain), 777);
        assert.equal(result.error, undefined);
        assert.ok(result.out.equals(plain));
      }
    });
  }

  it('never stores the plaintext or repeats ciphertext across blobs with the same content', async () => {
    const plain = Buffer.from('Rex, 4y, FIV positive. '.repeat(5000));
    const a = await encrypt(plain);
    const b = await encrypt(plain);
    assert.equal(a.cipher.indexOf(Buffer.from('FIV positive')), -1);
    assert.ok(!a.cipher.subarray(HEADER_BYTES).equals(b.cipher.subarray(HEADER_BYTES)));
  });

  it('handles one 64 MiB write in linear time (encrypting and decrypting)', async () => {
    // Copying the rest of the input once per chunk took ~30 s for this write.
    const plain = Buffer.alloc(64 * 1024 * 1024, 0x5a);
    const started = performance.now();
    const { cipher, key } = await encrypt(plain);
    const result = await decrypt(cipher, wholeOptions(key, plain), cipher.length);
    const elapsed = performance.now() - started;
    assert.equal(result.error, undefined);
    assert.ok(result.out.equals(plain));
    assert.ok(elapsed < 8000, `took ${Math.round(elapsed)} ms`);
  });

  it('summary() before the end is an error, not a wrong answer', () => {
    const stream = new EncryptStream(newDataKey(), BLOB_KEY);
    assert.throws(() => stream.summary(), /has not finished/);
  });
});

describe('byte ranges', () => {
  it('decrypts any range from exactly the bytes cipherRangeFor names (small chunks)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 900 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 1, max: 97 }),
        async (chunkBytes, size, a, b, pieceBytes) => {
          await checkRange(chunkBytes, size, a % size, b % size, pieceBytes);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('decrypts any range from exactly the bytes cipherRangeFor names (64 KiB chunks)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 * DEFAULT_CHUNK_BYTES }),
        fc.nat(),
        fc.nat(),
        async (size, a, b) => {
          await checkRange(DEFAULT_CHUNK_BYTES, size, a % size, b % size, 16 * 1024);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('checks the recorded SHA-256 only on whole reads', async () => {
    const plain = bytes(3000, 7);
    const { cipher, key } = await encrypt(plain, { chunkBytes: 1024 });
    const range = cipherRangeFor(plain.length, 1500, 2100, 1024);
    const result = await decrypt(cipher.subarray(range.start, range.end + 1), {
      ...wholeOptions(key, plain, 1024),
      sha256: '0'.repeat(64),
      start: 1500,
      end: 2100,
      withHeader: false,
    });
    assert.equal(result.error, undefined);
    assert.ok(result.out.equals(plain.subarray(1500, 2101)));
  });
});

async function checkRange(
  chunkBytes: number,
  size: number,
  a: number,
  b: number,
  pieceBytes: number,
): Promise<void> {
  const start = Math.min(a, b);
  const end = Math.max(a, b);
  const plain = bytes(size, size * 31 + chunkBytes);
  const { cipher, key } = await encrypt(plain, { chunkBytes, pieceBytes });
  assert.equal(cipher.length, encryptedSize(size, chunkBytes));

  // Plaintext byte p sits at HEADER + (p div C) * (C + TAG) + (p mod C): the range must begin at
  // the start of the chunk holding `start` and end with the tag of the chunk holding `end`.
  const range = cipherRangeFor(size, start, end, chunkBytes);
  const firstChunk = Math.floor(start / chunkBytes);
  const lastChunk = Math.floor(end / chunkBytes);
  const lastChunkPlain = Math.min(chunkBytes, size - lastChunk * chunkBytes);
  assert.equal(range.firstChunk, firstChunk);
  assert.equal(range.lastChunk, lastChunk);
  assert.equal(range.start, chunkOffset(firstChunk, chunkBytes));
  assert.equal(range.end, chunkOffset(lastChunk, chunkBytes) + lastChunkPlain + TAG_BYTES - 1);
  assert.ok(range.end < cipher.length);

  const options: DecryptOptions = {
    ...wholeOptions(key, plain, chunkBytes),
    start,
    end,
    withHeader: false,
  };
  const exact = cipher.subarray(range.start, range.end + 1);
  const result = await decrypt(exact, options, pieceBytes);
  assert.equal(result.error, undefined);
  assert.ok(result.out.equals(plain.subarray(start, end + 1)));

  // Not one byte fewer will do, at either end.
  assertRejectedSafely(
    await decrypt(exact.subarray(0, exact.length - 1), options, pieceBytes),
    plain.subarray(start, end + 1),
  );
  const shifted = await decrypt(cipher.subarray(range.start + 1, range.end + 1), options);
  assert.ok(shifted.error instanceof BlobIntegrityError);
  assert.equal(shifted.out.length, 0);
}

describe('tampering', () => {
  const C = 1024;
  const plain = bytes(4 * C + 300, 42); // chunks 0..3 full, chunk 4 holds 300 bytes
  let sealed: { cipher: Buffer; key: Buffer } | undefined;
  const blob = async () => {
    sealed ??= await encrypt(plain, { chunkBytes: C, pieceBytes: 333 });
    return sealed;
  };
  const flipped = (cipher: Buffer, at: number): Buffer => {
    const copy = Buffer.from(cipher);
    copy.writeUInt8(copy.readUInt8(at) ^ 0x01, at);
    return copy;
  };

  it('detects a flipped byte anywhere in a small blob, header included', async () => {
    const small = bytes(200, 9);
    const { cipher, key } = await encrypt(small, { chunkBytes: 64 });
    for (let at = 0; at < cipher.length; at++) {
      const result = await decrypt(flipped(cipher, at), wholeOptions(key, small, 64), 50);
      assert.ok(result.error instanceof BlobIntegrityError, `byte ${at} flipped went unnoticed`);
      assertRejectedSafely(result, small);
    }
  });

  it('detects a flipped byte in each header field', async () => {
    const { cipher, key } = await blob();
    for (let at = 0; at < HEADER_BYTES; at++) {
      const result = await decrypt(flipped(cipher, at), wholeOptions(key, plain, C));
      assertRejectedSafely(result, plain);
      assert.equal(result.out.length, 0, `byte ${at} of the header`);
    }
  });

  it('detects a flipped byte in a middle chunk and emits only the chunks before it', async () => {
    const { cipher, key } = await blob();
    const result = await decrypt(
      flipped(cipher, chunkOffset(2, C) + 100),
      wholeOptions(key, plain, C),
      C + TAG_BYTES,
    );
    assertRejectedSafely(result, plain);
    assert.ok(result.out.length <= 2 * C);
  });

  it('detects a flipped tag byte, in whole and ranged reads', async () => {
    const { cipher, key } = await blob();
    const tagAt = chunkOffset(1, C) + C + 5;
    assertRejectedSafely(await decrypt(flipped(cipher, tagAt), wholeOptions(key, plain, C)), plain);
    const range = cipherRangeFor(plain.length, C + 10, C + 20, C);
    const ranged = await decrypt(flipped(cipher, tagAt).subarray(range.start, range.end + 1), {
      ...wholeOptions(key, plain, C),
      start: C + 10,
      end: C + 20,
      withHeader: false,
    });
    assert.ok(ranged.error instanceof BlobIntegrityError);
    assert.equal(ranged.out.length, 0);
  });

  it('detects a blob cut at a chunk boundary (last chunk dropped)', async () => {
    const { cipher, key } = await blob();
    const cut = cipher.subarray(0, chunkOffset(4, C));
    const result = await decrypt(cut, wholeOptions(key, plain, C));
    assertRejectedSafely(result, plain);
    assert.match(String(result.error), /shorter than recorded/);
  });

  it('detects the last full chunk relabelled as the end (size recorded short)', async () => {
    const { cipher, key } = await blob();
    const cut = cipher.subarray(0, chunkOffset(4, C));
    const result = await decrypt(cut, {
      ...wholeOptions(key, plain.subarray(0, 4 * C), C),
    });
    assertRejectedSafely(result, plain);
  });

  it('detects two chunks swapped', async () => {
    const { cipher, key } = await blob();
    const stride = C + TAG_BYTES;
    const swapped = Buffer.from(cipher);
    cipher.copy(swapped, chunkOffset(1, C), chunkOffset(2, C), chunkOffset(2, C) + stride);
    cipher.copy(swapped, chunkOffset(2, C), chunkOffset(1, C), chunkOffset(1, C) + stride);
    const result = await decrypt(swapped, wholeOptions(key, plain, C));
    assertRejectedSafely(result, plain);
    assert.ok(result.out.length <= C);
  });

  it('detects a blob presented under another blob key', async () => {
    const { cipher, key } = await blob();
    const result = await decrypt(cipher, { ...wholeOptions(key, plain, C), blobKey: 'blob-0002' });
    assertRejectedSafely(result, plain);
    assert.equal(result.out.length, 0);
  });

  it('detects the wrong data key', async () => {
    const { cipher } = await blob();
    const result = await decrypt(cipher, wholeOptions(newDataKey(), plain, C));
    assertRejectedSafely(result, plain);
    assert.equal(result.out.length, 0);
  });

  it('detects a SHA-256 that differs from the recorded one', async () => {
    const { cipher, key } = await blob();
    const result = await decrypt(cipher, {
      ...wholeOptions(key, plain, C),
      sha256: createHash('sha256').update('something else').digest('hex'),
    });
    assertRejectedSafely(result, plain);
    assert.match(String(result.error), /SHA-256/);
  });

  it('detects a chunk size that differs from the recorded one', async () => {
    const { cipher, key } = await blob();
    const result = await decrypt(cipher, wholeOptions(key, plain, 2 * C));
    assertRejectedSafely(result, plain);
    assert.equal(result.out.length, 0);
  });
});
