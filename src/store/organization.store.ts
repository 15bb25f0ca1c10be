// Organizations.
import type { Tx } from './tables.js';

export async function findOrganizationByName(tx: Tx, name: string) {
  return tx.selectFrom('organizations').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function insertOrganization(
  tx: Tx,
  row: { id: string; name: string; created_at: string },
): Promise<void> {
  await tx.insertInto('organizations').values(row).execute();
}
