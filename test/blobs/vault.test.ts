// Tests for the vault: size limit, no plaintext at rest, ranges, re-wrapping, large S3 files.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BlobIntegrityError,
  DEFAULT_CHUNK_BYTES,
  HEADER_BYTES,
  TAG_BYTES,
} from '../../src/blobs/blob-crypto.js';
import type { BlobStore } from '../../src/blobs/blob-store.js';
import { openFsBlobStore } from '../../src/blobs/fs-blob-store.js';
import { openS3BlobStore, parseS3Url } from '../../src/blobs/s3-blob-store.js';
import { createKeyring, masterKeyId, newMasterKey } from '../../src/blobs/master-key.js';
import { createVault, type BlobRef, type Vault } from '../../src/blobs/vault.js';
import { AppError } from '../../src/domain/errors.js';
import { tempDir } from '../helpers/engines.js';
import { body, readAll } from '../helpers/streams.js';

/** Smaller pieces than a socket's: chunk boundaries fall inside writes. */
const pieces = (data: Buffer, pieceBytes = 16 * 1024) => body(data, pieceBytes);
import { S3_CREDENTIALS, filesUnder, startS3, type S3Server } from '../helpers/storage.js';

describe('vault on the folder store', () => {
  const root = tempDir('caretrail-vault-');
  const oldKey = newMasterKey();
  let store: BlobStore | undefined;
  let vault: Vault | undefined;
  const open = (): Vault => {
    if (!vault) throw new Error('vault not created');
    return vault;
  };
  const objectFile = (ref: BlobRef): string =>
    path.join(root, 'objects', ref.blobKey.slice(0, 2), ref.blobKey);

  before(() => {
    store = openFsBlobStore(root);
    vault = createVault(store, createKeyring([oldKey]));
  });
  after(async () => {
    await store?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('refuses a file over the size limit and leaves nothing behind', async () => {
    const before = filesUnder(root);
    await assert.rejects(
      open().put(pieces(randomBytes(300 * 1024)), 200 * 1024),
      (err: unknown) => {
        assert.ok(err instanceof AppError);
        assert.equal(err.code, 'payload_too_large');
        return true;
      },
    );
    assert.deepEqual(filesUnder(root), before);
  });

  it('accepts a file of exactly the size limit', async () => {
    const data = randomBytes(200 * 1024);
    const ref = await open().put(pieces(data), data.length);
    assert.equal(ref.size, data.length);
    assert.ok((await open().read(ref)).equals(data));
  });

  it('stores no plaintext: the raw object does not contain a marker text', async () => {
    const marker = 'PATIENT-MARKER Bella, Labrador, chemotherapy protocol 7b';
    const data = Buffer.from(`${marker}\n`.repeat(4000));
    const ref = await open().put(pieces(data), 10 * 1024 * 1024);
    const raw = fs.readFileSync(objectFile(ref));
    assert.equal(raw.indexOf(Buffer.from('PATIENT-MARKER')), -1);
    assert.equal(raw.indexOf(Buffer.from('Labrador')), -1);
    assert.ok(ref.head.equals(data.subarray(0, ref.head.length)));
    assert.ok((await open().read(ref)).equals(data));
  });

  it('returns exactly the bytes of a range', async () => {
    const data = randomBytes(3 * 64 * 1024 + 999);
    const ref = await open().put(pieces(data), data.length);
    for (const [start, end] of [
      [0, 0],
      [0, data.length - 1],
      [data.length - 1, data.length - 1],
      [64 * 1024 - 1, 64 * 1024],
      [70_000, 150_000],
    ] as const) {
      const part = await readAll(await open().open(ref, { start, end }));
      assert.ok(part.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
    }
  });

  it('refuses to read a blob whose stored bytes were altered', async () => {
    const data = randomBytes(2 * DEFAULT_CHUNK_BYTES + 10);
    const ref = await open().put(pieces(data), data.length);
    const file = objectFile(ref);
    const raw = fs.readFileSync(file);
    const at = HEADER_BYTES + DEFAULT_CHUNK_BYTES + TAG_BYTES + 5; // in the second chunk
    raw.writeUInt8(raw.readUInt8(at) ^ 0x80, at);
    fs.writeFileSync(file, raw);
    await assert.rejects(open().read(ref), BlobIntegrityError);
    await assert.rejects(
      readAll(await open().open(ref, { start: DEFAULT_CHUNK_BYTES, end: DEFAULT_CHUNK_BYTES + 3 })),
      BlobIntegrityError,
    );
    // The first chunk is intact and can still be read on its own.
    const first = await readAll(await open().open(ref, { start: 0, end: 99 }));
    assert.ok(first.equals(data.subarray(0, 100)));
  });

  it('re-wraps a data key under a new active master key', async () => {
    const data = randomBytes(100 * 1024);
    const ref = await open().put(pieces(data), data.length);
    assert.equal(ref.keyId, masterKeyId(oldKey));

    const newKey = newMasterKey();
    const rotated = createVault(open().store, createKeyring([newKey, oldKey]));
    const wrapped = rotated.rewrap(ref);
    assert.equal(wrapped.keyId, masterKeyId(newKey));
    const moved: BlobRef = { ...ref, keyId: wrapped.keyId, wrapped: wrapped.wrapped };
    assert.ok((await rotated.read(moved)).equals(data));

    // Once the old key is gone, only the re-wrapped reference still opens.
    const newOnly = createVault(open().store, createKeyring([newKey]));
    assert.ok((await newOnly.read(moved)).equals(data));
    assert.throws(() => newOnly.rewrap(ref), /is not configured/);
  });
});

describe('vault on S3', () => {
  let s3: S3Server | undefined;
  let vault: Vault | undefined;
  const open = (): Vault => {
    if (!vault) throw new Error('vault not created');
    return vault;
  };

  before(async () => {
    s3 = await startS3();
    vault = createVault(
      openS3BlobStore(parseS3Url(s3.url), S3_CREDENTIALS),
      createKeyring([newMasterKey()]),
    );
  });
  after(async () => {
    await vault?.store.close();
    await s3?.stop().catch(() => undefined);
    if (s3) fs.rmSync(s3.dir, { recursive: true, force: true });
  });

  it('stores a file larger than one upload part and reads it whole and by range', async () => {
    const data = randomBytes(12 * 1024 * 1024 + 3);
    const ref = await open().put(pieces(data, 64 * 1024), data.length);
    assert.ok((await open().read(ref)).equals(data));
    const start = 5 * 1024 * 1024 - 10;
    const part = await readAll(await open().open(ref, { start, end: start + 100_000 }));
    assert.ok(part.equals(data.subarray(start, start + 100_001)));
  });

  it('ends a whole read with an error when S3 drops the connection mid-download', async () => {
    const data = randomBytes(16 * 1024 * 1024);
    const ref = await open().put(pieces(data, 64 * 1024), data.length);
    const stream = await open().open(ref);
    const outcome = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => {
        resolve('neither ended nor failed within 3 s');
      }, 3000);
      const settle = (what: string) => {
        clearTimeout(timer);
        resolve(what);
      };
      stream.once('data', () => {
        stream.pause();
        void s3?.stop().then(() => stream.resume());
      });
      stream.once('error', (err) => {
        settle(err instanceof Error ? 'error' : 'odd error');
      });
      stream.once('end', () => {
        settle('end');
      });
    });
    stream.destroy();
    assert.equal(outcome, 'error');
  });
});
