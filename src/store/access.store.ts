// The rows that decide patient access: the patient itself, live shares and break-glass grants.
import type { ExpressionBuilder } from 'kysely';
import { engineOf } from './dialect.js';
import { prepared } from './prepared.js';
import type { BreakGlassGrantRow, DB, PatientRow, ShareRow, Tx } from './tables.js';

/**
 * A share in force at `now`: not revoked, not expired, its consent (if it needed one) neither
 * revoked nor expired, and for owner access, the email still an owner's on record. Checked at
 * every request, so no job has to run for expiry.
 */
export function isLive(now: string) {
  return (eb: ExpressionBuilder<DB, 'shares' | 'consents'>) =>
    eb.and([
      eb('shares.revoked_at', 'is', null),
      eb.or([eb('shares.expires_at', 'is', null), eb('shares.expires_at', '>', now)]),
      eb.or([
        eb('shares.consent_id', 'is', null),
        eb.and([
          eb('consents.revoked_at', 'is', null),
          eb.or([eb('consents.expires_at', 'is', null), eb('consents.expires_at', '>', now)]),
        ]),
      ]),
      // Owner access lasts while the email belongs to an owner on record of the patient.
      eb.or([
        eb('shares.role', '<>', 'owner'),
        eb.exists(
          eb
            .selectFrom('patient_owners')
            .innerJoin('owners', 'owners.id', 'patient_owners.owner_id')
            .select('patient_owners.owner_id')
            .whereRef('patient_owners.patient_id', '=', 'shares.patient_id')
            .where((o) => o(o.fn('lower', ['owners.email']), '=', o.ref('shares.grantee_email'))),
        ),
      ]),
    ]);
}

/**
 * A patient by id, in whichever organization: callers decide access before disclosing it.
 * `forUpdate` serializes competing changes about one patient on PostgreSQL (SQLite has one
 * writer).
 */
const patientById = prepared((db, p: { id: string }) =>
  db.selectFrom('patients').selectAll().where('id', '=', p.id),
);
const patientByIdForUpdate = prepared((db, p: { id: string }) => {
  const query = db.selectFrom('patients').selectAll().where('id', '=', p.id);
  return engineOf(db) === 'postgres' ? query.forUpdate() : query;
});

export async function findPatientById(
  tx: Tx,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<PatientRow | undefined> {
  return (options.forUpdate === true ? patientByIdForUpdate : patientById).first(tx, { id });
}

/** The caller's live share of a patient; write access wins when there are several. */
export async function findLiveShare(
  tx: Tx,
  patientId: string,
  userId: string,
  now: string,
): Promise<ShareRow | undefined> {
  const rows = await tx
    .selectFrom('shares')
    .leftJoin('consents', 'consents.id', 'shares.consent_id')
    .selectAll('shares')
    .where('shares.patient_id', '=', patientId)
    .where('shares.grantee_user_id', '=', userId)
    .where(isLive(now))
    .orderBy('shares.access', 'desc')
    .orderBy('shares.id')
    .execute();
  return rows[0];
}

/** Patients the user holds a live share of (the portal's "my animals"), newest share first. */
export async function liveSharesOf(
  tx: Tx,
  userId: string,
  now: string,
  page: { beforeId: string | null; limit: number },
): Promise<ShareRow[]> {
  let q = tx
    .selectFrom('shares')
    .leftJoin('consents', 'consents.id', 'shares.consent_id')
    .selectAll('shares')
    .where('shares.grantee_user_id', '=', userId)
    .where(isLive(now))
    .orderBy('shares.id', 'desc')
    .limit(page.limit);
  if (page.beforeId !== null) q = q.where('shares.id', '<', page.beforeId);
  return q.execute();
}

export async function findLiveBreakGlass(
  tx: Tx,
  patientId: string,
  userId: string,
  now: string,
): Promise<BreakGlassGrantRow | undefined> {
  return tx
    .selectFrom('break_glass_grants')
    .selectAll()
    .where('patient_id', '=', patientId)
    .where('user_id', '=', userId)
    .where('expires_at', '>', now)
    .orderBy('expires_at', 'desc')
    .executeTakeFirst();
}

export async function insertBreakGlass(tx: Tx, row: BreakGlassGrantRow): Promise<void> {
  await tx.insertInto('break_glass_grants').values(row).execute();
}
