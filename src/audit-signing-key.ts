// The Ed25519 key that signs audit checkpoints. It never goes into the database: it comes from
// CARETRAIL_AUDIT_SIGNING_KEY or from a file in the data folder created with mode 0600.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { checkpointPayload, keyIdOf, type Checkpoint } from './domain/audit-verify.js';

export interface AuditSigner {
  keyId: string;
  sign(c: Omit<Checkpoint, 'signature' | 'keyId'>): Checkpoint;
  /** True when the checkpoint was signed by this key (the only key trusted). */
  verify(c: Checkpoint): boolean;
}

export const SIGNING_KEY_FILE = 'audit-signing-key.pem';

function parseKey(text: string): KeyObject {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) return createPrivateKey(trimmed.replace(/\\n/g, '\n'));
  return createPrivateKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'pkcs8' });
}

/** Loads the key from `fromEnv` (PEM or base64 PKCS#8) or the data folder, creating it if absent. */
export function loadAuditSigner(dataDir: string, fromEnv: string | undefined): AuditSigner {
  let privateKey: KeyObject;
  if (fromEnv !== undefined && fromEnv !== '') {
    try {
      privateKey = parseKey(fromEnv);
    } catch {
      throw new Error(
        'CARETRAIL_AUDIT_SIGNING_KEY must be an Ed25519 private key (PKCS#8 PEM or base64 DER).',
      );
    }
  } else {
    const file = path.join(dataDir, SIGNING_KEY_FILE);
    if (!fs.existsSync(file)) {
      fs.mkdirSync(dataDir, { recursive: true });
      const { privateKey: created } = generateKeyPairSync('ed25519');
      // 'wx': never overwrite a key another process created meanwhile.
      try {
        fs.writeFileSync(file, created.export({ format: 'pem', type: 'pkcs8' }), {
          mode: 0o600,
          flag: 'wx',
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    const mode = fs.statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0)
      throw new Error(`${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it.`);
    privateKey = parseKey(fs.readFileSync(file, 'utf8'));
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new Error('The audit signing key must be an Ed25519 key.');
  const publicKey = createPublicKey(privateKey);
  const keyId = keyIdOf(publicKey.export({ format: 'der', type: 'spki' }));
  return {
    keyId,
    sign: (c) => {
      const payload = { ...c, keyId };
      return {
        ...payload,
        signature: sign(null, checkpointPayload(payload), privateKey).toString('base64'),
      };
    },
    verify: (c) => {
      if (c.keyId !== keyId) return false;
      try {
        return verify(null, checkpointPayload(c), publicKey, Buffer.from(c.signature, 'base64'));
      } catch {
        return false;
      }
    },
  };
}
