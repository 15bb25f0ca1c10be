// Uploads: a new document (version 1) or a new content version of one, the file stored before
// the transaction that records it and removed when that fails.
import { staleVersion } from '../../domain/errors.js';
import { insertDocumentVersion, updateDocumentIfVersion } from '../../store/document.store.js';
import { enqueue } from '../../store/outbox.store.js';
import { auditedStaged } from '../audit.service.js';
import { accessPatient } from '../access.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { replicateBlob } from '../../replication/blobs/track.js';
import {
  assertActive,
  defaultKind,
  type Document,
  documentOf,
  type IncomingFile,
  type UploadFields,
} from './model.js';
import { loadDocument, loadVersion } from './access.js';
import { dropBlob, insertNewDocument, receiveFile, versionRow } from './files.js';

export async function createDocument(
  deps: ServiceDeps,
  ctx: RequestContext,
  patientId: string,
  /** Reads the request: calls `onFile` for the file part and returns the other fields. */
  receive: (onFile: (file: IncomingFile) => Promise<void>) => Promise<UploadFields>,
): Promise<Document> {
  return auditedStaged(
    deps,
    ctx,
    { action: 'C', type: 'document.create', patientId },
    async (record) => {
      // Refuse before reading a byte of a file for a patient the caller cannot write to.
      await accessPatient(
        deps.db.read,
        ctx,
        patientId,
        'documents.write',
        record,
        deps.clock.now(),
      );
      const { value: fields, file, stored } = await receiveFile(deps, receive);
      return { fields, file, stored };
    },
    async (tx, record, { fields, file: f, stored: s }) => {
      const now = deps.clock.now();
      const { actor, patient, access } = await accessPatient(
        tx,
        ctx,
        patientId,
        'documents.write',
        record,
        now,
      );
      // What an owner adds is theirs to see; others' files start inside the organization.
      const visibility =
        fields.visibility ??
        (access.via === 'share' && access.shareRole === 'owner' ? 'owner' : 'internal');
      const { doc, version } = await insertNewDocument(deps, tx, now, {
        organizationId: patient.organization_id,
        patientId,
        title: fields.title?.trim() || null,
        kind: fields.kind ?? defaultKind(s.contentType),
        visibility,
        sharedWith: fields.sharedWith ?? [],
        createdBy: actor.userId,
        file: f,
        stored: s,
      });
      record.entity = { type: 'Document', id: doc.id, version: 1 };
      record.detail = { size: s.size, contentType: s.contentType, sha256: s.sha256 };
      return documentOf(deps, doc, version);
    },
    async ({ stored }) => {
      await dropBlob(deps, stored);
    },
  ).finally(() => deps.onOutbox?.());
}

export async function replaceContent(
  deps: ServiceDeps,
  ctx: RequestContext,
  id: string,
  expectedVersion: number | undefined,
  receive: (onFile: (file: IncomingFile) => Promise<void>) => Promise<void>,
): Promise<Document> {
  return auditedStaged(
    deps,
    ctx,
    {
      action: 'U',
      type: 'document.version.create',
      entity: { type: 'Document', id, version: null },
    },
    async (record) => {
      const { doc } = await loadDocument(deps, deps.db.read, ctx, id, record, 'documents.write');
      assertActive(doc);
      if (expectedVersion !== undefined && doc.current_version !== expectedVersion)
        throw staleVersion('document', doc.current_version);
      const { file, stored } = await receiveFile(deps, receive);
      return { file, stored };
    },
    async (tx, record, { file: f, stored: s }) => {
      const { doc, grant } = await loadDocument(deps, tx, ctx, id, record, 'documents.write', true);
      const actor = grant.actor;
      assertActive(doc);
      if (expectedVersion !== undefined && doc.current_version !== expectedVersion)
        throw staleVersion('document', doc.current_version);
      const now = deps.clock.now();
      const at = now.toISOString();
      const next = doc.current_version + 1;
      const current = await loadVersion(tx, doc, doc.current_version);
      // A raw body without a filename keeps the name of the version it replaces.
      const named = { ...f, filename: f.filename ?? current.filename };
      const version = versionRow(deps, doc, next, named, s, actor, at);
      await insertDocumentVersion(tx, version);
      await replicateBlob(deps, tx, now, version.blob_key, s.replica);
      if (
        !(await updateDocumentIfVersion(tx, doc.id, doc.version, {
          current_version: next,
          updated_at: at,
        }))
      )
        throw staleVersion('document');
      await enqueue(tx, now, {
        topic: 'preview',
        payload: { documentId: doc.id, version: next },
        organizationId: doc.organization_id,
      });
      record.entity = { type: 'Document', id: doc.id, version: next };
      record.detail = { size: s.size, contentType: s.contentType, sha256: s.sha256 };
      return documentOf(deps, { ...doc, current_version: next, updated_at: at }, version);
    },
    async ({ stored }) => {
      await dropBlob(deps, stored);
    },
  ).finally(() => deps.onOutbox?.());
}
