// Reading documents: one, a patient's list, versions, ranged downloads checked against their
// SHA-256, thumbnails. Every read is audited before data leaves.
import type { Readable } from 'node:stream';
import { BlobNotFoundError } from '../../blobs/blob-store.js';
import { MasterKeyError } from '../../blobs/master-key.js';
import { type BlobRef, primed } from '../../blobs/vault.js';
import type { ParsedRange } from '../../domain/document.js';
import { AppError } from '../../domain/errors.js';
import { listDocuments, updateDocumentVersion, versionsOf } from '../../store/document.store.js';
import { audited, auditedStaged, auditedView } from '../audit.service.js';
import { seenBy } from '../../domain/access.js';
import { accessPatient } from '../access.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { idAfter, type Page, toPage } from '../pagination.js';
import {
  assertActive,
  type Document,
  documentOf,
  type DocumentVersion,
  type Download,
  refOf,
  thumbRefOf,
  toVersion,
} from './model.js';
import { asDto, loadDocument, loadVersion } from './access.js';

export async function getDocument(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
): Promise<Document> {
  return audited(
    deps,
    ctx,
    {
      action: 'R',
      type: 'document.read',
      entity: { type: 'Document', id, version: null },
    },
    async (tx, record) =>
      asDto(deps, tx, (await loadDocument(deps, tx, ctx, id, record, 'documents.read')).doc),
  );
}

export async function listPatientDocuments(
  deps: ServiceDeps,
  ctx: RequestContext,
  patientId: string,
  page: { limit: number; cursor?: string; includeDeleted?: boolean },
): Promise<Page<Document>> {
  const beforeId = idAfter(page.cursor);
  // Only reads: on a read snapshot, with just the audit event in the write queue (the chart
  // loads this beside the patient and the notes).
  return auditedView(
    deps,
    ctx,
    { action: 'R', type: 'document.list', patientId },
    async (tx, record) => {
      const now = deps.clock.now();
      const grant = await accessPatient(tx, ctx, patientId, 'documents.read', record, now);
      const filter = seenBy(grant.access, grant.actor.userId, now);
      const rows = await listDocuments(tx, patientId, filter, {
        beforeId,
        limit: page.limit + 1,
        includeDeleted: page.includeDeleted === true,
      });
      const result = toPage(
        rows,
        page.limit,
        (r) => [r.id],
        (r) => r,
      );
      const versions = await versionsOf(
        tx,
        result.items.map((d) => d.id),
      );
      const items = result.items.flatMap((d) => {
        const current = versions.find(
          (v) => v.document_id === d.id && v.version === d.current_version,
        );
        return current ? [documentOf(deps, d, current)] : [];
      });
      record.detail = { count: items.length, documentIds: items.map((d) => d.id) };
      return { items, nextCursor: result.nextCursor };
    },
  );
}

export async function listVersions(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
): Promise<{ items: DocumentVersion[] }> {
  return audited(
    deps,
    ctx,
    {
      action: 'R',
      type: 'document.versions.list',
      entity: { type: 'Document', id, version: null },
    },
    async (tx, record) => {
      const { doc } = await loadDocument(deps, tx, ctx, id, record, 'documents.read');
      return { items: (await versionsOf(tx, [doc.id])).map((v) => toVersion(deps, v)) };
    },
  );
}

/**
 * Opens the content of one version for download. The blob is opened (and its first chunk
 * authenticated) before the audit event commits, so an unreadable file is an error answer and
 * a download that was answered is always in the trail.
 */
export async function openContent(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
  version: number | undefined,
  rangeOf: (size: number) => ParsedRange | null,
): Promise<Download> {
  return auditedStaged(
    deps,
    ctx,
    {
      action: 'R',
      type: version === undefined ? 'document.content.read' : 'document.version.read',
      entity: { type: 'Document', id, version: version ?? null },
    },
    async (record) => {
      const { doc } = await loadDocument(deps, deps.db.read, ctx, id, record, 'documents.read');
      assertActive(doc);
      const row = await loadVersion(deps.db.read, doc, version ?? doc.current_version);
      record.entity = { type: 'Document', id: doc.id, version: row.version };
      const range = rangeOf(row.size);
      const ref = refOf(row);
      const retrieval = await deps.vault.prepareRead(ref);
      if (!retrieval.ready) {
        throw new AppError(
          'retrieval_pending',
          `This file is in the archive tier; it is being retrieved and can be downloaded in about ${Math.ceil(retrieval.retryAfterSeconds / 3600)} hours.`,
          { retryAfterSeconds: retrieval.retryAfterSeconds },
        );
      }
      record.detail = {
        version: row.version,
        ...(range ? { range: `${range.start}-${range.end}` } : {}),
      };
      const stream = await openBlob(deps, ref, range ?? undefined);
      return { row, range, stream };
    },
    async (tx, _record, { row, range, stream }) => {
      // Reads keep a file in the hot tier; once a day per version is enough to know.
      const now = deps.clock.now();
      if (now.getTime() - Date.parse(row.last_read_at) > 86_400_000) {
        await updateDocumentVersion(tx, row.document_id, row.version, {
          last_read_at: now.toISOString(),
        });
      }
      return {
        stream,
        filename: row.filename,
        contentType: row.content_type,
        size: row.size,
        sha256: row.sha256,
        version: row.version,
        range,
      };
    },
    async ({ stream }) => {
      stream.destroy();
    },
  );
}

/** Opens a blob, translating a missing or corrupt one into a logged, generic error. */
export async function openBlob(
  deps: ServiceDeps,
  ref: BlobRef,
  range?: ParsedRange,
): Promise<Readable> {
  try {
    return await primed(await deps.vault.open(ref, range));
  } catch (err) {
    if (err instanceof AppError) throw err;
    deps.log.error(
      { err, blobKey: ref.blobKey, keyId: ref.keyId },
      err instanceof BlobNotFoundError
        ? 'a document blob is missing from the file store'
        : err instanceof MasterKeyError
          ? 'a document data key could not be unwrapped: is its master key configured?'
          : 'a document blob failed its integrity check',
    );
    throw new AppError(
      'unavailable',
      'The file could not be read intact from storage; it was not sent. The problem was logged for an operator.',
    );
  }
}

export async function readThumbnail(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
): Promise<Buffer> {
  return auditedStaged(
    deps,
    ctx,
    {
      action: 'R',
      type: 'document.thumbnail.read',
      entity: { type: 'Document', id, version: null },
    },
    async (record) => {
      const { doc } = await loadDocument(deps, deps.db.read, ctx, id, record, 'documents.read');
      assertActive(doc);
      const row = await loadVersion(deps.db.read, doc, doc.current_version);
      const ref = thumbRefOf(row);
      if (!ref) {
        throw new AppError(
          'not_found',
          row.preview_status === 'pending'
            ? 'The preview is still being made; try again in a few seconds.'
            : 'This document has no preview.',
        );
      }
      try {
        return await deps.vault.read(ref);
      } catch (err) {
        if (err instanceof AppError) throw err;
        deps.log.error({ err, blobKey: ref.blobKey }, 'a thumbnail blob could not be read');
        throw new AppError('unavailable', 'The preview could not be read from storage.');
      }
    },
    (_tx, _record, data) => Promise.resolve(data),
    () => Promise.resolve(),
  );
}
