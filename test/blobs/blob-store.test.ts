// Tests for the blob store contract on the folder and S3 stores, an S3 outage and a full disk.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import {
  DEFAULT_CHUNK_BYTES,
  DecryptStream,
  EncryptStream,
  encryptedSize,
  newDataKey,
} from '../../src/blobs/blob-crypto.js';
import { BlobNotFoundError, type BlobStore } from '../../src/blobs/blob-store.js';
import { SYNC_EVERY_BYTES, openFsBlobStore } from '../../src/blobs/fs-blob-store.js';
import { openS3BlobStore, parseS3Url } from '../../src/blobs/s3-blob-store.js';
import { AppError, type ErrorCode } from '../../src/domain/errors.js';
import { tempDir } from '../helpers/engines.js';
import { body, readAll } from '../helpers/streams.js';
import { S3_CREDENTIALS, filesUnder, startS3, type S3Server } from '../helpers/storage.js';
import { attachStrace, parseTrace, straceUnavailable } from '../faults/strace.js';

/** A client upload that sends `bytes` and then fails (the connection dropped). */
function failingBody(bytes: number): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < bytes; sent += 64 * 1024) {
        yield randomBytes(Math.min(64 * 1024, bytes - sent));
        await new Promise((resolve) => setImmediate(resolve));
      }
      throw new Error('client went away');
    })(),
  );
}

const isCode =
  (code: ErrorCode) =>
  (err: unknown): boolean => {
    assert.ok(err instanceof AppError, `expected AppError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };

interface StoreUnderTest {
  store: BlobStore;
  /** Keys of the objects the backend holds. */
  storedKeys(): Promise<string[]>;
  /** Temporary data left behind (folder store: files in tmp/). */
  leftovers(): string[];
}

function s3Lister(s3: S3Server): () => Promise<string[]> {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${s3.port}`,
    forcePathStyle: true,
    credentials: S3_CREDENTIALS,
  });
  return async () => {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
    return (listed.Contents ?? []).map((object) => object.Key ?? '');
  };
}

function describeStoreContract(kind: 'file' | 's3'): void {
  describe(`blob store contract [${kind}]`, () => {
    let subject: StoreUnderTest | undefined;
    let root = '';
    let s3: S3Server | undefined;
    const store = (): BlobStore => {
      if (!subject) throw new Error('store not opened');
      return subject.store;
    };

    before(async () => {
      if (kind === 'file') {
        root = tempDir('caretrail-blobs-');
        subject = {
          store: openFsBlobStore(root),
          storedKeys: () =>
            Promise.resolve(
              ['objects', 'archive'].flatMap((dir) =>
                filesUnder(path.join(root, dir)).map((file) => path.basename(file)),
              ),
            ),
          leftovers: () => filesUnder(path.join(root, 'tmp')),
        };
      } else {
        s3 = await startS3();
        subject = {
          store: openS3BlobStore(parseS3Url(s3.url), S3_CREDENTIALS),
          storedKeys: s3Lister(s3),
          leftovers: () => [],
        };
      }
    });
    after(async () => {
      await subject?.store.close();
      await s3?.stop();
      for (const dir of [root, s3?.dir ?? '']) {
        if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('stores a blob and reads it back whole and by ranges', async () => {
      const key = randomUUID();
      const data = randomBytes(300 * 1024 + 17);
      assert.deepEqual(await store().put(key, body(data)), { bytes: data.length });
      assert.ok((await readAll(await store().get(key, 'hot'))).equals(data));
      // s3rver answers `bytes=0-0` with the whole object (its `end || Infinity`); real S3 and
      // the folder store do not, and a blob's encrypted ranges never end at byte 0.
      const firstByte = kind === 'file' ? ([[0, 0]] as const) : [];
      for (const [start, end] of [
        ...firstByte,
        [0, 1],
        [1, 1],
        [0, data.length - 1],
        [data.length - 1, data.length - 1],
        [65_536, 200_000],
        [12_345, 12_345 + 70_000],
      ] as const) {
        const part = await readAll(await store().get(key, 'hot', { start, end }));
        assert.ok(part.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
      }
      assert.ok((await subject?.storedKeys())?.some((stored) => stored.endsWith(key)));
      assert.deepEqual(subject?.leftovers(), []);
    });

    it('stores a large encrypted stream (several S3 parts) and reads it back', async () => {
      const key = randomUUID();
      const plain = randomBytes(12 * 1024 * 1024);
      const dataKey = newDataKey();
      const encrypting = body(plain).pipe(new EncryptStream(dataKey, key));
      assert.deepEqual(await store().put(key, encrypting), { bytes: encryptedSize(plain.length) });
      const decrypting = new DecryptStream({
        key: dataKey,
        blobKey: key,
        size: plain.length,
        chunkBytes: DEFAULT_CHUNK_BYTES,
        sha256: createHash('sha256').update(plain).digest('hex'),
        withHeader: true,
      });
      assert.ok((await readAll((await store().get(key, 'hot')).pipe(decrypting))).equals(plain));
      await store().delete(key);
    });

    it('stores an empty blob', async () => {
      const key = randomUUID();
      assert.deepEqual(await store().put(key, Readable.from([])), { bytes: 0 });
      assert.equal((await readAll(await store().get(key, 'hot'))).length, 0);
    });

    it('reports a missing blob as BlobNotFoundError on both tiers', async () => {
      const key = randomUUID();
      await assert.rejects(store().get(key, 'hot'), BlobNotFoundError);
      await assert.rejects(store().get(key, 'archive', { start: 0, end: 9 }), BlobNotFoundError);
      await assert.rejects(store().archive(key), BlobNotFoundError);
    });

    it('deletes idempotently', async () => {
      const key = randomUUID();
      await store().put(key, body(randomBytes(1000)));
      await store().delete(key);
      await store().delete(key);
      await store().delete(randomUUID());
      await assert.rejects(store().get(key, 'hot'), BlobNotFoundError);
      assert.ok(!(await subject?.storedKeys())?.some((stored) => stored.endsWith(key)));
    });

    it('archives idempotently and still reads archived blobs', async () => {
      const key = randomUUID();
      const data = randomBytes(150 * 1024);
      await store().put(key, body(data));
      await store().archive(key);
      await store().archive(key);
      assert.deepEqual(await store().prepareRead(key, 'archive'), { ready: true });
      assert.ok((await readAll(await store().get(key, 'archive'))).equals(data));
      const part = await readAll(await store().get(key, 'archive', { start: 100, end: 70_000 }));
      assert.ok(part.equals(data.subarray(100, 70_001)));
      if (kind === 'file') {
        const file = (dir: string) => path.join(root, dir, key.slice(0, 2), key);
        assert.ok(fs.existsSync(file('archive')));
        assert.ok(!fs.existsSync(file('objects')));
        // A row that still says 'hot' (crash before the database was updated) finds it too.
        assert.ok((await readAll(await store().get(key, 'hot'))).equals(data));
      }
      await store().delete(key);
      await assert.rejects(store().get(key, 'archive'), BlobNotFoundError);
      assert.deepEqual(subject?.leftovers(), []);
    });

    for (const sent of [200 * 1024, 6 * 1024 * 1024]) {
      it(`stores nothing when the source fails after ${sent} bytes`, async () => {
        const key = randomUUID();
        await assert.rejects(store().put(key, failingBody(sent)), /client went away/);
        await assert.rejects(store().get(key, 'hot'), BlobNotFoundError);
        assert.ok(!(await subject?.storedKeys())?.some((stored) => stored.endsWith(key)));
        assert.deepEqual(subject?.leftovers(), []);
      });
    }

    it('answers ping', async () => {
      await store().ping();
    });
  });
}

describeStoreContract('file');
describeStoreContract('s3');

describe('S3 outage', () => {
  let s3: S3Server | undefined;
  let store: BlobStore | undefined;
  const key = randomUUID();
  const data = randomBytes(100 * 1024);
  const open = (): BlobStore => {
    if (!store) throw new Error('store not opened');
    return store;
  };

  before(async () => {
    s3 = await startS3();
    store = openS3BlobStore(parseS3Url(s3.url), S3_CREDENTIALS);
    await store.put(key, body(data));
  });
  after(async () => {
    await store?.close();
    await s3?.stop().catch(() => undefined);
    if (s3) fs.rmSync(s3.dir, { recursive: true, force: true });
  });

  it('fails fast with "unavailable" while S3 is down, and recovers when it is back', async (t) => {
    await s3?.stop();
    const attempts: [string, () => Promise<unknown>][] = [
      ['put', () => open().put(randomUUID(), body(randomBytes(1000)))],
      ['get', () => open().get(key, 'hot')],
      ['get range', () => open().get(key, 'hot', { start: 0, end: 99 })],
      ['archive', () => open().archive(key)],
      ['ping', () => open().ping()],
    ];
    for (const [name, attempt] of attempts) {
      const started = performance.now();
      await assert.rejects(attempt(), isCode('unavailable'), name);
      const elapsed = performance.now() - started;
      t.diagnostic(`${name} failed after ${Math.round(elapsed)} ms`);
      assert.ok(elapsed < 3000, `${name} took ${Math.round(elapsed)} ms to fail`);
    }

    await s3?.restart();
    await open().ping();
    assert.ok((await readAll(await open().get(key, 'hot'))).equals(data));
    const later = randomUUID();
    await open().put(later, body(data));
    assert.ok((await readAll(await open().get(later, 'hot'))).equals(data));
  });
});

/** Why a small tmpfs cannot be mounted here, or null when it can. */
function smallDiskUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to mount a 2 MiB tmpfs';
  const probe = tempDir('caretrail-tmpfs-probe-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return `cannot mount a tmpfs (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

const noSmallDisk = smallDiskUnavailable();

describe('folder store on a full disk', { skip: noSmallDisk ?? false }, () => {
  let dir = '';
  let mounted = false;
  let store: BlobStore | undefined;
  const open = (): BlobStore => {
    if (!store) throw new Error('store not opened');
    return store;
  };

  before(() => {
    dir = tempDir('caretrail-full-disk-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
    mounted = true;
    store = openFsBlobStore(dir);
  });
  after(() => {
    if (mounted) execFileSync('umount', [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a blob that does not fit with "insufficient_storage" and keeps the others', async () => {
    const first = randomUUID();
    const small = randomBytes(1024 * 1024);
    await open().put(first, body(small));

    const big = randomUUID();
    await assert.rejects(
      open().put(big, body(randomBytes(3 * 1024 * 1024))),
      isCode('insufficient_storage'),
    );
    assert.deepEqual(filesUnder(path.join(dir, 'tmp')), []);
    await assert.rejects(open().get(big, 'hot'), BlobNotFoundError);
    assert.ok((await readAll(await open().get(first, 'hot'))).equals(small));

    // The space came back: another small blob fits.
    const second = randomUUID();
    await open().put(second, body(randomBytes(512 * 1024)));
  });
});

const noStrace = straceUnavailable();

describe('folder store flushes large blobs on the way', { skip: noStrace ?? false }, () => {
  const root = tempDir('caretrail-fdatasync-');
  after(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('fdatasyncs every 8 MiB in the background and fsyncs the file before the put resolves', async () => {
    const store = openFsBlobStore(root);
    const tracer = await attachStrace(
      [process.pid],
      ['-e', 'trace=fsync,fdatasync'],
      path.join(root, '..', `strace-sync-${randomUUID()}.txt`),
    );
    const data = randomBytes(5 * SYNC_EVERY_BYTES);
    const key = randomUUID();
    try {
      await store.put(key, body(data, 256 * 1024));
    } finally {
      const calls = parseTrace(await tracer.stop()).filter((c) => c.target.includes(root));
      const datasyncs = calls.filter((c) => c.name === 'fdatasync' && c.result === '0');
      const fsyncs = calls.filter((c) => c.name === 'fsync' && c.result === '0');
      assert.ok(datasyncs.length >= 2, `${datasyncs.length} background fdatasyncs`);
      // The file, then its folder after the rename.
      assert.ok(fsyncs.length >= 2, `${fsyncs.length} fsyncs`);
    }
    assert.ok((await readAll(await store.get(key, 'hot'))).equals(data));
  });

  it('treats a failed background fdatasync as a disk failure: refused, fail-stop, nothing left', async () => {
    const failures: Error[] = [];
    const store = openFsBlobStore(root, (err) => failures.push(err));
    const before = filesUnder(root);
    const tracer = await attachStrace(
      [process.pid],
      ['-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:when=1'],
      path.join(root, '..', `strace-eio-${randomUUID()}.txt`),
    );
    try {
      await assert.rejects(
        store.put(randomUUID(), body(randomBytes(4 * SYNC_EVERY_BYTES), 256 * 1024)),
        isCode('unavailable'),
      );
    } finally {
      await tracer.stop();
    }
    assert.equal(failures.length, 1, 'the store reported the I/O failure (fail-stop)');
    assert.equal((failures[0] as { code?: unknown }).code, 'EIO');
    assert.deepEqual(filesUnder(root), before);
  });
});
