// Integration keys of devices and lab systems: stored as the SHA-256 of the key only.
import type { IntegrationKeyRow, Tx } from './tables.js';

export async function insertIntegrationKey(tx: Tx, row: IntegrationKeyRow): Promise<void> {
  await tx.insertInto('integration_keys').values(row).execute();
}

/** A key not revoked, by the hash of its token or by its id. */
export async function findLiveKey(
  tx: Tx,
  by: { keyHash: string } | { id: string },
): Promise<IntegrationKeyRow | undefined> {
  const query = tx.selectFrom('integration_keys').selectAll().where('revoked_at', 'is', null);
  return (
    'id' in by ? query.where('id', '=', by.id) : query.where('key_hash', '=', by.keyHash)
  ).executeTakeFirst();
}

export async function keysOf(
  tx: Tx,
  organizationId: string,
  page: { beforeId: string | null; limit: number },
): Promise<IntegrationKeyRow[]> {
  return tx
    .selectFrom('integration_keys')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .$if(page.beforeId !== null, (q) => q.where('id', '<', page.beforeId ?? ''))
    .orderBy('id', 'desc')
    .limit(page.limit)
    .execute();
}

export async function revokeKey(
  tx: Tx,
  organizationId: string,
  id: string,
  now: string,
): Promise<'revoked' | 'already' | 'missing'> {
  const row = await tx
    .selectFrom('integration_keys')
    .select(['id', 'revoked_at'])
    .where('id', '=', id)
    .where('organization_id', '=', organizationId)
    .executeTakeFirst();
  if (!row) return 'missing';
  if (row.revoked_at !== null) return 'already';
  await tx.updateTable('integration_keys').set({ revoked_at: now }).where('id', '=', id).execute();
  return 'revoked';
}

export async function touchKey(tx: Tx, id: string, now: string): Promise<void> {
  await tx
    .updateTable('integration_keys')
    .set({ last_used_at: now })
    .where('id', '=', id)
    .execute();
}
