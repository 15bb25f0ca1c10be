// Documents as callers see them (versions, storage tier, preview) and the pure helpers that
// build them from rows.
import type { Readable } from 'node:stream';
import type { BlobRef, StoredBlob } from '../../blobs/vault.js';
import type {
  DocumentKind,
  DocumentStatus,
  ParsedRange,
  PreviewStatus,
} from '../../domain/document.js';
import { AppError } from '../../domain/errors.js';
import type { DocumentRow, DocumentVersionRow } from '../../store/tables.js';
import { type CareRole, parseSharedWith, type Visibility } from '../../domain/access.js';
import type { ServiceDeps } from '../deps.js';

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

export type Received = StoredBlob & {
  contentType: string;
  /** Synchronous replication: the verified copy already on the blob replica. */
  replica?: { bytes: number; sha256: string };
};

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

export function parseMetadata(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export function refOf(v: DocumentVersionRow): BlobRef {
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

export function thumbRefOf(v: DocumentVersionRow): BlobRef | null {
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

export const toVersion = (deps: ServiceDeps, v: DocumentVersionRow): DocumentVersion => ({
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
      ? { tier: 'archive', retrievalDelaySeconds: deps.vault.store.archiveDelaySeconds }
      : { tier: 'hot', retrievalDelaySeconds: 0 },
});

export const documentOf = (
  deps: ServiceDeps,
  d: DocumentRow,
  current: DocumentVersionRow,
): Document => ({
  ...toVersion(deps, current),
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

export function assertActive(doc: DocumentRow): void {
  if (doc.status === 'deleted')
    throw new AppError('conflict', 'This document is deleted; restore it first.');
  if (doc.status === 'purged')
    throw new AppError('conflict', 'This document was purged; its content no longer exists.');
}

/** The kind a file gets when the uploader names none, from its real content type. */
export function defaultKind(contentType: string): DocumentKind {
  if (contentType === 'application/dicom') return 'imaging';
  if (contentType.startsWith('image/')) return 'photo';
  if (contentType.startsWith('video/')) return 'video';
  if (contentType === 'application/pdf') return 'report';
  return 'other';
}
