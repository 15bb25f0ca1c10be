// Re-wraps every data key (document contents, thumbnails, files of unmatched results, webhook and integration secrets,
// invitation links in queued mail) under the active master key. File bodies are not touched:
// only the small wrapped keys in the database change.
import type { Vault } from '../blobs/vault.js';
import type { Database } from '../store/database.js';
import { updateDocumentVersion, versionsWrappedByOtherKeys } from '../store/document.store.js';
import { subscriptionsWrappedByOtherKeys } from '../store/subscription.store.js';
import { openTotpSecret, sealedBy, sealTotpSecret } from './secret-box.js';
import { secretContext } from './subscription.service.js';
import { integrationSecretContext } from './integration-key.service.js';
import type { MailPayload } from './mail.js';

export interface RewrapCounts {
  contents: number;
  thumbnails: number;
  /** Webhook signing secrets and TOTP seeds. */
  secrets: number;
}

export async function rewrapAll(db: Database, vault: Vault): Promise<RewrapCounts> {
  const active = vault.keyring.activeId;
  const counts: RewrapCounts = { contents: 0, thumbnails: 0, secrets: 0 };
  for (;;) {
    const rows = await versionsWrappedByOtherKeys(db.read, active, 200);
    if (rows.length === 0) break;
    await db.write(async (tx) => {
      for (const v of rows) {
        const changes: Parameters<typeof updateDocumentVersion>[3] = {};
        if (v.key_id !== active) {
          const w = vault.rewrap({ blobKey: v.blob_key, keyId: v.key_id, wrapped: v.wrapped_key });
          changes.key_id = w.keyId;
          changes.wrapped_key = w.wrapped;
          counts.contents += 1;
        }
        if (
          v.thumb_blob_key &&
          v.thumb_key_id &&
          v.thumb_wrapped_key &&
          v.thumb_key_id !== active
        ) {
          const w = vault.rewrap({
            blobKey: v.thumb_blob_key,
            keyId: v.thumb_key_id,
            wrapped: v.thumb_wrapped_key,
          });
          changes.thumb_key_id = w.keyId;
          changes.thumb_wrapped_key = w.wrapped;
          counts.thumbnails += 1;
        }
        await updateDocumentVersion(tx, v.document_id, v.version, changes);
      }
    });
  }
  // Files of results waiting unmatched (once on a chart, the document version holds the key).
  for (;;) {
    const rows = await db.read
      .selectFrom('result_attachments')
      .selectAll()
      .where('document_id', 'is', null)
      .where('key_id', '!=', active)
      .limit(200)
      .execute();
    if (rows.length === 0) break;
    await db.write(async (tx) => {
      for (const a of rows) {
        const w = vault.rewrap({ blobKey: a.blob_key, keyId: a.key_id, wrapped: a.wrapped_key });
        await tx
          .updateTable('result_attachments')
          .set({ key_id: w.keyId, wrapped_key: w.wrapped })
          .where('result_id', '=', a.result_id)
          .where('version', '=', a.version)
          .where('position', '=', a.position)
          .execute();
        counts.contents += 1;
      }
    });
  }
  /** Moves secrets kept in `table` (secret_key_id, secret_wrapped) to the active key. */
  const rewrapColumn = async (
    table: 'subscriptions' | 'integration_keys',
    rows: { id: string; secret_key_id: string | null; secret_wrapped: string | null }[],
    contextOf: (id: string) => string,
  ) =>
    db.write(async (tx) => {
      for (const r of rows) {
        if (!r.secret_key_id || !r.secret_wrapped) continue;
        const context = contextOf(r.id);
        const plain = vault.unwrapSecret(
          { keyId: r.secret_key_id, wrapped: r.secret_wrapped },
          context,
        );
        const w = vault.wrapSecret(plain, context);
        await tx
          .updateTable(table)
          .set({ secret_key_id: w.keyId, secret_wrapped: w.wrapped })
          .where('id', '=', r.id)
          .execute();
        counts.secrets += 1;
      }
    });
  for (;;) {
    const rows = await subscriptionsWrappedByOtherKeys(db.read, active, 200);
    if (rows.length === 0) break;
    await rewrapColumn('subscriptions', rows, secretContext);
  }
  // Integration key HMAC secrets: few rows, one per device or lab system.
  const keys = await db.read
    .selectFrom('integration_keys')
    .select(['id', 'secret_key_id', 'secret_wrapped'])
    .where('secret_key_id', '<>', active)
    .execute();
  if (keys.length > 0) await rewrapColumn('integration_keys', keys, integrationSecretContext);
  // Mail waiting to be sent with a one-time secret in it (invitation links).
  const mails = await db.read
    .selectFrom('outbox')
    .select(['id', 'payload'])
    .where('topic', '=', 'mail')
    .where('status', '=', 'pending')
    .execute();
  const staleMails = mails.flatMap((m) => {
    const payload = JSON.parse(m.payload) as MailPayload;
    return payload.secret && payload.secret.keyId !== active ? [{ id: m.id, payload }] : [];
  });
  if (staleMails.length > 0) {
    await db.write(async (tx) => {
      for (const { id, payload } of staleMails) {
        const secret = payload.secret;
        if (!secret) continue;
        const plain = vault.unwrapSecret(secret, secret.context);
        const rewrapped = { ...vault.wrapSecret(plain, secret.context), context: secret.context };
        await tx
          .updateTable('outbox')
          .set({ payload: JSON.stringify({ ...payload, secret: rewrapped }) })
          .where('id', '=', id)
          .execute();
        counts.secrets += 1;
      }
    });
  }
  // TOTP seeds: few rows (one per user with two-factor sign-in), sealed or still in clear.
  const users = await db.read
    .selectFrom('users')
    .select(['id', 'totp_secret', 'totp_pending_secret'])
    .where((eb) =>
      eb.or([eb('totp_secret', 'is not', null), eb('totp_pending_secret', 'is not', null)]),
    )
    .execute();
  const stale = users.filter(
    (u) =>
      (u.totp_secret !== null && !sealedBy(u.totp_secret, active)) ||
      (u.totp_pending_secret !== null && !sealedBy(u.totp_pending_secret, active)),
  );
  if (stale.length > 0) {
    await db.write(async (tx) => {
      for (const u of stale) {
        const reseal = (v: string | null) =>
          v === null ? null : sealTotpSecret(vault, u.id, openTotpSecret(vault, u.id, v));
        await tx
          .updateTable('users')
          .set({
            totp_secret: reseal(u.totp_secret),
            totp_pending_secret: reseal(u.totp_pending_secret),
          })
          .where('id', '=', u.id)
          .execute();
        counts.secrets += 1;
      }
    });
  }
  return counts;
}
