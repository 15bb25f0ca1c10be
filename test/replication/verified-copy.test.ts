// The verified copy behind blob replication and restore, on real folder stores, inline and on a
// cipher thread: the same ciphertext arrives; a blob that is longer or shorter than recorded,
// altered, another blob's bytes, or under an unknown master key is refused with nothing left on
// the target; a missing blob and a failing target are told apart.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BlobIntegrityError } from '../../src/blobs/blob-crypto.js';
import { BlobNotFoundError, type BlobStore } from '../../src/blobs/blob-store.js';
import { createCipherPool, type CipherPool } from '../../src/blobs/cipher-pool.js';
import { openFsBlobStore } from '../../src/blobs/fs-blob-store.js';
import { MasterKeyError, createKeyring, newMasterKey } from '../../src/blobs/master-key.js';
import { createVault, type StoredBlob, type Vault } from '../../src/blobs/vault.js';
import { TargetStoreError, copyVerified } from '../../src/replication/blobs/verified-copy.js';
import { tempDir } from '../helpers/engines.js';
import { readAll } from '../helpers/streams.js';

for (const threads of [0, 1]) {
  describe(`copyVerified [${threads === 0 ? 'inline' : 'cipher thread'}]`, () => {
    const roots: string[] = [];
    let pool: CipherPool | null = null;
    let vault: Vault;
    let source: BlobStore;
    let target: BlobStore;
    let targetRoot = '';
    const keyring = createKeyring([newMasterKey()]);
    const rawOf = (root: string, key: string) => path.join(root, 'objects', key.slice(0, 2), key);
    let sourceRoot = '';

    before(() => {
      sourceRoot = tempDir('caretrail-copy-from-');
      targetRoot = tempDir('caretrail-copy-to-');
      roots.push(sourceRoot, targetRoot);
      pool = threads > 0 ? createCipherPool(threads) : null;
      source = openFsBlobStore(sourceRoot);
      target = openFsBlobStore(targetRoot);
      vault = createVault(source, keyring, pool);
    });
    after(async () => {
      await vault.close();
      for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
    });

    const store = (bytes: number): Promise<StoredBlob> =>
      vault.put(Readable.from([randomBytes(bytes)]), 10 * 1024 * 1024);
    const copy = (ref: StoredBlob, to: BlobStore | null = target) =>
      copyVerified({ from: source, to, ref, keyring, pool });
    const onTarget = (key: string) => fs.existsSync(rawOf(targetRoot, key));
    const leftovers = () => fs.readdirSync(path.join(targetRoot, 'tmp'));

    /** Rewrites the source's bytes of `ref`. */
    const tamper = (ref: StoredBlob, change: (bytes: Buffer) => Buffer) => {
      const file = rawOf(sourceRoot, ref.blobKey);
      fs.writeFileSync(file, change(fs.readFileSync(file)));
    };

    test('copies the very ciphertext, several chunks long, and checks it without writing', async () => {
      const ref = await store(700_000);
      const result = await copy(ref);
      const copied = fs.readFileSync(rawOf(targetRoot, ref.blobKey));
      assert.ok(copied.equals(fs.readFileSync(rawOf(sourceRoot, ref.blobKey))));
      assert.equal(result.bytes, copied.length);
      assert.equal((await copy(ref, null)).bytes, copied.length);
      assert.equal((await copy(ref)).sha256, result.sha256, 'a second copy is the same');
      assert.equal(
        (await readAll(await vault.open(ref))).length,
        700_000,
        'the source is untouched',
      );
    });

    const refused: [string, (b: Buffer) => Buffer][] = [
      ['longer than recorded', (b) => Buffer.concat([b, Buffer.from('extra')])],
      ['shorter than recorded', (b) => b.subarray(0, b.length - 1)],
      [
        'altered in its last chunk',
        (b) => {
          const c = Buffer.from(b);
          c.writeUInt8(c.readUInt8(c.length - 20) ^ 1, c.length - 20);
          return c;
        },
      ],
      [
        'with a damaged header',
        (b) => {
          const c = Buffer.from(b);
          c.writeUInt8(1, 12);
          return c;
        },
      ],
    ];
    for (const [what, change] of refused) {
      test(`refuses a blob ${what}, leaving nothing on the target`, async () => {
        const ref = await store(300_000);
        tamper(ref, change);
        await assert.rejects(copy(ref), BlobIntegrityError);
        await assert.rejects(copy(ref, null), BlobIntegrityError);
        assert.equal(onTarget(ref.blobKey), false);
        assert.deepEqual(leftovers(), []);
      });
    }

    test("refuses another blob's bytes under this key, and an unknown master key", async () => {
      const ref = await store(10_000);
      const other = await store(10_000);
      tamper(ref, () => fs.readFileSync(rawOf(sourceRoot, other.blobKey)));
      await assert.rejects(copy(ref), BlobIntegrityError);
      const foreign = createKeyring([newMasterKey()]).wrap(randomBytes(32), other.blobKey);
      await assert.rejects(copy({ ...other, ...foreign }), MasterKeyError);
      assert.equal(onTarget(ref.blobKey) || onTarget(other.blobKey), false);
    });

    test('tells a missing blob from a target that cannot be written', async () => {
      const ref = await store(20_000);
      fs.rmSync(rawOf(sourceRoot, ref.blobKey));
      await assert.rejects(copy(ref), BlobNotFoundError);
      const good = await store(20_000);
      const tmp = path.join(targetRoot, 'tmp');
      fs.rmSync(tmp, { recursive: true });
      fs.writeFileSync(tmp, 'not a folder');
      try {
        await assert.rejects(copy(good), TargetStoreError);
      } finally {
        fs.rmSync(tmp);
        fs.mkdirSync(tmp);
      }
      await copy(good);
      assert.equal(onTarget(good.blobKey), true);
    });
  });
}
