// Notification delivery through the outbox: an event fans out into one delivery per matching
// subscription (in one transaction), and each delivery is sent by email or signed webhook.
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net, { type LookupFunction } from 'node:net';
import nodemailer from 'nodemailer';
import type { Vault } from '../blobs/vault.js';
import type { Clock } from '../domain/clock.js';
import type { DomainEvent } from '../services/events.js';
import {
  CREATOR_LOST_ACCESS,
  DELETED_BEFORE_DELIVERY,
  secretContext,
} from '../services/subscription.service.js';
import type { Database } from '../store/database.js';
import { enqueue } from '../store/outbox.store.js';
import {
  deliverableSubscription,
  findSubscriptionById,
  subscribersOf,
} from '../store/subscription.store.js';
import type { SubscriptionRow } from '../store/tables.js';
import { PermanentFailure, type OutboxHandler } from './outbox-relay.js';
import {
  deliveryAddress,
  PrivateAddressError,
  systemResolver,
  type HostResolver,
  type ResolvedAddress,
} from '../services/webhook-address.js';
import { mailText, type MailPayload } from '../services/mail.js';

export interface NotificationSettings {
  smtpUrl: string;
  mailFrom: string;
  webhookTimeoutMs: number;
  webhookAllowPrivate: boolean;
  publicUrl: string;
}

/** The signature receivers check: HMAC-SHA256 over "<timestamp>.<body>" with the secret. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

const SUBJECTS: Record<string, string> = {
  'document.created': 'New document',
  'note.finalized': 'Note finalized',
  'result.received': 'New result',
};

/**
 * POSTs `body` to `url` over a connection to `address` only (the address the delivery checked):
 * the name stays in the Host header and, over TLS, in SNI and the certificate check. Answers the
 * status; the receiver's body is not read.
 */
function postPinned(
  url: URL,
  address: ResolvedAddress,
  timeoutMs: number,
  body: string,
  headers: Record<string, string>,
): Promise<number> {
  // Whatever name the socket asks for, it gets the checked address: no second DNS answer.
  const pinned: LookupFunction = (_host, options, callback) => {
    if (options.all) callback(null, [{ address: address.address, family: address.family }]);
    else callback(null, address.address, address.family);
  };
  const secure = url.protocol === 'https:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const request = (secure ? https : http).request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      lookup: pinned,
      // A fresh connection per delivery: a pooled one may lead to an address checked earlier.
      agent: false,
      ...(secure && net.isIP(host) === 0 ? { servername: host } : {}),
    });
    const timer = setTimeout(() => {
      request.destroy(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    request.once('response', (res) => {
      clearTimeout(timer);
      res.destroy();
      resolve(res.statusCode ?? 0);
    });
    request.once('error', (err: Error & { code?: string }) => {
      clearTimeout(timer);
      reject(
        err.message.startsWith('no answer within')
          ? err
          : new Error(`connection failed${err.code ? ` (${err.code})` : ''}`),
      );
    });
    request.end(body);
  });
}

export function createNotificationHandlers(deps: {
  db: Database;
  clock: Clock;
  vault: Vault;
  settings: NotificationSettings;
  /** How receiver names are resolved (the system's resolver unless a test brings its own DNS). */
  resolveHost?: HostResolver;
}): { event: OutboxHandler; deliver: OutboxHandler; mail: OutboxHandler; close: () => void } {
  const { db, clock, vault, settings } = deps;
  const resolveHost = deps.resolveHost ?? systemResolver;
  const transport =
    settings.smtpUrl === ''
      ? null
      : nodemailer.createTransport(
          `${settings.smtpUrl}${settings.smtpUrl.includes('?') ? '&' : '?'}connectionTimeout=10000&greetingTimeout=10000&socketTimeout=30000`,
        );

  const event: OutboxHandler = {
    kind: 'tx',
    async run(tx, payload) {
      const ev = payload as DomainEvent;
      const subscribers = (await subscribersOf(tx, ev.organizationId, ev.patientId)).filter((s) =>
        (JSON.parse(s.events) as string[]).includes(ev.type),
      );
      const now = clock.now();
      for (const s of subscribers) {
        await enqueue(tx, now, {
          topic: 'deliver',
          payload: { event: ev },
          organizationId: ev.organizationId,
          subscriptionId: s.id,
          eventId: ev.id,
        });
      }
    },
  };

  async function sendEmail(s: SubscriptionRow, ev: DomainEvent): Promise<void> {
    if (!transport) throw new Error('email is not configured (CARETRAIL_SMTP_URL is empty)');
    // No patient data in mail: the recipient may be outside the clinic, and mail is not audited.
    const subject = `${SUBJECTS[ev.type] ?? ev.type} on a patient record you follow`;
    const link = `${settings.publicUrl}/`;
    await transport.sendMail({
      from: settings.mailFrom,
      to: s.target,
      subject: `[Caretrail] ${subject}`,
      text: `${subject} (${ev.type}, ${ev.occurredAt}).\n\nOpen Caretrail to see it: ${link}\n\nYou receive this because of a notification subscription in Caretrail.\n`,
      messageId: `<${ev.id}.${s.id}@caretrail>`,
      headers: { 'X-Caretrail-Event-Id': ev.id, 'X-Caretrail-Event-Type': ev.type },
    });
  }

  async function sendWebhook(s: SubscriptionRow, ev: DomainEvent): Promise<void> {
    if (!s.secret_key_id || !s.secret_wrapped)
      throw new PermanentFailure('the webhook subscription has no signing secret');
    const secret = vault
      .unwrapSecret({ keyId: s.secret_key_id, wrapped: s.secret_wrapped }, secretContext(s.id))
      .toString('utf8');
    const target = new URL(s.target);
    let address: ResolvedAddress;
    try {
      address = await deliveryAddress(target, resolveHost, settings.webhookAllowPrivate);
    } catch (err) {
      if (err instanceof PrivateAddressError) throw new PermanentFailure(err.message);
      throw new Error('the receiver host name does not resolve');
    }
    const body = JSON.stringify(ev);
    const timestamp = Math.floor(clock.now().getTime() / 1000);
    const status = await postPinned(target, address, settings.webhookTimeoutMs, body, {
      'content-type': 'application/json',
      'user-agent': 'Caretrail-Webhook/1',
      'x-caretrail-event-id': ev.id,
      'x-caretrail-event-type': ev.type,
      'x-caretrail-timestamp': String(timestamp),
      'x-caretrail-signature': signWebhook(secret, timestamp, body),
    });
    // Redirects are not followed (one could lead to the server's own network): a failure.
    if (status >= 300 && status <= 399)
      throw new Error(`receiver answered HTTP ${status} (redirects are not followed)`);
    if (status < 200 || status > 299) throw new Error(`receiver answered HTTP ${status}`);
  }

  const deliver: OutboxHandler = {
    kind: 'io',
    async run(payload, row) {
      const ev = (payload as { event: DomainEvent }).event;
      const s = row.subscription_id
        ? await findSubscriptionById(db.read, row.subscription_id)
        : null;
      // Deleting a subscription gives up its waiting deliveries; this one was queued in a race
      // with the deletion. Not sent, not retried, and not to be reported as delivered.
      if (!s || s.disabled_at !== null) throw new PermanentFailure(DELETED_BEFORE_DELIVERY);
      // Queued while its creator could hold it; the creator has since been disabled or demoted.
      if (!(await deliverableSubscription(db.read, s.id)))
        throw new PermanentFailure(CREATOR_LOST_ACCESS);
      if (s.channel === 'email') await sendEmail(s, ev);
      else await sendWebhook(s, ev);
    },
  };

  const mail: OutboxHandler = {
    kind: 'io',
    async run(payload, row) {
      if (!transport) throw new Error('email is not configured (CARETRAIL_SMTP_URL is empty)');
      const m = payload as MailPayload;
      await transport.sendMail({
        from: settings.mailFrom,
        to: m.to,
        subject: `[Caretrail] ${m.subject}`,
        text: mailText(vault, m),
        messageId: `<${row.id}@caretrail>`,
      });
    },
  };

  return { event, deliver, mail, close: () => transport?.close() };
}
