// Changing documents: title, kind and visibility; soft delete and restore; retention purge.
import type { DocumentKind } from '../../domain/document.js';
import { AppError, staleVersion } from '../../domain/errors.js';
import {
  updateDocumentIfVersion,
  updateDocumentVersion,
  versionsOf,
} from '../../store/document.store.js';
import { enqueue } from '../../store/outbox.store.js';
import { audited } from '../audit.service.js';
import type { CareRole, Visibility } from '../../domain/access.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { purgeReplicaCopy } from '../../replication/blobs/track.js';
import { assertActive, type Document } from './model.js';
import { asDto, loadDocument } from './access.js';

/** Title, kind, and who sees the document (mark it for the owner, share it with a role). */
export async function updateDocumentInfo(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
  changes: {
    title?: string | null;
    kind?: DocumentKind;
    visibility?: Visibility;
    sharedWith?: CareRole[];
  },
): Promise<Document> {
  return audited(
    deps,
    ctx,
    { action: 'U', type: 'document.update', entity: { type: 'Document', id, version: null } },
    async (tx, record) => {
      const { doc } = await loadDocument(deps, tx, ctx, id, record, 'documents.write', true);
      assertActive(doc);
      const set = {
        ...(changes.title !== undefined ? { title: changes.title?.trim() || null } : {}),
        ...(changes.kind !== undefined ? { kind: changes.kind } : {}),
        ...(changes.visibility !== undefined ? { visibility: changes.visibility } : {}),
        ...(changes.sharedWith !== undefined
          ? { shared_with: JSON.stringify(changes.sharedWith) }
          : {}),
        updated_at: deps.clock.now().toISOString(),
      };
      if (!(await updateDocumentIfVersion(tx, doc.id, doc.version, set)))
        throw staleVersion('document');
      record.detail = { fields: Object.keys(changes).sort() };
      return asDto(deps, tx, { ...doc, ...set, version: doc.version + 1 });
    },
  );
}

export async function changeDocumentStatus(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
  type: 'document.delete' | 'document.restore',
): Promise<Document> {
  const deleting = type === 'document.delete';
  return audited(
    deps,
    ctx,
    {
      action: deleting ? 'D' : 'U',
      type,
      entity: { type: 'Document', id, version: null },
    },
    async (tx, record) => {
      const { doc, grant } = await loadDocument(deps, tx, ctx, id, record, 'documents.write', true);
      const actor = grant.actor;
      const expected = deleting ? 'active' : 'deleted';
      if (doc.status !== expected) {
        throw new AppError(
          'conflict',
          deleting
            ? `This document is already ${doc.status}.`
            : `Only a deleted document can be restored; this one is ${doc.status}.`,
        );
      }
      const at = deps.clock.now().toISOString();
      const changes = deleting
        ? { status: 'deleted', deleted_at: at, deleted_by: actor.userId, updated_at: at }
        : { status: 'active', deleted_at: null, deleted_by: null, updated_at: at };
      if (!(await updateDocumentIfVersion(tx, doc.id, doc.version, changes)))
        throw staleVersion('document');
      return asDto(deps, tx, { ...doc, ...changes, version: doc.version + 1 });
    },
  );
}

/**
 * Retention purge (admin): the content of every version of a deleted document is removed from
 * the blob store by a job; the rows stay, so the audit trail keeps its references.
 */
export async function purgeDocument(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
  reason: string,
): Promise<Document> {
  return audited(
    deps,
    ctx,
    {
      action: 'D',
      type: 'document.purge',
      entity: { type: 'Document', id, version: null },
      purpose: reason,
    },
    async (tx, record) => {
      const { doc } = await loadDocument(deps, tx, ctx, id, record, 'documents.purge', true);
      if (doc.status !== 'deleted') {
        throw new AppError(
          'conflict',
          doc.status === 'purged'
            ? 'This document was already purged.'
            : 'Delete the document first; only deleted documents can be purged.',
        );
      }
      const now = deps.clock.now();
      const at = now.toISOString();
      const all = await versionsOf(tx, [doc.id]);
      for (const v of all) {
        for (const key of [v.blob_key, v.thumb_blob_key]) {
          if (key === null) continue;
          await enqueue(tx, now, {
            topic: 'blob.delete',
            payload: { key },
            organizationId: doc.organization_id,
          });
          await purgeReplicaCopy(deps, tx, now, key);
        }
        // Crypto-shredding: without its wrapped data key no copy of the blob (a backup, an
        // archive copy a racing job made) can be decrypted any more.
        await updateDocumentVersion(tx, doc.id, v.version, {
          purged_at: at,
          wrapped_key: '',
          thumb_wrapped_key: null,
        });
      }
      const changes = { status: 'purged', purged_at: at, updated_at: at };
      if (!(await updateDocumentIfVersion(tx, doc.id, doc.version, changes)))
        throw staleVersion('document');
      record.detail = { versions: all.length, reason };
      return asDto(deps, tx, { ...doc, ...changes, version: doc.version + 1 });
    },
  ).finally(() => deps.onOutbox?.());
}
