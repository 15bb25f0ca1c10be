// One-time first-run setup tokens (stored hashed).
import type { Tx } from './tables.js';

export async function insertSetupToken(
  tx: Tx,
  row: { token_hash: string; created_at: string; expires_at: string },
): Promise<void> {
  await tx
    .insertInto('setup_tokens')
    .values({ ...row, used_at: null })
    .execute();
}

/** Marks a valid, unused token as used; false when it is unknown, used or expired. */
export async function consumeSetupToken(tx: Tx, tokenHash: string, now: string): Promise<boolean> {
  const result = await tx
    .updateTable('setup_tokens')
    .set({ used_at: now })
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
