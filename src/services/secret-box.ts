// Small secrets kept in the database (TOTP seeds) sealed by the master keyring, so a copy of the
// database alone does not give away anyone's second factor. Stored as "v1:<key id>:<wrapped>".
import type { Vault } from '../blobs/vault.js';

const PREFIX = 'v1:';

const contextOf = (userId: string) => `totp:${userId}`;

export function sealTotpSecret(vault: Vault, userId: string, secret: string): string {
  const w = vault.wrapSecret(Buffer.from(secret, 'utf8'), contextOf(userId));
  return `${PREFIX}${w.keyId}:${w.wrapped}`;
}

/** The secret in clear; values stored before sealing existed are returned as they are. */
export function openTotpSecret(vault: Vault, userId: string, stored: string): string {
  if (!stored.startsWith(PREFIX)) return stored;
  const [keyId = '', wrapped = ''] = stored.slice(PREFIX.length).split(':');
  return vault.unwrapSecret({ keyId, wrapped }, contextOf(userId)).toString('utf8');
}

/** Whether `stored` is sealed by master key `keyId` (false for legacy clear values). */
export function sealedBy(stored: string, keyId: string): boolean {
  return stored.startsWith(`${PREFIX}${keyId}:`);
}
