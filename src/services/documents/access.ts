// The first step of every document use case: the document if the caller may see it and do
// what they ask, and its versions.
import { AppError, notFound } from '../../domain/errors.js';
import { findDocument, findDocumentVersion } from '../../store/document.store.js';
import type { DocumentRow, Tx } from '../../store/tables.js';
import type { AuditRecord } from '../audit.service.js';
import type { PatientCapability } from '../../domain/access.js';
import { accessItem, type PatientGrant } from '../access.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { type Document, documentOf } from './model.js';

/**
 * The document if the caller may see it and use `capability` on its patient (404 when they
 * cannot see it, 403 when they see it but may not do this). People outside the organization
 * change only files they added themselves.
 */
export async function loadDocument(
  deps: ServiceDeps,
  tx: Tx,
  ctx: RequestContext,
  id: string,
  record: AuditRecord,
  capability: PatientCapability,
  lock = false,
): Promise<{ doc: DocumentRow; grant: PatientGrant }> {
  const row = await findDocument(tx, id, { forUpdate: lock });
  if (!row) throw notFound('Document');
  const now = deps.clock.now();
  const grant = await accessItem(
    tx,
    ctx,
    { ...row, author: row.created_by },
    capability,
    record,
    now,
    'Document',
  );
  record.entity = { type: 'Document', id: row.id, version: row.current_version };
  if (
    capability === 'documents.write' &&
    grant.access.via !== 'organization' &&
    row.created_by !== grant.actor.userId
  )
    throw new AppError('forbidden', 'Only the person who added this file may change it.');
  return { doc: row, grant };
}

export async function loadVersion(tx: Tx, doc: DocumentRow, version: number) {
  const row = await findDocumentVersion(tx, doc.id, version);
  if (!row) throw notFound('Document version');
  return row;
}

export async function asDto(deps: ServiceDeps, tx: Tx, doc: DocumentRow): Promise<Document> {
  return documentOf(deps, doc, await loadVersion(tx, doc, doc.current_version));
}
