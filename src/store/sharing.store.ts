// Shares of a patient with people, their invitations, and the owner consents they rest on.
import { engineOf } from './dialect.js';
import type { ConsentRow, ConsentVersionRow, InvitationRow, ShareRow, Tx } from './tables.js';

export async function insertShare(tx: Tx, row: ShareRow): Promise<void> {
  await tx.insertInto('shares').values(row).execute();
}

export async function findShare(
  tx: Tx,
  patientId: string,
  id: string,
): Promise<ShareRow | undefined> {
  return tx
    .selectFrom('shares')
    .selectAll()
    .where('id', '=', id)
    .where('patient_id', '=', patientId)
    .executeTakeFirst();
}

/** A share with the consent it rests on, as far as the share's status goes. */
export type ShareWithConsent = ShareRow & {
  consent_expires_at: string | null;
  consent_revoked_at: string | null;
};

/** Every share of a patient, newest first, revoked and expired ones included (it is a record). */
export async function sharesOf(
  tx: Tx,
  patientId: string,
  page: { beforeId: string | null; limit: number },
): Promise<ShareWithConsent[]> {
  return tx
    .selectFrom('shares')
    .leftJoin('consents', 'consents.id', 'shares.consent_id')
    .selectAll('shares')
    .select([
      'consents.expires_at as consent_expires_at',
      'consents.revoked_at as consent_revoked_at',
    ])
    .where('shares.patient_id', '=', patientId)
    .$if(page.beforeId !== null, (q) => q.where('shares.id', '<', page.beforeId ?? ''))
    .orderBy('shares.id', 'desc')
    .limit(page.limit)
    .execute();
}

export async function revokeShare(tx: Tx, id: string, by: string, now: string): Promise<boolean> {
  const result = await tx
    .updateTable('shares')
    .set({ revoked_at: now, revoked_by: by })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Ends every share that rests on a consent (the owner withdrew it). Returns how many. */
export async function revokeSharesOfConsent(
  tx: Tx,
  consentId: string,
  by: string,
  now: string,
): Promise<number> {
  const result = await tx
    .updateTable('shares')
    .set({ revoked_at: now, revoked_by: by })
    .where('consent_id', '=', consentId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Ends the owner shares of a patient whose email is no longer any owner's on record. */
export async function revokeOwnerSharesOffRecord(
  tx: Tx,
  patientId: string,
  by: string,
  now: string,
): Promise<number> {
  const owners = await tx
    .selectFrom('patient_owners')
    .innerJoin('owners', 'owners.id', 'patient_owners.owner_id')
    .select('owners.email')
    .where('patient_owners.patient_id', '=', patientId)
    .execute();
  const emails = owners.flatMap((o) => (o.email ? [o.email.toLowerCase()] : []));
  const result = await tx
    .updateTable('shares')
    .set({ revoked_at: now, revoked_by: by })
    .where('patient_id', '=', patientId)
    .where('role', '=', 'owner')
    .where('revoked_at', 'is', null)
    .$if(emails.length > 0, (q) => q.where('grantee_email', 'not in', emails))
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Shares waiting for an account with this email get the new account's id. */
export async function linkSharesToUser(tx: Tx, email: string, userId: string): Promise<number> {
  const result = await tx
    .updateTable('shares')
    .set({ grantee_user_id: userId })
    .where('grantee_email', '=', email)
    .where('grantee_user_id', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function insertInvitation(tx: Tx, row: InvitationRow): Promise<void> {
  await tx.insertInto('invitations').values(row).execute();
}

/** An unused, unexpired invitation, without claiming it (to check the acceptor first). */
export async function findUsableInvitation(
  tx: Tx,
  tokenHash: string,
  now: string,
): Promise<InvitationRow | undefined> {
  return tx
    .selectFrom('invitations')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
}

/** Claims an unused, unexpired invitation; a second claim (a replayed link) finds nothing. */
export async function claimInvitation(
  tx: Tx,
  tokenHash: string,
  now: string,
): Promise<InvitationRow | undefined> {
  let q = tx
    .selectFrom('invitations')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now);
  if (engineOf(tx) === 'postgres') q = q.forUpdate();
  const row = await q.executeTakeFirst();
  if (!row) return undefined;
  const result = await tx
    .updateTable('invitations')
    .set({ used_at: now })
    .where('id', '=', row.id)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1 ? row : undefined;
}

export async function insertConsent(tx: Tx, row: ConsentRow): Promise<void> {
  await tx.insertInto('consents').values(row).execute();
}

export async function findConsent(tx: Tx, id: string): Promise<ConsentRow | undefined> {
  let q = tx.selectFrom('consents').selectAll().where('id', '=', id);
  if (engineOf(tx) === 'postgres') q = q.forUpdate();
  return q.executeTakeFirst();
}

/** The consent in force for sharing this patient with this email, widest scope first. */
export async function findLiveConsent(
  tx: Tx,
  patientId: string,
  email: string,
  now: string,
): Promise<ConsentRow | undefined> {
  const rows = await tx
    .selectFrom('consents')
    .selectAll()
    .where('patient_id', '=', patientId)
    .where('grantee_email', '=', email)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .orderBy('scope', 'desc')
    .orderBy('id', 'desc')
    .execute();
  return rows[0];
}

export async function consentsOf(
  tx: Tx,
  patientId: string,
  page: { beforeId: string | null; limit: number },
): Promise<ConsentRow[]> {
  return tx
    .selectFrom('consents')
    .selectAll()
    .where('patient_id', '=', patientId)
    .$if(page.beforeId !== null, (q) => q.where('id', '<', page.beforeId ?? ''))
    .orderBy('id', 'desc')
    .limit(page.limit)
    .execute();
}

export async function updateConsent(
  tx: Tx,
  id: string,
  expectedVersion: number,
  changes: Pick<ConsentRow, 'revoked_at' | 'revoked_by'>,
): Promise<boolean> {
  const result = await tx
    .updateTable('consents')
    .set({ ...changes, version: expectedVersion + 1 })
    .where('id', '=', id)
    .where('version', '=', expectedVersion)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function insertConsentVersion(tx: Tx, row: ConsentVersionRow): Promise<void> {
  await tx.insertInto('consent_versions').values(row).execute();
}

export async function consentVersionsOf(tx: Tx, consentId: string) {
  return tx
    .selectFrom('consent_versions')
    .selectAll()
    .where('consent_id', '=', consentId)
    .orderBy('version')
    .execute();
}
