// Tests for the cipher pool: the same bytes as inline encryption both ways, ranges, tampering and
// a lost worker thread detected, and a bounded number of chunks in flight per stream.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import {
  BlobIntegrityError,
  DEFAULT_CHUNK_BYTES,
  DecryptStream,
  EncryptStream,
  HEADER_BYTES,
  LANE_IN_FLIGHT,
  cipherRangeFor,
  newDataKey,
  type CipherLane,
  type DecryptOptions,
} from '../../src/blobs/blob-crypto.js';
import {
  CipherWorkerError,
  createCipherPool,
  type CipherPool,
} from '../../src/blobs/cipher-pool.js';
import { openFsBlobStore } from '../../src/blobs/fs-blob-store.js';
import { createKeyring, newMasterKey } from '../../src/blobs/master-key.js';
import { createVault, primed } from '../../src/blobs/vault.js';
import { tempDir } from '../helpers/engines.js';
import { body, readAll } from '../helpers/streams.js';
import { filesUnder } from '../helpers/storage.js';

const C = DEFAULT_CHUNK_BYTES;
const BLOB_KEY = 'blob-pool-0001';

async function encrypt(plain: Buffer, key: Buffer, lane: CipherLane | null): Promise<Buffer> {
  const stream = new EncryptStream(key, BLOB_KEY, C, 4100, null, lane);
  const parts: Buffer[] = [];
  await pipeline(body(plain, 50_000), stream, async (source: AsyncIterable<Buffer>) => {
    for await (const part of source) parts.push(part);
  });
  assert.equal(stream.summary().sha256, createHash('sha256').update(plain).digest('hex'));
  assert.equal(stream.summary().size, plain.length);
  return Buffer.concat(parts);
}

async function decrypt(
  cipher: Buffer,
  options: DecryptOptions,
): Promise<{ out: Buffer; error: unknown }> {
  const stream = new DecryptStream(options);
  const parts: Buffer[] = [];
  stream.on('data', (part: Buffer) => parts.push(part));
  try {
    await pipeline(body(cipher, 70_000), stream);
    return { out: Buffer.concat(parts), error: undefined };
  } catch (error) {
    return { out: Buffer.concat(parts), error };
  }
}

describe('cipher pool', () => {
  let pool: CipherPool | undefined;
  const thePool = (): CipherPool => {
    if (!pool) throw new Error('pool not created');
    return pool;
  };
  before(() => {
    pool = createCipherPool(2);
  });
  after(async () => {
    await pool?.close();
  });

  const whole = (key: Buffer, plain: Buffer, viaPool: boolean): DecryptOptions => ({
    key,
    blobKey: BLOB_KEY,
    size: plain.length,
    chunkBytes: C,
    sha256: createHash('sha256').update(plain).digest('hex'),
    withHeader: true,
    ...(viaPool ? { lane: (hash: boolean) => thePool().lane(key, BLOB_KEY, hash) } : {}),
  });

  for (const size of [0, 1, C - 1, C, C + 1, 3 * C + 517]) {
    it(`writes the same bytes as inline encryption and reads them either way (${size} bytes)`, async () => {
      const plain = randomBytes(size);
      const key = newDataKey();
      const inline = await encrypt(plain, key, null);
      const pooled = await encrypt(plain, key, thePool().lane(key, BLOB_KEY, true));
      assert.ok(pooled.equals(inline), 'the pool changed the stored format');
      const viaPool = await decrypt(inline, whole(key, plain, true));
      assert.equal(viaPool.error, undefined);
      assert.ok(viaPool.out.equals(plain));
      const viaInline = await decrypt(pooled, whole(key, plain, false));
      assert.equal(viaInline.error, undefined);
      assert.ok(viaInline.out.equals(plain));
    });
  }

  it('decrypts byte ranges through the pool', async () => {
    const plain = randomBytes(5 * C + 99);
    const key = newDataKey();
    const cipher = await encrypt(plain, key, null);
    for (const [start, end] of [
      [0, 0],
      [C - 1, C],
      [C + 10, 4 * C + 3],
      [5 * C, 5 * C + 98],
    ] as const) {
      const range = cipherRangeFor(plain.length, start, end, C);
      const result = await decrypt(cipher.subarray(range.start, range.end + 1), {
        ...whole(key, plain, true),
        start,
        end,
        withHeader: false,
      });
      assert.equal(result.error, undefined);
      assert.ok(result.out.equals(plain.subarray(start, end + 1)));
    }
  });

  it('fails on a flipped byte with an integrity error, emitting only the chunks before it', async () => {
    const plain = randomBytes(6 * C);
    const key = newDataKey();
    const cipher = await encrypt(plain, key, null);
    const at = HEADER_BYTES + 3 * (C + 16) + 7;
    cipher.writeUInt8(cipher.readUInt8(at) ^ 1, at);
    const result = await decrypt(cipher, whole(key, plain, true));
    assert.ok(result.error instanceof BlobIntegrityError, `got ${String(result.error)}`);
    assert.ok(result.out.length <= 3 * C);
    assert.ok(result.out.equals(plain.subarray(0, result.out.length)));
  });

  it('fails on a SHA-256 that differs from the recorded one', async () => {
    const plain = randomBytes(2 * C + 5);
    const key = newDataKey();
    const cipher = await encrypt(plain, key, null);
    const result = await decrypt(cipher, { ...whole(key, plain, true), sha256: '0'.repeat(64) });
    assert.ok(result.error instanceof BlobIntegrityError);
  });

  it('keeps at most LANE_IN_FLIGHT chunks of a stream on the lane while its reader waits', async () => {
    const key = newDataKey();
    const real = thePool().lane(key, BLOB_KEY, true);
    let inFlight = 0;
    let most = 0;
    const counted: CipherLane = {
      ...real,
      seal: async (index, last, plain) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        try {
          return await real.seal(index, last, plain);
        } finally {
          inFlight -= 1;
        }
      },
    };
    const stream = new EncryptStream(key, BLOB_KEY, C, 4100, null, counted);
    const source = body(randomBytes(40 * C), C);
    source.pipe(stream);
    // Nobody reads: the stream must stop taking input instead of sealing everything.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const taken = source.readableEnded;
    assert.equal(taken, false, 'the whole input was taken with nobody reading');
    assert.ok(most <= LANE_IN_FLIGHT, `${most} chunks in flight`);
    stream.destroy();
    source.destroy();
  });
});

describe('vault with a cipher pool', () => {
  const root = tempDir('caretrail-pool-vault-');
  const keyring = createKeyring([newMasterKey()]);
  const store = openFsBlobStore(root);
  const pool = createCipherPool(1);
  const pooled = createVault(store, keyring, pool);
  const inline = createVault(store, keyring);
  after(async () => {
    await pooled.close();
    await store.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('reads blobs written inline and the other way round', async () => {
    const plain = randomBytes(3 * C + 1234);
    const a = await inline.put(body(plain), 10 * C);
    const b = await pooled.put(body(plain), 10 * C);
    assert.equal(b.sha256, a.sha256);
    assert.ok(b.head.equals(a.head));
    assert.ok((await readAll(await pooled.open(a))).equals(plain));
    assert.ok((await readAll(await inline.open(b))).equals(plain));
    assert.ok(
      (await readAll(await pooled.open(b, { start: C, end: 2 * C }))).equals(
        plain.subarray(C, 2 * C + 1),
      ),
    );
  });

  it('keeps a later damaged chunk on the stream until its reader comes, never throwing it', async () => {
    const plain = randomBytes(6 * C);
    const ref = await inline.put(body(plain), 10 * C);
    const file = path.join(root, 'objects', ref.blobKey.slice(0, 2), ref.blobKey);
    const raw = fs.readFileSync(file);
    const at = HEADER_BYTES + 2 * (C + 16) + 9;
    raw.writeUInt8(raw.readUInt8(at) ^ 1, at);
    fs.writeFileSync(file, raw);
    const stream = await primed(await pooled.open(ref));
    // The reader is late (the request is still writing its audit event): chunks are opened
    // ahead and the damaged one fails meanwhile. An unhandled 'error' would end the process.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await assert.rejects(readAll(stream), BlobIntegrityError);
  });

  it('fails an upload whose worker thread stops, leaving nothing behind', async () => {
    const before = filesUnder(root);
    const source = new PassThrough();
    const put = pooled.put(source, 100 * C);
    source.write(randomBytes(3 * C));
    // Let the chunks reach the worker, then stop it mid-stream.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const [worker] = pool.workers();
    assert.ok(worker, 'no worker thread running');
    await worker.terminate();
    source.write(randomBytes(3 * C));
    await assert.rejects(put, CipherWorkerError);
    assert.deepEqual(filesUnder(root), before);
    // A new thread takes over the next stream.
    const plain = randomBytes(C + 3);
    const ref = await pooled.put(Readable.from([plain]), 10 * C);
    assert.ok((await readAll(await pooled.open(ref))).equals(plain));
  });

  it('fails a download whose worker thread stops', async () => {
    const plain = randomBytes(40 * C);
    const ref = await inline.put(body(plain), 100 * C);
    const stream = await pooled.open(ref);
    const parts: Buffer[] = [];
    const got = (async () => {
      for await (const part of stream) {
        parts.push(part as Buffer);
        if (parts.length === 2) {
          const [worker] = pool.workers();
          await worker?.terminate();
        }
      }
    })();
    await assert.rejects(got, CipherWorkerError);
    assert.ok(Buffer.concat(parts).equals(plain.subarray(0, Buffer.concat(parts).length)));
  });
});
