// The preview job: thumbnails and metadata of images and DICOM files, outside any request.
import type { StoredBlob } from '../../blobs/vault.js';
import type { PreviewStatus } from '../../domain/document.js';
import {
  findDocument,
  findDocumentVersion,
  updateDocumentVersion,
} from '../../store/document.store.js';
import { writeAuditEvent } from '../audit.service.js';
import { systemContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { replicateBlob } from '../../replication/blobs/track.js';
import {
  canPreview,
  makePreview,
  THUMBNAIL_TYPE,
  UNSUPPORTED_TYPE,
} from '../../previews/thumbnail.js';
import { currentWrap, dropBlob } from './files.js';
import { refOf } from './model.js';

/**
 * The preview job: decodes the file (image or DICOM), stores an encrypted thumbnail and the
 * metadata found. Runs outside any request; a file it cannot read gets a marker, not a crash.
 */
export async function makeVersionPreview(
  deps: ServiceDeps,
  documentId: string,
  version: number,
): Promise<void> {
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
  if (!canPreview(row.content_type)) {
    // Known from the sniffed type alone: the file is not read (nor decrypted) for nothing.
    outcome = { ...UNSUPPORTED_TYPE, metadata: null, thumb: null };
  } else if (row.size > deps.settings.previewMaxBytes) {
    outcome = {
      status: 'unsupported',
      reason: 'No preview: the file is larger than the preview limit.',
      metadata: null,
      thumb: null,
    };
  } else {
    const ready = await deps.vault.prepareRead(refOf(row));
    if (!ready.ready) return; // archived before its preview was made: nothing to show
    const bytes = await deps.vault.read(refOf(row));
    const preview = await makePreview(bytes, row.content_type);
    outcome =
      preview.status === 'ready'
        ? {
            status: 'ready',
            reason: null,
            metadata: preview.metadata,
            thumb: await deps.vault.putBuffer(preview.thumbnail),
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
    const thumbKey = thumb ? currentWrap(deps, thumb) : null;
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
      if (thumb) await replicateBlob(deps, tx, deps.clock.now(), thumb.blobKey);
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
  if (!applied && thumb) await dropBlob(deps, thumb);
}
