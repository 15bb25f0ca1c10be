// The master keys that wrap every blob's data key. The first key is active (wraps new data keys);
// the others only unwrap, during a rotation. Keys come from CARETRAIL_MASTER_KEY (comma-separated
// base64 of 32 bytes) or from the key file in the data folder, created with mode 0600 on first run.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const MASTER_KEY_FILE = 'master-keys';

export class MasterKeyError extends Error {}

export interface WrappedKey {
  keyId: string;
  /** base64: nonce (12) | wrapped data key (32) | tag (16) */
  wrapped: string;
}

export interface Keyring {
  readonly activeId: string;
  readonly ids: readonly string[];
  /** Where the keys came from: the key file's path, or null for the environment. */
  readonly file: string | null;
  wrap(dataKey: Buffer, context: string): WrappedKey;
  unwrap(key: WrappedKey, context: string): Buffer;
}

/** A short public name for a master key (never the key itself). */
export function masterKeyId(key: Buffer): string {
  return createHash('sha256')
    .update('caretrail-master-key-id\0')
    .update(key)
    .digest('hex')
    .slice(0, 16);
}

export function parseMasterKeys(text: string): Buffer[] {
  const keys = text
    .split(/[\s,]+/)
    .filter((s) => s !== '')
    .map((s) => Buffer.from(s, 'base64'));
  if (keys.length === 0) throw new MasterKeyError('no master key given');
  for (const key of keys) {
    if (key.length !== 32) {
      throw new MasterKeyError('every master key must be 32 bytes, base64-encoded');
    }
  }
  return keys;
}

export function formatMasterKeys(keys: readonly Buffer[]): string {
  return keys.map((k) => k.toString('base64')).join('\n') + '\n';
}

export function newMasterKey(): Buffer {
  return randomBytes(32);
}

/** Writes the key file atomically (temp file, fsync, rename, fsync folder), mode 0600. */
export function writeKeyFile(file: string, keys: readonly Buffer[]): void {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, formatMasterKeys(keys));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

function wrapAad(keyId: string, context: string): Buffer {
  return Buffer.from(`caretrail-data-key\0${keyId}\0${context}`, 'utf8');
}

export function createKeyring(keys: readonly Buffer[], file: string | null = null): Keyring {
  let byId = new Map(keys.map((k) => [masterKeyId(k), k]));
  const first = keys[0];
  if (!first) throw new MasterKeyError('no master key given');
  let active: Buffer = first;
  let activeId = masterKeyId(active);

  // `caretrail keys rotate`, run by another process, rewrites the key file: new data keys must be
  // wrapped by its new active key at once (checked by the file's change time before each wrap),
  // and a key id we do not know yet sends us back to the file.
  // A rotation renames a new file into place: the inode tells, where the change time may not
  // (it moves in coarse steps). A file that vanished keeps the keys already loaded.
  let loadedAt = '';
  const changedAt = (): string => {
    if (file === null) return '';
    try {
      const st = fs.statSync(file);
      return `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      return loadedAt;
    }
  };
  loadedAt = changedAt();
  const reload = (): void => {
    if (file === null || !fs.existsSync(file)) return;
    loadedAt = changedAt();
    const fresh = parseMasterKeys(fs.readFileSync(file, 'utf8'));
    byId = new Map([...byId, ...fresh.map((k) => [masterKeyId(k), k] as const)]);
    active = fresh[0] ?? active;
    activeId = masterKeyId(active);
  };

  return {
    get activeId() {
      if (file !== null && changedAt() !== loadedAt) reload();
      return activeId;
    },
    get ids() {
      return [...byId.keys()];
    },
    file,
    wrap(dataKey, context) {
      if (file !== null && changedAt() !== loadedAt) reload();
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', active, iv);
      cipher.setAAD(wrapAad(activeId, context));
      const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
      return {
        keyId: activeId,
        wrapped: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64'),
      };
    },
    unwrap(key, context) {
      let master = byId.get(key.keyId);
      if (!master) {
        reload();
        master = byId.get(key.keyId);
      }
      if (!master) {
        throw new MasterKeyError(
          `master key ${key.keyId} is not configured; add it to CARETRAIL_MASTER_KEY or the key file`,
        );
      }
      const raw = Buffer.from(key.wrapped, 'base64');
      const decipher = createDecipheriv('aes-256-gcm', master, raw.subarray(0, 12));
      decipher.setAAD(wrapAad(key.keyId, context));
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      try {
        return Buffer.concat([
          decipher.update(raw.subarray(12, raw.length - 16)),
          decipher.final(),
        ]);
      } catch {
        throw new MasterKeyError(`a data key wrapped by master key ${key.keyId} failed to unwrap`);
      }
    },
  };
}

/**
 * The keyring of this installation: CARETRAIL_MASTER_KEY when set, else the key file in the
 * data folder (created with one new key on first use).
 */
export function loadKeyring(dataDir: string, fromEnv: string | undefined): Keyring {
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return createKeyring(parseMasterKeys(fromEnv));
  }
  const file = path.join(dataDir, MASTER_KEY_FILE);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dataDir, { recursive: true });
    writeKeyFile(file, [newMasterKey()]);
  }
  const mode = fs.statSync(file).mode & 0o077;
  if (mode !== 0) {
    throw new MasterKeyError(
      `${file} is readable by other users; run chmod 600 on it before starting`,
    );
  }
  return createKeyring(parseMasterKeys(fs.readFileSync(file, 'utf8')), file);
}
