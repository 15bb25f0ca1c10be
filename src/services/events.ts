// Domain events that subscribers can be notified of. An event is an outbox row written in the
// same transaction as the change it announces, so it is never sent for a change that did not
// commit, and never lost for one that did.
import { uuidv7 } from '../domain/ids.js';
import { enqueue } from '../store/outbox.store.js';
import type { Tx } from '../store/tables.js';

export const EVENT_TYPES = ['document.created', 'note.finalized', 'result.received'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface DomainEvent {
  id: string;
  type: EventType;
  occurredAt: string;
  organizationId: string;
  patientId: string;
  /** Ids of what changed; receivers fetch the content through the API with their own rights. */
  data: Record<string, string | number>;
}

export async function emitEvent(
  tx: Tx,
  now: Date,
  event: Omit<DomainEvent, 'id' | 'occurredAt'>,
): Promise<DomainEvent> {
  const full: DomainEvent = { id: uuidv7(now.getTime()), occurredAt: now.toISOString(), ...event };
  await enqueue(tx, now, {
    topic: 'event',
    payload: full,
    organizationId: event.organizationId,
    eventId: full.id,
  });
  return full;
}
