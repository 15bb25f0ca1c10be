// The transactional outbox: work that must happen after a commit (thumbnails, notifications,
// blob removal) is inserted in the same transaction as the change that causes it, then claimed
// by any instance with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL).
import { uuidv7 } from '../domain/ids.js';
import { engineOf } from './dialect.js';
import type { OutboxRow, Tx } from './tables.js';

export type OutboxTopic =
  | 'preview'
  | 'event'
  | 'deliver'
  | 'blob.delete'
  | 'mail'
  | 'audit.anchor'
  | 'blob.replicate'
  | 'blob.replica.delete';

export interface NewOutboxItem {
  topic: OutboxTopic;
  payload: unknown;
  organizationId?: string | null;
  subscriptionId?: string | null;
  eventId?: string | null;
  availableAt?: string;
}

export async function enqueue(tx: Tx, now: Date, item: NewOutboxItem): Promise<string> {
  const id = uuidv7(now.getTime());
  const at = now.toISOString();
  await tx
    .insertInto('outbox')
    .values({
      id,
      topic: item.topic,
      payload: JSON.stringify(item.payload),
      status: 'pending',
      attempts: 0,
      available_at: item.availableAt ?? at,
      locked_until: null,
      last_error: null,
      organization_id: item.organizationId ?? null,
      subscription_id: item.subscriptionId ?? null,
      event_id: item.eventId ?? null,
      created_at: at,
      done_at: null,
    })
    .execute();
  return id;
}

/**
 * Leases up to `limit` due items until `leaseUntil` and counts the attempt. An item whose lease
 * ran out (its worker died) is due again.
 */
export async function claimDue(
  tx: Tx,
  now: string,
  leaseUntil: string,
  limit: number,
): Promise<OutboxRow[]> {
  const due = await tx
    .selectFrom('outbox')
    .select('id')
    .where('status', '=', 'pending')
    .where('available_at', '<=', now)
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', now)]))
    .orderBy('available_at')
    .limit(limit)
    .$if(engineOf(tx) === 'postgres', (q) => q.forUpdate().skipLocked())
    .execute();
  if (due.length === 0) return [];
  return tx
    .updateTable('outbox')
    .set((eb) => ({ locked_until: leaseUntil, attempts: eb('attempts', '+', 1) }))
    .where(
      'id',
      'in',
      due.map((d) => d.id),
    )
    .returningAll()
    .execute();
}

/**
 * Marks an item done if this attempt still holds it. Throws when another instance re-claimed it
 * (the lease ran out), so a database-only handler's work rolls back instead of running twice.
 */
export async function markDone(tx: Tx, id: string, attempts: number, at: string): Promise<void> {
  const result = await tx
    .updateTable('outbox')
    .set({ status: 'done', done_at: at, locked_until: null, last_error: null })
    .where('id', '=', id)
    .where('attempts', '=', attempts)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1)
    throw new Error('the outbox item was claimed again by another attempt');
}

/** A failed attempt: due again at `retryAt`, or dead-lettered when `retryAt` is null. */
export async function markFailed(
  tx: Tx,
  id: string,
  attempts: number,
  error: string,
  retryAt: string | null,
): Promise<void> {
  await tx
    .updateTable('outbox')
    .set(
      retryAt === null
        ? { status: 'dead', locked_until: null, last_error: error }
        : { available_at: retryAt, locked_until: null, last_error: error },
    )
    .where('id', '=', id)
    .where('attempts', '=', attempts)
    .execute();
}

/**
 * Gives up the deliveries of a subscription that are still waiting (it was deleted), so none is
 * sent later and none is reported as delivered. Returns how many were given up.
 */
export async function cancelPendingDeliveries(
  tx: Tx,
  subscriptionId: string,
  reason: string,
): Promise<number> {
  const result = await tx
    .updateTable('outbox')
    .set({ status: 'dead', locked_until: null, last_error: reason })
    .where('subscription_id', '=', subscriptionId)
    .where('topic', '=', 'deliver')
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function outboxCounts(tx: Tx): Promise<Record<string, number>> {
  const rows = await tx
    .selectFrom('outbox')
    .select(['topic', 'status', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy(['topic', 'status'])
    .execute();
  return Object.fromEntries(rows.map((r) => [`${r.topic}.${r.status}`, r.n]));
}

export async function deliveriesOf(
  tx: Tx,
  subscriptionId: string,
  page: { beforeId: string | null; limit: number },
): Promise<OutboxRow[]> {
  let q = tx
    .selectFrom('outbox')
    .selectAll()
    .where('subscription_id', '=', subscriptionId)
    .orderBy('id', 'desc')
    .limit(page.limit);
  if (page.beforeId !== null) q = q.where('id', '<', page.beforeId);
  return q.execute();
}

export async function findOutboxItem(tx: Tx, id: string): Promise<OutboxRow | undefined> {
  return tx.selectFrom('outbox').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * How the items of one topic fare: the newest done, how many wait or were given up, and the
 * oldest waiting one (its error, attempts and next attempt), for status pages.
 */
export async function topicProgress(
  tx: Tx,
  topic: OutboxTopic,
): Promise<{
  newestDone: OutboxRow | undefined;
  pending: number;
  dead: number;
  oldestPending: OutboxRow | undefined;
}> {
  const newestDone = await tx
    .selectFrom('outbox')
    .selectAll()
    .where('topic', '=', topic)
    .where('status', '=', 'done')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  const counts = await tx
    .selectFrom('outbox')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .where('topic', '=', topic)
    .where('status', 'in', ['pending', 'dead'])
    .groupBy('status')
    .execute();
  const oldestPending = await tx
    .selectFrom('outbox')
    .selectAll()
    .where('topic', '=', topic)
    .where('status', '=', 'pending')
    .orderBy('id')
    .limit(1)
    .executeTakeFirst();
  const count = (status: string) => counts.find((c) => c.status === status)?.n ?? 0;
  return { newestDone, pending: count('pending'), dead: count('dead'), oldestPending };
}
