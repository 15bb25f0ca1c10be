// Notification subscriptions: who wants to hear of which events, by email or webhook.
// A subscription is its creator's: it is heard only while the creator is an enabled member of its
// organization whose role may manage subscriptions (a disabled or demoted user's subscriptions
// fall silent, and speak again if the account is restored).
import { rolesWith } from '../domain/roles.js';
import type { SubscriptionRow, Tx } from './tables.js';

/** Only subscriptions whose creator may still hold them (see the header). */
function creatorMayHold(tx: Tx) {
  return tx
    .selectFrom('subscriptions')
    .innerJoin('users', 'users.id', 'subscriptions.created_by')
    .selectAll('subscriptions')
    .where('users.disabled', '=', 0)
    .whereRef('users.organization_id', '=', 'subscriptions.organization_id')
    .where('users.role', 'in', rolesWith('subscriptions.manage'));
}

export async function insertSubscription(tx: Tx, row: SubscriptionRow): Promise<void> {
  await tx.insertInto('subscriptions').values(row).execute();
}

export async function findSubscription(
  tx: Tx,
  organizationId: string,
  id: string,
): Promise<SubscriptionRow | undefined> {
  return tx
    .selectFrom('subscriptions')
    .selectAll()
    .where('id', '=', id)
    .where('organization_id', '=', organizationId)
    .executeTakeFirst();
}

export async function findSubscriptionById(
  tx: Tx,
  id: string,
): Promise<SubscriptionRow | undefined> {
  return tx.selectFrom('subscriptions').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The subscription a queued delivery is for, if it is still live and its creator may hold it. */
export async function deliverableSubscription(
  tx: Tx,
  id: string,
): Promise<SubscriptionRow | undefined> {
  return creatorMayHold(tx)
    .where('subscriptions.id', '=', id)
    .where('subscriptions.disabled_at', 'is', null)
    .executeTakeFirst();
}

export async function listSubscriptions(
  tx: Tx,
  organizationId: string,
): Promise<SubscriptionRow[]> {
  return tx
    .selectFrom('subscriptions')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('disabled_at', 'is', null)
    .orderBy('id')
    .execute();
}

/** Active subscriptions of an organization that cover `patientId` (or all its patients). */
export async function subscribersOf(
  tx: Tx,
  organizationId: string,
  patientId: string,
): Promise<SubscriptionRow[]> {
  return creatorMayHold(tx)
    .where('subscriptions.organization_id', '=', organizationId)
    .where('subscriptions.disabled_at', 'is', null)
    .where((eb) =>
      eb.or([
        eb('subscriptions.patient_id', 'is', null),
        eb('subscriptions.patient_id', '=', patientId),
      ]),
    )
    .orderBy('subscriptions.id')
    .execute();
}

export async function disableSubscription(tx: Tx, id: string, at: string): Promise<boolean> {
  const result = await tx
    .updateTable('subscriptions')
    .set({ disabled_at: at })
    .where('id', '=', id)
    .where('disabled_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function subscriptionsWrappedByOtherKeys(
  tx: Tx,
  activeId: string,
  limit: number,
): Promise<SubscriptionRow[]> {
  return tx
    .selectFrom('subscriptions')
    .selectAll()
    .where('secret_key_id', 'is not', null)
    .where('secret_key_id', '!=', activeId)
    .limit(limit)
    .execute();
}
