// pgBackRest encrypts its repository with a passphrase (repo1-cipher-pass). Ours is derived from
// the installation's master key (HKDF-SHA256), so it is never chosen, typed or stored beside the
// repository: the database machine keeps it in its pgBackRest configuration file, and a restore
// elsewhere derives it again from the master key kept off both machines.
import fs from 'node:fs';
import { hkdfSync } from 'node:crypto';
import path from 'node:path';
import { MASTER_KEY_FILE, masterKeyId, parseMasterKeys } from '../../blobs/master-key.js';
import type { Config } from '../../config.js';
import { PgReplicationError } from './errors.js';

export interface RepositoryKey {
  /** The master key's public id (recorded in the configuration file; never the key). */
  keyId: string;
  /** The pgBackRest repository passphrase derived from it. */
  pass: string;
}

/** The passphrase derived from one master key. */
export function repositoryCipherPass(masterKey: Buffer): string {
  const derived = hkdfSync(
    'sha256',
    masterKey,
    Buffer.from('caretrail-pgbackrest-repository', 'utf8'),
    Buffer.from('repo1-cipher-pass v1', 'utf8'),
    48,
  );
  return Buffer.from(derived).toString('base64url');
}

/**
 * The passphrases of every master key this installation has, the active key first: a
 * repository is opened with the key it was created under, which may be an older one.
 * Unlike the server, this never creates a key file: a new key could not open any repository.
 */
export function repositoryKeys(config: Pick<Config, 'masterKey' | 'dataDir'>): RepositoryKey[] {
  let keys: Buffer[];
  try {
    if (config.masterKey.trim() !== '') keys = parseMasterKeys(config.masterKey);
    else {
      const file = path.join(config.dataDir, MASTER_KEY_FILE);
      if (!fs.existsSync(file))
        throw new PgReplicationError(
          `no master key: set CARETRAIL_MASTER_KEY or put the key file at ${file} (the replica's cipher pass is derived from it)`,
        );
      if ((fs.statSync(file).mode & 0o077) !== 0)
        throw new PgReplicationError(`${file} is readable by other users; run chmod 600 on it`);
      keys = parseMasterKeys(fs.readFileSync(file, 'utf8'));
    }
  } catch (err) {
    if (err instanceof PgReplicationError) throw err;
    throw new PgReplicationError(
      `cannot read the master key: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return keys.map((key) => ({ keyId: masterKeyId(key), pass: repositoryCipherPass(key) }));
}
