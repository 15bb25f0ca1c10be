// Direct mail to a person (invitations, share notices, break-glass alerts to admins), sent by the
// outbox relay after the transaction that decided it commits. Mail carries no patient data.
import type { Vault } from '../blobs/vault.js';
import type { WrappedKey } from '../blobs/master-key.js';
import { enqueue } from '../store/outbox.store.js';
import { activeAdminEmails } from '../store/user.store.js';
import type { Tx } from '../store/tables.js';

/** Where the secret goes in `text`. */
export const SECRET_PLACEHOLDER = '{secret}';

export interface MailPayload {
  to: string;
  subject: string;
  text: string;
  /** A one-time secret (an invitation token), kept wrapped by the master key until sending. */
  secret?: WrappedKey & { context: string };
}

export async function queueMail(
  tx: Tx,
  now: Date,
  vault: Vault,
  mail: { to: string; subject: string; text: string; secret?: string; organizationId?: string },
): Promise<void> {
  const context = `mail:${mail.to}`;
  const payload: MailPayload = {
    to: mail.to,
    subject: mail.subject,
    text: mail.text,
    ...(mail.secret !== undefined
      ? { secret: { ...vault.wrapSecret(Buffer.from(mail.secret, 'utf8'), context), context } }
      : {}),
  };
  await enqueue(tx, now, {
    topic: 'mail',
    payload,
    ...(mail.organizationId !== undefined ? { organizationId: mail.organizationId } : {}),
  });
}

/** The text as sent: the secret put back in its place. */
export function mailText(vault: Vault, payload: MailPayload): string {
  if (!payload.secret) return payload.text;
  const secret = vault
    .unwrapSecret(
      { keyId: payload.secret.keyId, wrapped: payload.secret.wrapped },
      payload.secret.context,
    )
    .toString('utf8');
  return payload.text.split(SECRET_PLACEHOLDER).join(secret);
}

/** One mail to each active admin of the organization (alerts: break-glass, unusual access). */
export async function mailAdmins(
  tx: Tx,
  now: Date,
  vault: Vault,
  organizationId: string,
  mail: { subject: string; text: string },
): Promise<number> {
  const admins = await activeAdminEmails(tx, organizationId);
  for (const to of admins) await queueMail(tx, now, vault, { ...mail, to, organizationId });
  return admins.length;
}
