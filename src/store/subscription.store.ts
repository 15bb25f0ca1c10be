// Notification subscriptions: who wants to hear of which events, by email or webhook.
import type { SubscriptionRow, Tx } from './tables.js';

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
  return tx
    .selectFrom('subscriptions')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('disabled_at', 'is', null)
    .where((eb) => eb.or([eb('patient_id', 'is', null), eb('patient_id', '=', patientId)]))
    .orderBy('id')
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
