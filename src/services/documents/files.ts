// Files into the vault: streamed, encrypted uploads (one per request), the version rows that
// point at them, new documents over stored blobs (uploads and device results).
import { Readable } from 'node:stream';
import type { StoredBlob } from '../../blobs/vault.js';
import { type DocumentKind, safeFilename } from '../../domain/document.js';
import { AppError } from '../../domain/errors.js';
import { uuidv7 } from '../../domain/ids.js';
import { insertDocument, insertDocumentVersion } from '../../store/document.store.js';
import { enqueue } from '../../store/outbox.store.js';
import type { DocumentRow, DocumentVersionRow, Tx } from '../../store/tables.js';
import type { CareRole, Visibility } from '../../domain/access.js';
import type { Actor } from '../context.js';
import { sniffContentType } from '../content-type.js';
import type { ServiceDeps } from '../deps.js';
import { replicateBlob } from '../../replication/blobs/track.js';
import { emitEvent } from '../events.js';
import { guardStall } from './stall-guard.js';
import { defaultKind, type IncomingFile, type Received } from './model.js';

/**
 * Streams the file into the vault and learns its real type; empty files are refused, and a
 * client that stops sending for CARETRAIL_UPLOAD_STALL_SECONDS is refused (408).
 */
export async function storeFile(deps: ServiceDeps, file: IncomingFile): Promise<Received> {
  const stream = guardStall(file.stream, deps.settings.uploadStallSeconds * 1000);
  const stored = await deps.vault.put(stream, deps.settings.maxUploadBytes);
  if (stored.size === 0) {
    await deps.vault.store.delete(stored.blobKey);
    throw new AppError('invalid', 'The file is empty (0 bytes); nothing was stored.');
  }
  const received: Received = { ...stored, contentType: await sniffContentType(stored.head) };
  if (deps.blobReplicaSync) {
    try {
      received.replica = await deps.blobReplicaSync.copyNow(stored);
    } catch (err) {
      await deps.vault.store.delete(stored.blobKey);
      throw err;
    }
  }
  return received;
}

export function versionRow(
  deps: ServiceDeps,
  doc: Pick<DocumentRow, 'id' | 'organization_id'>,
  version: number,
  file: Pick<IncomingFile, 'filename' | 'declaredType'>,
  stored: Received,
  actor: Pick<Actor, 'userId'>,
  now: string,
): DocumentVersionRow {
  const declared = file.declaredType?.split(';')[0]?.trim().toLowerCase().slice(0, 100) ?? null;
  const key = currentWrap(deps, stored);
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
export const currentWrap = (
  deps: ServiceDeps,
  stored: StoredBlob,
): { keyId: string; wrapped: string } =>
  stored.keyId === deps.vault.keyring.activeId
    ? { keyId: stored.keyId, wrapped: stored.wrapped }
    : deps.vault.rewrap(stored);

/** Removes a stored file whose row did not commit (and its synchronous replica copy). */
export const dropBlob = async (
  deps: ServiceDeps,
  stored: Pick<Received, 'blobKey' | 'replica'>,
) => {
  await deps.vault.store.delete(stored.blobKey);
  if (stored.replica) await deps.blobReplicaSync?.dropCopy(stored.blobKey);
};

/**
 * Runs the request reader, storing the one file it hands over. When reading fails after the
 * file was stored (a later part is bad, the body is cut off), the stored blob is removed.
 */
export async function receiveFile<F>(
  deps: ServiceDeps,
  receive: (onFile: (file: IncomingFile) => Promise<void>) => Promise<F>,
): Promise<{ value: F; file: IncomingFile; stored: Received }> {
  const got: { file?: IncomingFile; stored?: Received } = {};
  try {
    const value = await receive(async (incoming) => {
      if (got.file) throw new AppError('invalid', 'Send one file per upload.');
      got.file = incoming;
      got.stored = await storeFile(deps, incoming);
    });
    if (!got.file || !got.stored)
      throw new AppError('invalid', 'The request has no file; nothing was stored.');
    return { value, file: got.file, stored: got.stored };
  } catch (err) {
    if (got.stored) await dropBlob(deps, got.stored);
    throw err;
  }
}

/**
 * A new document (version 1) over a blob already stored, its preview queued and
 * `document.created` emitted; the caller has checked access and audits.
 */
export async function insertNewDocument(
  deps: ServiceDeps,
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
  const version = versionRow(deps, doc, 1, input.file, stored, { userId: input.createdBy }, at);
  await insertDocumentVersion(tx, version);
  await replicateBlob(deps, tx, now, version.blob_key, stored.replica);
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
export async function storeAttachment(deps: ServiceDeps, data: Buffer): Promise<Received> {
  return storeFile(deps, {
    stream: Readable.from([data]),
    filename: undefined,
    declaredType: undefined,
  });
}

/** A result's file on the patient's chart: an internal document, kind by content type. */
export async function fileForResult(
  deps: ServiceDeps,
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
  const { doc } = await insertNewDocument(deps, tx, now, {
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
