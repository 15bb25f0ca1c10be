// Documents and their versions. Bodies live in the blob store; rows hold what is needed to find,
// decrypt and check them.
import type { SeenBy } from '../domain/access.js';
import { engineOf } from './dialect.js';
import { visibleWhere } from './visibility.js';
import type { DocumentRow, DocumentVersionRow, DocumentVersionsTable, Tx } from './tables.js';

export async function insertDocument(tx: Tx, row: DocumentRow): Promise<void> {
  await tx.insertInto('documents').values(row).execute();
}

export async function insertDocumentVersion(tx: Tx, row: DocumentVersionRow): Promise<void> {
  await tx.insertInto('document_versions').values(row).execute();
}

export async function findDocument(
  tx: Tx,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<DocumentRow | undefined> {
  return tx
    .selectFrom('documents')
    .selectAll()
    .where('id', '=', id)
    .$if(options.forUpdate === true && engineOf(tx) === 'postgres', (q) => q.forUpdate())
    .executeTakeFirst();
}

export async function findDocumentVersion(
  tx: Tx,
  documentId: string,
  version: number,
): Promise<DocumentVersionRow | undefined> {
  return tx
    .selectFrom('document_versions')
    .selectAll()
    .where('document_id', '=', documentId)
    .where('version', '=', version)
    .executeTakeFirst();
}

export async function versionsOf(tx: Tx, documentIds: string[]): Promise<DocumentVersionRow[]> {
  if (documentIds.length === 0) return [];
  return tx
    .selectFrom('document_versions')
    .selectAll()
    .where('document_id', 'in', documentIds)
    .orderBy('document_id')
    .orderBy('version', 'desc')
    .execute();
}

/** Newest first (ids are time-ordered); deleted documents only when asked for, by staff. */
export async function listDocuments(
  tx: Tx,
  patientId: string,
  filter: SeenBy,
  page: { beforeId: string | null; limit: number; includeDeleted: boolean },
): Promise<DocumentRow[]> {
  // Deleted documents are the clinic's to review and restore: listed only to its staff.
  const withDeleted = page.includeDeleted && filter.kind === 'everything';
  return tx
    .selectFrom('documents')
    .selectAll()
    .where('patient_id', '=', patientId)
    .where(
      visibleWhere(filter, {
        visibility: 'documents.visibility',
        sharedWith: 'documents.shared_with',
        author: 'documents.created_by',
      }),
    )
    .$if(!withDeleted, (q) => q.where('status', '=', 'active'))
    .$if(page.beforeId !== null, (q) => q.where('id', '<', page.beforeId ?? ''))
    .orderBy('id', 'desc')
    .limit(page.limit)
    .execute();
}

/** Applies `changes` only if the document is still at `expectedVersion`. */
export async function updateDocumentIfVersion(
  tx: Tx,
  id: string,
  expectedVersion: number,
  changes: Partial<
    Pick<
      DocumentRow,
      | 'current_version'
      | 'status'
      | 'deleted_at'
      | 'deleted_by'
      | 'purged_at'
      | 'title'
      | 'kind'
      | 'visibility'
      | 'shared_with'
    >
  > & { updated_at: string },
): Promise<boolean> {
  const result = await tx
    .updateTable('documents')
    .set({ ...changes, version: expectedVersion + 1 })
    .where('id', '=', id)
    .where('version', '=', expectedVersion)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function updateDocumentVersion(
  tx: Tx,
  documentId: string,
  version: number,
  changes: Partial<Omit<DocumentVersionsTable, 'document_id' | 'version'>>,
  onlyIf?: { previewStatus?: string; tier?: string; notPurged?: boolean },
): Promise<boolean> {
  const result = await tx
    .updateTable('document_versions')
    .set(changes)
    .where('document_id', '=', documentId)
    .where('version', '=', version)
    .$if(onlyIf?.previewStatus !== undefined, (q) =>
      q.where('preview_status', '=', onlyIf?.previewStatus ?? ''),
    )
    .$if(onlyIf?.tier !== undefined, (q) => q.where('tier', '=', onlyIf?.tier ?? ''))
    .$if(onlyIf?.notPurged === true, (q) => q.where('purged_at', 'is', null))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Hot, unpurged versions not read since `before`, oldest read first (the archive job). */
export async function versionsToArchive(
  tx: Tx,
  before: string,
  limit: number,
): Promise<DocumentVersionRow[]> {
  return tx
    .selectFrom('document_versions')
    .selectAll()
    .where('tier', '=', 'hot')
    .where('purged_at', 'is', null)
    .where('last_read_at', '<', before)
    .orderBy('last_read_at')
    .limit(limit)
    .execute();
}

/** Every wrapped key (content and thumbnail) not yet under master key `activeId`. */
export async function versionsWrappedByOtherKeys(
  tx: Tx,
  activeId: string,
  limit: number,
): Promise<DocumentVersionRow[]> {
  return tx
    .selectFrom('document_versions')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb('key_id', '!=', activeId),
        eb.and([eb('thumb_key_id', 'is not', null), eb('thumb_key_id', '!=', activeId)]),
      ]),
    )
    .limit(limit)
    .execute();
}
