// Invitation links travel only by mail: tests read them from the queued mail (the outbox keeps
// the token wrapped by the master key; this is the text the relay would send).
import { mailText, type MailPayload } from '../../src/services/mail.js';
import type { Harness } from './harness.js';

/** The token of the newest invitation mailed to `email`. */
export async function invitationToken(h: Harness, email: string): Promise<string> {
  const rows = await h.runtime.db.read
    .selectFrom('outbox')
    .select('payload')
    .where('topic', '=', 'mail')
    .orderBy('id', 'desc')
    .execute();
  for (const row of rows) {
    const mail = JSON.parse(row.payload) as MailPayload;
    if (mail.to !== email || !mail.secret) continue;
    const match = /\/invitations#token=([A-Za-z0-9_-]+)/.exec(mailText(h.runtime.vault, mail));
    if (match?.[1]) return match[1];
  }
  throw new Error(`no invitation was mailed to ${email}`);
}
