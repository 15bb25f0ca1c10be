// Notification subscriptions (per organization or per patient) and their delivery status.
import { randomBytes } from 'node:crypto';
import { AppError, notFound } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import { cancelPendingDeliveries, deliveriesOf } from '../store/outbox.store.js';
import { findPatient } from '../store/patient.store.js';
import {
  disableSubscription,
  findSubscription,
  insertSubscription,
  listSubscriptions,
} from '../store/subscription.store.js';
import type { OutboxRow, SubscriptionRow } from '../store/tables.js';
import { audited } from './audit.service.js';
import { requireStaff, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { isPrivateLiteral } from './webhook-address.js';
import { EVENT_TYPES, type EventType } from './events.js';
import { toPage, type Page, idAfter } from './pagination.js';

export interface Subscription {
  id: string;
  events: EventType[];
  patientId: string | null;
  channel: 'email' | 'webhook';
  target: string;
  createdAt: string;
  createdBy: string;
}

export interface SubscriptionInput {
  events: EventType[];
  patientId?: string | null;
  email?: string;
  webhookUrl?: string;
}

export interface Delivery {
  id: string;
  eventId: string | null;
  eventType: string | null;
  status: 'pending' | 'delivered' | 'dead';
  attempts: number;
  lastError: string | null;
  nextAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

export const secretContext = (subscriptionId: string) => `subscription:${subscriptionId}`;

/** Why a delivery of a deleted subscription was given up (shown as its lastError). */
export const DELETED_BEFORE_DELIVERY = 'the subscription was deleted before delivery';
export const CREATOR_LOST_ACCESS =
  "the subscription's creator was disabled or lost the right to subscribe before delivery";

function toSubscription(row: SubscriptionRow): Subscription {
  return {
    id: row.id,
    events: JSON.parse(row.events) as EventType[],
    patientId: row.patient_id,
    channel: row.channel as Subscription['channel'],
    target: row.target,
    createdAt: row.created_at,
    createdBy: row.created_by,
  };
}

function toDelivery(row: OutboxRow): Delivery {
  let eventType: string | null = null;
  try {
    eventType = (JSON.parse(row.payload) as { event?: { type?: string } }).event?.type ?? null;
  } catch {
    eventType = null;
  }
  return {
    id: row.id,
    eventId: row.event_id,
    eventType,
    status: row.status === 'done' ? 'delivered' : row.status === 'dead' ? 'dead' : 'pending',
    attempts: row.attempts,
    lastError: row.last_error,
    nextAttemptAt: row.status === 'pending' ? row.available_at : null,
    createdAt: row.created_at,
    deliveredAt: row.done_at,
  };
}

function checkWebhookUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError('invalid', 'webhookUrl must be an absolute http:// or https:// URL.');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new AppError('invalid', 'webhookUrl must be an absolute http:// or https:// URL.');
  if (url.username !== '' || url.password !== '')
    throw new AppError('invalid', 'webhookUrl must not contain credentials; use the signature.');
  return url.toString();
}

export function createSubscriptionService(deps: ServiceDeps) {
  const { clock, vault } = deps;

  async function create(
    ctx: RequestContext,
    input: SubscriptionInput,
  ): Promise<{ subscription: Subscription; secret: string | null }> {
    const events = [...new Set(input.events)];
    if (events.length === 0 || events.some((e) => !EVENT_TYPES.includes(e)))
      throw new AppError('invalid', `events must list some of: ${EVENT_TYPES.join(', ')}.`);
    if ((input.email === undefined) === (input.webhookUrl === undefined))
      throw new AppError('invalid', 'Give exactly one of "email" or "webhookUrl".');
    if (input.email !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(input.email))
      throw new AppError('invalid', 'email is not a valid address.');
    const webhook = input.webhookUrl === undefined ? null : checkWebhookUrl(input.webhookUrl);
    if (
      webhook !== null &&
      !deps.settings.webhookAllowPrivate &&
      isPrivateLiteral(new URL(webhook))
    )
      throw new AppError(
        'invalid',
        'webhookUrl points to a local or private address; an operator can allow that with CARETRAIL_WEBHOOK_ALLOW_PRIVATE=true.',
      );
    return audited(
      deps,
      ctx,
      {
        action: 'C',
        type: 'subscription.create',
        permission: 'subscriptions.manage',
        patientId: input.patientId ?? null,
      },
      async (tx, record) => {
        const actor = requireStaff(ctx);
        if (
          input.patientId != null &&
          !(await findPatient(tx, actor.organizationId, input.patientId))
        )
          throw notFound('Patient');
        const now = clock.now();
        const id = uuidv7(now.getTime());
        const secret = webhook ? `whsec_${randomBytes(24).toString('base64url')}` : null;
        const wrapped = secret
          ? vault.wrapSecret(Buffer.from(secret, 'utf8'), secretContext(id))
          : null;
        const row: SubscriptionRow = {
          id,
          organization_id: actor.organizationId,
          patient_id: input.patientId ?? null,
          events: JSON.stringify(events),
          channel: webhook ? 'webhook' : 'email',
          target: webhook ?? input.email?.trim().toLowerCase() ?? '',
          secret_key_id: wrapped?.keyId ?? null,
          secret_wrapped: wrapped?.wrapped ?? null,
          created_by: actor.userId,
          created_at: now.toISOString(),
          disabled_at: null,
        };
        await insertSubscription(tx, row);
        record.entity = { type: 'Subscription', id, version: 1 };
        record.detail = { channel: row.channel, events };
        return { subscription: toSubscription(row), secret };
      },
    );
  }

  async function list(ctx: RequestContext): Promise<{ items: Subscription[] }> {
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'subscription.list', permission: 'subscriptions.manage' },
      async (tx) => ({
        items: (await listSubscriptions(tx, requireStaff(ctx).organizationId)).map(toSubscription),
      }),
    );
  }

  async function remove(ctx: RequestContext, id: string): Promise<void> {
    await audited(
      deps,
      ctx,
      {
        action: 'D',
        type: 'subscription.delete',
        permission: 'subscriptions.manage',
        entity: { type: 'Subscription', id, version: null },
      },
      async (tx, record) => {
        const row = await findSubscription(tx, requireStaff(ctx).organizationId, id);
        if (!row || row.disabled_at !== null) throw notFound('Subscription');
        await disableSubscription(tx, id, clock.now().toISOString());
        // Retries already scheduled would otherwise run later and be marked done unsent.
        const cancelled = await cancelPendingDeliveries(tx, id, DELETED_BEFORE_DELIVERY);
        record.detail = { cancelledDeliveries: cancelled };
      },
    );
  }

  async function deliveries(
    ctx: RequestContext,
    id: string,
    page: { limit: number; cursor?: string },
  ): Promise<Page<Delivery>> {
    const beforeId = idAfter(page.cursor);
    return audited(
      deps,
      ctx,
      {
        action: 'R',
        type: 'subscription.deliveries',
        permission: 'subscriptions.manage',
        entity: { type: 'Subscription', id, version: null },
      },
      async (tx) => {
        const row = await findSubscription(tx, requireStaff(ctx).organizationId, id);
        if (!row) throw notFound('Subscription');
        const rows = await deliveriesOf(tx, id, { beforeId, limit: page.limit + 1 });
        return toPage(rows, page.limit, (r) => [r.id], toDelivery);
      },
    );
  }

  return { create, list, remove, deliveries };
}
