// Users (staff accounts) of an organization.
import { engineOf } from './dialect.js';
import type { NewUserRow, Tx, UserRow } from './tables.js';

export async function findUserByEmail(tx: Tx, email: string): Promise<UserRow | undefined> {
  return tx.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
}

export async function findUserById(tx: Tx, id: string): Promise<UserRow | undefined> {
  return tx.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function findUserInOrganization(
  tx: Tx,
  organizationId: string,
  id: string,
): Promise<UserRow | undefined> {
  return tx
    .selectFrom('users')
    .selectAll()
    .where('id', '=', id)
    .where('organization_id', '=', organizationId)
    .where('role', 'is not', null)
    .executeTakeFirst();
}

/** Display names of users by id (authors of notes and addenda). */
export async function userNames(tx: Tx, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await tx.selectFrom('users').select(['id', 'name']).where('id', 'in', ids).execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}

export async function insertUser(tx: Tx, row: NewUserRow): Promise<void> {
  await tx.insertInto('users').values(row).execute();
}

export async function countUsers(tx: Tx): Promise<number> {
  const row = await tx
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return row.n;
}

/**
 * Active admins of the organization. On PostgreSQL their rows are locked until the transaction
 * ends, so two admins demoting each other at once cannot both succeed.
 */
export async function countActiveAdmins(tx: Tx, organizationId: string): Promise<number> {
  let q = tx
    .selectFrom('users')
    .select('id')
    .where('organization_id', '=', organizationId)
    .where('role', '=', 'admin')
    .where('disabled', '=', 0);
  if (engineOf(tx) === 'postgres') q = q.forUpdate();
  return (await q.execute()).length;
}

export async function listUsers(
  tx: Tx,
  organizationId: string,
  page: { afterId: string | null; limit: number },
): Promise<UserRow[]> {
  let q = tx
    .selectFrom('users')
    .selectAll()
    .where('organization_id', '=', organizationId)
    // Integration accounts (no role) are managed through their keys, not as staff.
    .where('role', 'is not', null)
    .orderBy('id')
    .limit(page.limit);
  if (page.afterId !== null) q = q.where('id', '>', page.afterId);
  return q.execute();
}

export async function updateUser(
  tx: Tx,
  id: string,
  changes: Partial<
    Pick<
      UserRow,
      | 'role'
      | 'disabled'
      | 'name'
      | 'totp_secret'
      | 'totp_pending_secret'
      | 'totp_enabled'
      | 'totp_last_step'
    >
  > & {
    updated_at: string;
  },
): Promise<void> {
  await tx
    .updateTable('users')
    .set((eb) => ({ ...changes, version: eb('version', '+', 1) }))
    .where('id', '=', id)
    .execute();
}

/** Records that TOTP time step `step` was used; false when it (or a later one) already was. */
export async function useTotpStep(
  tx: Tx,
  userId: string,
  step: number,
  now: string,
): Promise<boolean> {
  const result = await tx
    .updateTable('users')
    .set({ totp_last_step: step, updated_at: now })
    .where('id', '=', userId)
    .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Where the organization's alerts go: its active admins. */
export async function activeAdminEmails(tx: Tx, organizationId: string): Promise<string[]> {
  const rows = await tx
    .selectFrom('users')
    .select('email')
    .where('organization_id', '=', organizationId)
    .where('role', '=', 'admin')
    .where('disabled', '=', 0)
    .execute();
  return rows.map((r) => r.email);
}
