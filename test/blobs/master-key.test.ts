// Tests for the master keyring: context binding, the private key file, rotation by another process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  MASTER_KEY_FILE,
  MasterKeyError,
  createKeyring,
  formatMasterKeys,
  loadKeyring,
  masterKeyId,
  newMasterKey,
  parseMasterKeys,
  writeKeyFile,
} from '../../src/blobs/master-key.js';
import { newDataKey } from '../../src/blobs/blob-crypto.js';
import { tempDir } from '../helpers/engines.js';

const dirs: string[] = [];
const freshDir = (): string => {
  const dir = tempDir('caretrail-keys-');
  dirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Sets a file's times an hour back, as for a key file written long before this process. */
function ageFile(file: string): void {
  const anHourAgo = new Date(Date.now() - 3600_000);
  fs.utimesSync(file, anHourAgo, anHourAgo);
}

describe('wrapping data keys', () => {
  it('unwraps a data key only under the context it was wrapped for', () => {
    const keyring = createKeyring([newMasterKey()]);
    const dataKey = newDataKey();
    const wrapped = keyring.wrap(dataKey, 'blob-a');
    assert.equal(wrapped.keyId, keyring.activeId);
    assert.ok(!Buffer.from(wrapped.wrapped, 'base64').includes(dataKey));
    assert.ok(keyring.unwrap(wrapped, 'blob-a').equals(dataKey));
    assert.throws(
      () => keyring.unwrap(wrapped, 'blob-b'),
      (err: unknown) =>
        err instanceof MasterKeyError &&
        err.message.includes(wrapped.keyId) &&
        /unwrap/.test(err.message),
    );
  });

  it('rejects a wrapped key that was altered', () => {
    const keyring = createKeyring([newMasterKey()]);
    const wrapped = keyring.wrap(newDataKey(), 'blob-a');
    const raw = Buffer.from(wrapped.wrapped, 'base64');
    raw.writeUInt8(raw.readUInt8(20) ^ 1, 20);
    assert.throws(
      () => keyring.unwrap({ ...wrapped, wrapped: raw.toString('base64') }, 'blob-a'),
      MasterKeyError,
    );
  });

  it('names an unknown master key by its id, never by the key', () => {
    const theirs = newMasterKey();
    const wrapped = createKeyring([theirs]).wrap(newDataKey(), 'blob-a');
    const ours = createKeyring([newMasterKey()]);
    assert.throws(
      () => ours.unwrap(wrapped, 'blob-a'),
      (err: unknown) => {
        assert.ok(err instanceof MasterKeyError);
        assert.ok(err.message.includes(masterKeyId(theirs)), err.message);
        assert.ok(!err.message.includes(theirs.toString('base64')));
        assert.ok(!err.message.includes(theirs.toString('hex')));
        return true;
      },
    );
  });

  it('wraps with the first key of a list and unwraps with any of them', () => {
    const [oldKey, newKey] = [newMasterKey(), newMasterKey()];
    const dataKey = newDataKey();
    const before = createKeyring([oldKey]).wrap(dataKey, 'blob-a');
    const rotated = createKeyring([newKey, oldKey]);
    assert.equal(rotated.activeId, masterKeyId(newKey));
    assert.deepEqual([...rotated.ids].sort(), [masterKeyId(newKey), masterKeyId(oldKey)].sort());
    assert.ok(rotated.unwrap(before, 'blob-a').equals(dataKey));
    assert.equal(rotated.wrap(dataKey, 'blob-a').keyId, masterKeyId(newKey));
  });
});

describe('loadKeyring', () => {
  it('creates the key file with mode 0600 on first use and reads the same key next time', () => {
    const dir = path.join(freshDir(), 'data');
    const first = loadKeyring(dir, undefined);
    const file = path.join(dir, MASTER_KEY_FILE);
    assert.equal(first.file, file);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const wrapped = first.wrap(newDataKey(), 'ctx');
    const second = loadKeyring(dir, undefined);
    assert.equal(second.activeId, first.activeId);
    assert.doesNotThrow(() => second.unwrap(wrapped, 'ctx'));
  });

  for (const mode of [0o640, 0o604, 0o644]) {
    it(`refuses a key file with mode ${mode.toString(8)}`, () => {
      const dir = freshDir();
      const file = path.join(dir, MASTER_KEY_FILE);
      fs.writeFileSync(file, formatMasterKeys([newMasterKey()]));
      fs.chmodSync(file, mode);
      assert.throws(() => loadKeyring(dir, undefined), /chmod 600/);
    });
  }

  it('takes the keys from the environment when given: first active, the others unwrap only', () => {
    const dir = freshDir();
    const [newKey, oldKey] = [newMasterKey(), newMasterKey()];
    const dataKey = newDataKey();
    const before = createKeyring([oldKey]).wrap(dataKey, 'ctx');
    const env = `${newKey.toString('base64')}, ${oldKey.toString('base64')}`;
    const keyring = loadKeyring(dir, env);
    assert.equal(keyring.file, null);
    assert.equal(keyring.activeId, masterKeyId(newKey));
    assert.ok(keyring.unwrap(before, 'ctx').equals(dataKey));
    assert.equal(keyring.wrap(dataKey, 'ctx').keyId, masterKeyId(newKey));
    assert.equal(fs.existsSync(path.join(dir, MASTER_KEY_FILE)), false);
  });

  it('rejects an environment key that is not 32 bytes of base64', () => {
    assert.throws(() => loadKeyring(freshDir(), Buffer.alloc(16).toString('base64')), /32 bytes/);
  });
});

describe('rotation by another process', () => {
  it('wraps with the new active key once another keyring rewrote the file', () => {
    const dir = freshDir();
    const file = path.join(dir, MASTER_KEY_FILE);
    loadKeyring(dir, undefined);
    ageFile(file);
    const running = loadKeyring(dir, undefined);
    const oldId = running.activeId;
    const oldWrapped = running.wrap(newDataKey(), 'blob-old');

    // What `caretrail keys rotate` does from its own process.
    const rotating = loadKeyring(dir, undefined);
    const oldKeys = parseMasterKeys(fs.readFileSync(file, 'utf8'));
    const fresh = newMasterKey();
    writeKeyFile(file, [fresh, ...oldKeys]);
    assert.equal(rotating.activeId, masterKeyId(fresh));

    assert.equal(running.activeId, masterKeyId(fresh));
    const dataKey = newDataKey();
    const wrapped = running.wrap(dataKey, 'blob-new');
    assert.equal(wrapped.keyId, masterKeyId(fresh));
    assert.ok(createKeyring([fresh]).unwrap(wrapped, 'blob-new').equals(dataKey));
    assert.doesNotThrow(() => running.unwrap(oldWrapped, 'blob-old'));
    assert.notEqual(oldId, masterKeyId(fresh));

    // The rotation ends with only the new key in the file: the running keyring keeps up.
    writeKeyFile(file, [fresh]);
    assert.equal(running.wrap(dataKey, 'blob-new-2').keyId, masterKeyId(fresh));
  });

  it('unwraps a data key wrapped by a master key it has not seen yet, from the file', () => {
    const dir = freshDir();
    const file = path.join(dir, MASTER_KEY_FILE);
    loadKeyring(dir, undefined);
    ageFile(file);
    const running = loadKeyring(dir, undefined);
    const fresh = newMasterKey();
    writeKeyFile(file, [fresh]);
    // No wrap in between: only the unknown key id can send the keyring back to the file.
    const dataKey = newDataKey();
    const wrapped = createKeyring([fresh]).wrap(dataKey, 'ctx');
    assert.ok(running.unwrap(wrapped, 'ctx').equals(dataKey));
  });

  it('notices a rotation written within the same file-system clock tick as the load', () => {
    const dir = freshDir();
    const running = loadKeyring(dir, undefined);
    const file = path.join(dir, MASTER_KEY_FILE);
    const fresh = newMasterKey();
    writeKeyFile(file, [fresh]);
    assert.equal(running.activeId, masterKeyId(fresh));
  });
});
