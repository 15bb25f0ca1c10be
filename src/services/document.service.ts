// Documents and images: streamed, encrypted uploads; versions; soft delete and restore; retention
// purge; ranged downloads checked against their SHA-256; thumbnails made by a job.
import { Readable } from 'node:stream';
import { BlobNotFoundError } from '../blobs/blob-store.js';
import { MasterKeyError } from '../blobs/master-key.js';
import { primed, type BlobRef, type StoredBlob } from '../blobs/vault.js';
import {
  safeFilename,
  type DocumentKind,
  type DocumentStatus,
  type ParsedRange,
  type PreviewStatus,
} from '../domain/document.js';
import { AppError, notFound, staleVersion } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import {
  findDocument,
  findDocumentVersion,
  insertDocument,
  insertDocumentVersion,
  listDocuments,
  updateDocumentIfVersion,
  updateDocumentVersion,
  versionsOf,
} from '../store/document.store.js';
import { enqueue } from '../store/outbox.store.js';
import type { DocumentRow, DocumentVersionRow, Tx } from '../store/tables.js';
import { audited, auditedStaged, writeAuditEvent, type AuditRecord } from './audit.service.js';
import {
  parseSharedWith,
  seenBy,
  type CareRole,
  type PatientCapability,
  type Visibility,
} from '../domain/access.js';
import { accessItem, accessPatient, type PatientGrant } from './access.js';
import { systemContext, type Actor, type RequestContext } from './context.js';
import { sniffContentType } from './content-type.js';
import type { ServiceDeps } from './deps.js';
import { emitEvent } from './events.js';
import { toPage, type Page, idAfter } from './pagination.js';
import { makePreview, THUMBNAIL_TYPE } from '../previews/thumbnail.js';

export interface DocumentPreview {
  status: PreviewStatus;
  reason: string | null;
}

export interface DocumentStorage {
  tier: 'hot' | 'archive';
  /** How long a read may have to wait for the archive tier (0: immediate). */
  retrievalDelaySeconds: number;
}

export interface DocumentVersion {
  version: number;
  filename: string;
  contentType: string;
  declaredContentType: string | null;
  size: number;
  sha256: string;
  createdAt: string;
  createdBy: string;
  preview: DocumentPreview;
  metadata: Record<string, unknown> | null;
  storage: DocumentStorage;
}

export interface Document extends DocumentVersion {
  id: string;
  patientId: string;
  title: string | null;
  kind: DocumentKind;
  visibility: Visibility;
  sharedWith: CareRole[];
  status: DocumentStatus;
  /** The current content version (also the ETag); older versions stay readable. */
  version: number;
  updatedAt: string;
  deletedAt: string | null;
  purgedAt: string | null;
}

/** One file part of an upload as the HTTP layer hands it over: a stream, read once. */
export interface IncomingFile {
  stream: Readable;
  filename: string | undefined;
  declaredType: string | undefined;
}

export interface UploadFields {
  title?: string | null;
  kind?: DocumentKind;
  visibility?: Visibility;
  sharedWith?: CareRole[];
}

type Received = StoredBlob & { contentType: string };

/** What a download needs after its audit event committed. */
export interface Download {
  stream: Readable;
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
  version: number;
  range: ParsedRange | null;
}

function parseMetadata(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function refOf(v: DocumentVersionRow): BlobRef {
  return {
    blobKey: v.blob_key,
    tier: v.tier === 'archive' ? 'archive' : 'hot',
    size: v.size,
    sha256: v.sha256,
    chunkBytes: v.chunk_bytes,
    keyId: v.key_id,
    wrapped: v.wrapped_key,
  };
}

function thumbRefOf(v: DocumentVersionRow): BlobRef | null {
  if (!v.thumb_blob_key || !v.thumb_key_id || !v.thumb_wrapped_key || !v.thumb_sha256) return null;
  return {
    blobKey: v.thumb_blob_key,
    tier: 'hot',
    size: v.thumb_size ?? 0,
    sha256: v.thumb_sha256,
    chunkBytes: v.chunk_bytes,
    keyId: v.thumb_key_id,
    wrapped: v.thumb_wrapped_key,
  };
}

export function createDocumentService(deps: ServiceDeps) {
  const { clock, vault, settings } = deps;
  const archiveDelay = vault.store.archiveDelaySeconds;

  const toVersion = (v: DocumentVersionRow): DocumentVersion => ({
    version: v.version,
    filename: v.filename,
    contentType: v.content_type,
    declaredContentType: v.declared_type,
    size: v.size,
    sha256: v.sha256,
    createdAt: v.created_at,
    createdBy: v.created_by,
    preview: { status: v.preview_status as PreviewStatus, reason: v.preview_reason },
    metadata: parseMetadata(v.metadata),
    storage:
      v.tier === 'archive'
        ? { tier: 'archive', retrievalDelaySeconds: archiveDelay }
        : { tier: 'hot', retrievalDelaySeconds: 0 },
  });

  const documentOf = (d: DocumentRow, current: DocumentVersionRow): Document => ({
    ...toVersion(current),
    id: d.id,
    patientId: d.patient_id,
    title: d.title,
    kind: d.kind as DocumentKind,
    visibility: d.visibility as Visibility,
    sharedWith: parseSharedWith(d.shared_with),
    status: d.status as DocumentStatus,
    version: d.current_version,
    createdAt: d.created_at,
    createdBy: d.created_by,
    updatedAt: d.updated_at,
    deletedAt: d.deleted_at,
    purgedAt: d.purged_at,
  });

  /**
   * The document if the caller may see it and use `capability` on its patient (404 when they
   * cannot see it, 403 when they see it but may not do this). People outside the organization
   * change only files they added themselves.
   */
  async function loadDocument(
    tx: Tx,
    ctx: RequestContext,
    id: string,
    record: AuditRecord,
    capability: PatientCapability,
    lock = false,
  ): Promise<{ doc: DocumentRow; grant: PatientGrant }> {
    const row = await findDocument(tx, id, { forUpdate: lock });
    if (!row) throw notFound('Document');
    const now = clock.now();
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

  async function loadVersion(tx: Tx, doc: DocumentRow, version: number) {
    const row = await findDocumentVersion(tx, doc.id, version);
    if (!row) throw notFound('Document version');
    return row;
  }

  async function asDto(tx: Tx, doc: DocumentRow): Promise<Document> {
    return documentOf(doc, await loadVersion(tx, doc, doc.current_version));
  }

  /** Streams the file into the vault and learns its real type; empty files are refused. */
  async function storeFile(file: IncomingFile): Promise<Received> {
    const stored = await vault.put(file.stream, settings.maxUploadBytes);
    if (stored.size === 0) {
      await vault.store.delete(stored.blobKey);
      throw new AppError('invalid', 'The file is empty (0 bytes); nothing was stored.');
    }
    return { ...stored, contentType: await sniffContentType(stored.head) };
  }

  function versionRow(
    doc: Pick<DocumentRow, 'id' | 'organization_id'>,
    version: number,
    file: Pick<IncomingFile, 'filename' | 'declaredType'>,
    stored: Received,
    actor: Pick<Actor, 'userId'>,
    now: string,
  ): DocumentVersionRow {
    const declared = file.declaredType?.split(';')[0]?.trim().toLowerCase().slice(0, 100) ?? null;
    const key = currentWrap(stored);
    return {
      document_id: doc.id,
      version,
      organization_id: doc.organization_id,
      blob_key: stored.blobKey,
      filename: safeFilename(file.filename),
      content_type: stored.contentType,
      declared_type: declared === '' ? null : declared,
      size: stored.size,
      sha256: stored.sha256,
      chunk_bytes: stored.chunkBytes,
      key_id: key.keyId,
      wrapped_key: key.wrapped,
      tier: 'hot',
      last_read_at: now,
      archived_at: null,
      purged_at: null,
      preview_status: 'pending',
      preview_reason: null,
      metadata: null,
      thumb_blob_key: null,
      thumb_key_id: null,
      thumb_wrapped_key: null,
      thumb_size: null,
      thumb_sha256: null,
      created_by: actor.userId,
      created_at: now,
    };
  }

  /**
   * The data key as it must be committed: wrapped under the master key active now. A rotation
   * (`caretrail keys rotate`) may have begun while the file streamed in; re-wrapping here, in the
   * committing unit, keeps a row from landing under a key the rotation is about to retire.
   */
  const currentWrap = (stored: StoredBlob): { keyId: string; wrapped: string } =>
    stored.keyId === vault.keyring.activeId
      ? { keyId: stored.keyId, wrapped: stored.wrapped }
      : vault.rewrap(stored);

  const dropBlob = async (stored: { blobKey: string }) => {
    await vault.store.delete(stored.blobKey);
  };

  /**
   * Runs the request reader, storing the one file it hands over. When reading fails after the
   * file was stored (a later part is bad, the body is cut off), the stored blob is removed.
   */
  async function receiveFile<F>(
    receive: (onFile: (file: IncomingFile) => Promise<void>) => Promise<F>,
  ): Promise<{ value: F; file: IncomingFile; stored: Received }> {
    const got: { file?: IncomingFile; stored?: Received } = {};
    try {
      const value = await receive(async (incoming) => {
        if (got.file) throw new AppError('invalid', 'Send one file per upload.');
        got.file = incoming;
        got.stored = await storeFile(incoming);
      });
      if (!got.file || !got.stored)
        throw new AppError('invalid', 'The request has no file; nothing was stored.');
      return { value, file: got.file, stored: got.stored };
    } catch (err) {
      if (got.stored) await dropBlob(got.stored);
      throw err;
    }
  }

  /**
   * A new document (version 1) over a blob already stored, its preview queued and
   * `document.created` emitted; the caller has checked access and audits.
   */
  async function insertNewDocument(
    tx: Tx,
    now: Date,
    input: {
      organizationId: string;
      patientId: string;
      title: string | null;
      kind: DocumentKind;
      visibility: Visibility;
      sharedWith: CareRole[];
      createdBy: string;
      file: Pick<IncomingFile, 'filename' | 'declaredType'>;
      stored: Received;
    },
  ): Promise<{ doc: DocumentRow; version: DocumentVersionRow }> {
    const at = now.toISOString();
    const { stored } = input;
    const doc: DocumentRow = {
      id: uuidv7(now.getTime()),
      organization_id: input.organizationId,
      patient_id: input.patientId,
      title: input.title,
      kind: input.kind,
      current_version: 1,
      status: 'active',
      version: 1,
      created_by: input.createdBy,
      created_at: at,
      updated_at: at,
      deleted_at: null,
      deleted_by: null,
      purged_at: null,
      visibility: input.visibility,
      shared_with: JSON.stringify(input.sharedWith),
    };
    await insertDocument(tx, doc);
    const version = versionRow(doc, 1, input.file, stored, { userId: input.createdBy }, at);
    await insertDocumentVersion(tx, version);
    await enqueue(tx, now, {
      topic: 'preview',
      payload: { documentId: doc.id, version: 1 },
      organizationId: doc.organization_id,
    });
    await emitEvent(tx, now, {
      type: 'document.created',
      organizationId: doc.organization_id,
      patientId: input.patientId,
      data: { documentId: doc.id, version: 1, contentType: stored.contentType },
    });
    return { doc, version };
  }

  /**
   * A file that came with a device result, stored encrypted before the result's transaction;
   * its content type is read from its bytes.
   */
  async function storeAttachment(data: Buffer): Promise<Received> {
    return storeFile({
      stream: Readable.from([data]),
      filename: undefined,
      declaredType: undefined,
    });
  }

  /** A result's file on the patient's chart: an internal document, kind by content type. */
  async function fileForResult(
    tx: Tx,
    now: Date,
    input: {
      organizationId: string;
      patientId: string;
      title: string;
      createdBy: string;
      filename: string;
      stored: Received;
    },
  ): Promise<string> {
    const { doc } = await insertNewDocument(tx, now, {
      organizationId: input.organizationId,
      patientId: input.patientId,
      title: input.title,
      kind: defaultKind(input.stored.contentType),
      visibility: 'internal',
      sharedWith: [],
      createdBy: input.createdBy,
      file: { filename: input.filename, declaredType: undefined },
      stored: input.stored,
    });
    return doc.id;
  }

  async function create(
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
        await accessPatient(deps.db.read, ctx, patientId, 'documents.write', record, clock.now());
        const { value: fields, file, stored } = await receiveFile(receive);
        return { fields, file, stored };
      },
      async (tx, record, { fields, file: f, stored: s }) => {
        const now = clock.now();
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
        const { doc, version } = await insertNewDocument(tx, now, {
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
        return documentOf(doc, version);
      },
      async ({ stored }) => {
        await dropBlob(stored);
      },
    ).finally(() => deps.onOutbox?.());
  }

  async function replaceContent(
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
        const { doc } = await loadDocument(deps.db.read, ctx, id, record, 'documents.write');
        assertActive(doc);
        if (expectedVersion !== undefined && doc.current_version !== expectedVersion)
          throw staleVersion('document', doc.current_version);
        const { file, stored } = await receiveFile(receive);
        return { file, stored };
      },
      async (tx, record, { file: f, stored: s }) => {
        const { doc, grant } = await loadDocument(tx, ctx, id, record, 'documents.write', true);
        const actor = grant.actor;
        assertActive(doc);
        if (expectedVersion !== undefined && doc.current_version !== expectedVersion)
          throw staleVersion('document', doc.current_version);
        const now = clock.now();
        const at = now.toISOString();
        const next = doc.current_version + 1;
        const current = await loadVersion(tx, doc, doc.current_version);
        // A raw body without a filename keeps the name of the version it replaces.
        const named = { ...f, filename: f.filename ?? current.filename };
        const version = versionRow(doc, next, named, s, actor, at);
        await insertDocumentVersion(tx, version);
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
        return documentOf({ ...doc, current_version: next, updated_at: at }, version);
      },
      async ({ stored }) => {
        await dropBlob(stored);
      },
    ).finally(() => deps.onOutbox?.());
  }

  function assertActive(doc: DocumentRow): void {
    if (doc.status === 'deleted')
      throw new AppError('conflict', 'This document is deleted; restore it first.');
    if (doc.status === 'purged')
      throw new AppError('conflict', 'This document was purged; its content no longer exists.');
  }

  async function get(ctx: RequestContext, id: string): Promise<Document> {
    return audited(
      deps,
      ctx,
      {
        action: 'R',
        type: 'document.read',
        entity: { type: 'Document', id, version: null },
      },
      async (tx, record) =>
        asDto(tx, (await loadDocument(tx, ctx, id, record, 'documents.read')).doc),
    );
  }

  async function list(
    ctx: RequestContext,
    patientId: string,
    page: { limit: number; cursor?: string; includeDeleted?: boolean },
  ): Promise<Page<Document>> {
    const beforeId = idAfter(page.cursor);
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'document.list', patientId },
      async (tx, record) => {
        const now = clock.now();
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
          return current ? [documentOf(d, current)] : [];
        });
        record.detail = { count: items.length, documentIds: items.map((d) => d.id) };
        return { items, nextCursor: result.nextCursor };
      },
    );
  }

  async function versions(ctx: RequestContext, id: string): Promise<{ items: DocumentVersion[] }> {
    return audited(
      deps,
      ctx,
      {
        action: 'R',
        type: 'document.versions.list',
        entity: { type: 'Document', id, version: null },
      },
      async (tx, record) => {
        const { doc } = await loadDocument(tx, ctx, id, record, 'documents.read');
        return { items: (await versionsOf(tx, [doc.id])).map(toVersion) };
      },
    );
  }

  /**
   * Opens the content of one version for download. The blob is opened (and its first chunk
   * authenticated) before the audit event commits, so an unreadable file is an error answer and
   * a download that was answered is always in the trail.
   */
  async function openContent(
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
        const { doc } = await loadDocument(deps.db.read, ctx, id, record, 'documents.read');
        assertActive(doc);
        const row = await loadVersion(deps.db.read, doc, version ?? doc.current_version);
        record.entity = { type: 'Document', id: doc.id, version: row.version };
        const range = rangeOf(row.size);
        const ref = refOf(row);
        const retrieval = await vault.prepareRead(ref);
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
        const stream = await openBlob(ref, range ?? undefined);
        return { row, range, stream };
      },
      async (tx, _record, { row, range, stream }) => {
        // Reads keep a file in the hot tier; once a day per version is enough to know.
        const now = clock.now();
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
  async function openBlob(ref: BlobRef, range?: ParsedRange): Promise<Readable> {
    try {
      return await primed(await vault.open(ref, range));
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

  async function thumbnail(ctx: RequestContext, id: string): Promise<Buffer> {
    return auditedStaged(
      deps,
      ctx,
      {
        action: 'R',
        type: 'document.thumbnail.read',
        entity: { type: 'Document', id, version: null },
      },
      async (record) => {
        const { doc } = await loadDocument(deps.db.read, ctx, id, record, 'documents.read');
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
          return await vault.read(ref);
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

  /** Title, kind, and who sees the document (mark it for the owner, share it with a role). */
  async function updateInfo(
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
        const { doc } = await loadDocument(tx, ctx, id, record, 'documents.write', true);
        assertActive(doc);
        const set = {
          ...(changes.title !== undefined ? { title: changes.title?.trim() || null } : {}),
          ...(changes.kind !== undefined ? { kind: changes.kind } : {}),
          ...(changes.visibility !== undefined ? { visibility: changes.visibility } : {}),
          ...(changes.sharedWith !== undefined
            ? { shared_with: JSON.stringify(changes.sharedWith) }
            : {}),
          updated_at: clock.now().toISOString(),
        };
        if (!(await updateDocumentIfVersion(tx, doc.id, doc.version, set)))
          throw staleVersion('document');
        record.detail = { fields: Object.keys(changes).sort() };
        return asDto(tx, { ...doc, ...set, version: doc.version + 1 });
      },
    );
  }

  async function changeStatus(
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
        const { doc, grant } = await loadDocument(tx, ctx, id, record, 'documents.write', true);
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
        const at = clock.now().toISOString();
        const changes = deleting
          ? { status: 'deleted', deleted_at: at, deleted_by: actor.userId, updated_at: at }
          : { status: 'active', deleted_at: null, deleted_by: null, updated_at: at };
        if (!(await updateDocumentIfVersion(tx, doc.id, doc.version, changes)))
          throw staleVersion('document');
        return asDto(tx, { ...doc, ...changes, version: doc.version + 1 });
      },
    );
  }

  /**
   * Retention purge (admin): the content of every version of a deleted document is removed from
   * the blob store by a job; the rows stay, so the audit trail keeps its references.
   */
  async function purge(ctx: RequestContext, id: string, reason: string): Promise<Document> {
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
        const { doc } = await loadDocument(tx, ctx, id, record, 'documents.purge', true);
        if (doc.status !== 'deleted') {
          throw new AppError(
            'conflict',
            doc.status === 'purged'
              ? 'This document was already purged.'
              : 'Delete the document first; only deleted documents can be purged.',
          );
        }
        const now = clock.now();
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
        return asDto(tx, { ...doc, ...changes, version: doc.version + 1 });
      },
    ).finally(() => deps.onOutbox?.());
  }

  /**
   * The preview job: decodes the file (image or DICOM), stores an encrypted thumbnail and the
   * metadata found. Runs outside any request; a file it cannot read gets a marker, not a crash.
   */
  async function makeVersionPreview(documentId: string, version: number): Promise<void> {
    const row = await findDocumentVersion(deps.db.read, documentId, version);
    if (!row || row.preview_status !== 'pending' || row.purged_at !== null) return;
    const doc = await findDocument(deps.db.read, documentId);
    if (!doc) return;
    let outcome: {
      status: PreviewStatus;
      reason: string | null;
      metadata: Record<string, unknown> | null;
      thumb: StoredBlob | null;
    };
    if (row.size > settings.previewMaxBytes) {
      outcome = {
        status: 'unsupported',
        reason: 'No preview: the file is larger than the preview limit.',
        metadata: null,
        thumb: null,
      };
    } else {
      const ready = await vault.prepareRead(refOf(row));
      if (!ready.ready) return; // archived before its preview was made: nothing to show
      const bytes = await vault.read(refOf(row));
      const preview = await makePreview(bytes, row.content_type);
      outcome =
        preview.status === 'ready'
          ? {
              status: 'ready',
              reason: null,
              metadata: preview.metadata,
              thumb: await vault.putBuffer(preview.thumbnail),
            }
          : {
              status: preview.status,
              reason: preview.reason,
              metadata: preview.metadata,
              thumb: null,
            };
    }
    const thumb = outcome.thumb;
    const applied = await deps.db.write(async (tx) => {
      const thumbKey = thumb ? currentWrap(thumb) : null;
      const ok = await updateDocumentVersion(
        tx,
        documentId,
        version,
        {
          preview_status: outcome.status,
          preview_reason: outcome.reason,
          metadata: outcome.metadata === null ? null : JSON.stringify(outcome.metadata),
          thumb_blob_key: thumb?.blobKey ?? null,
          thumb_key_id: thumbKey?.keyId ?? null,
          thumb_wrapped_key: thumbKey?.wrapped ?? null,
          thumb_size: thumb?.size ?? null,
          thumb_sha256: thumb?.sha256 ?? null,
        },
        { previewStatus: 'pending', notPurged: true },
      );
      if (ok) {
        await writeAuditEvent(
          tx,
          deps,
          systemContext('preview-job', 'caretrail-preview-job'),
          { action: 'U', type: 'document.preview' },
          {
            patientId: doc.patient_id,
            entity: { type: 'Document', id: documentId, version },
            detail: { status: outcome.status, thumbnailType: thumb ? THUMBNAIL_TYPE : null },
          },
          'success',
        );
      }
      return ok;
    });
    if (!applied && thumb) await dropBlob(thumb);
  }

  return {
    create,
    replaceContent,
    get,
    list,
    versions,
    openContent,
    thumbnail,
    updateInfo,
    remove: (ctx: RequestContext, id: string) => changeStatus(ctx, id, 'document.delete'),
    restore: (ctx: RequestContext, id: string) => changeStatus(ctx, id, 'document.restore'),
    purge,
    makeVersionPreview,
    storeFile,
    storeAttachment,
    fileForResult,
    dropBlob,
  };
}

export type DocumentService = ReturnType<typeof createDocumentService>;

function defaultKind(contentType: string): DocumentKind {
  if (contentType === 'application/dicom') return 'imaging';
  if (contentType.startsWith('image/')) return 'photo';
  if (contentType.startsWith('video/')) return 'video';
  if (contentType === 'application/pdf') return 'report';
  return 'other';
}
