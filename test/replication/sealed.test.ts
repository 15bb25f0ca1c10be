// Sealed replica objects: what goes off the machine is unreadable without the master key, and an
// object altered, cut short, renamed or sealed under a key this installation lacks is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createKeyring, newMasterKey } from '../../src/blobs/master-key.js';
import { SealedObjectError, openObject, sealObject } from '../../src/replication/sealed.js';

const plain = Buffer.from('patient Biscuit, owner Olga Owner: x-ray clear', 'utf8');

test('a sealed object opens under its own name and hides its content', () => {
  const keyring = createKeyring([newMasterKey()]);
  const sealed = sealObject(keyring, 'generations/a/wal/00000001.seg', plain);
  assert.ok(!sealed.includes(Buffer.from('Biscuit')), 'no plain text in the sealed object');
  assert.deepEqual(openObject(keyring, 'generations/a/wal/00000001.seg', sealed), plain);
  // Each sealing uses a fresh data key and nonce.
  assert.ok(!sealObject(keyring, 'generations/a/wal/00000001.seg', plain).equals(sealed));
});

test('altered, cut short, renamed or foreign objects are refused with the reason', () => {
  const keyring = createKeyring([newMasterKey()]);
  const name = 'generations/a/snapshots/00000001.snap';
  const sealed = sealObject(keyring, name, plain);
  const flipped = Buffer.from(sealed);
  const at = flipped.length - 20;
  flipped[at] = (flipped[at] ?? 0) ^ 1;
  assert.throws(() => openObject(keyring, name, flipped), /altered or damaged/);
  assert.throws(() => openObject(keyring, name, sealed.subarray(0, 40)), SealedObjectError);
  assert.throws(
    () => openObject(keyring, 'generations/a/snapshots/00000002.snap', sealed),
    /sealed under another name/,
  );
  assert.throws(() => openObject(keyring, name, Buffer.from('plain text')), /not a sealed/);
  const stranger = createKeyring([newMasterKey()]);
  assert.throws(() => openObject(stranger, name, sealed), /does not have/);
});

test('after a key rotation, objects sealed under the old key still open', () => {
  const old = newMasterKey();
  const before = createKeyring([old]);
  const sealed = sealObject(before, 'anchors/00000009.json', plain);
  const rotated = createKeyring([newMasterKey(), old]);
  assert.deepEqual(openObject(rotated, 'anchors/00000009.json', sealed), plain);
});
