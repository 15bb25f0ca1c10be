// Notes, their addenda and their revision history (every change keeps a full snapshot).
import type { SeenBy } from '../domain/access.js';
import type { NoteChange } from '../domain/note.js';
import { uuidv7 } from '../domain/ids.js';
import { engineOf } from './dialect.js';
import { prepared, preparedInsert } from './prepared.js';
import { visibleWhere } from './visibility.js';
import type { NoteAddendumRow, NoteRevisionRow, NoteRow, Tx } from './tables.js';

const noteInsert = preparedInsert('notes', [
  'id',
  'organization_id',
  'patient_id',
  'kind',
  'title',
  'body',
  'visibility',
  'shared_with',
  'status',
  'version',
  'author_id',
  'created_at',
  'updated_at',
  'finalized_at',
  'finalized_by',
  'release_at',
  'released_by',
]);

export async function insertNote(tx: Tx, row: NoteRow): Promise<void> {
  await noteInsert.run(tx, row);
}

/** `forUpdate`: lock the row until the transaction ends (PostgreSQL; SQLite has one writer). */
export async function findNote(
  tx: Tx,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<NoteRow | undefined> {
  let q = tx.selectFrom('notes').selectAll().where('id', '=', id);
  if (options.forUpdate && engineOf(tx) === 'postgres') q = q.forUpdate();
  return q.executeTakeFirst();
}

/** Applies `changes` only if the note is still at `expectedVersion`; false otherwise. */
export async function updateNoteIfVersion(
  tx: Tx,
  id: string,
  expectedVersion: number,
  changes: Partial<
    Pick<
      NoteRow,
      | 'kind'
      | 'title'
      | 'body'
      | 'visibility'
      | 'shared_with'
      | 'status'
      | 'finalized_at'
      | 'finalized_by'
      | 'release_at'
      | 'released_by'
    >
  > & { updated_at: string },
): Promise<boolean> {
  const result = await tx
    .updateTable('notes')
    .set({ ...changes, version: expectedVersion + 1 })
    .where('id', '=', id)
    .where('version', '=', expectedVersion)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Newest first (ids are time-ordered). */
/** The staff's page (every note), prepared: the chart's hot path. */
const staffNotesPage = prepared((db, p: { patientId: string; limit: number }) =>
  db
    .selectFrom('notes')
    .selectAll()
    .where('patient_id', '=', p.patientId)
    .orderBy('id', 'desc')
    .limit(p.limit),
);
const staffNotesPageBefore = prepared(
  (db, p: { patientId: string; beforeId: string; limit: number }) =>
    db
      .selectFrom('notes')
      .selectAll()
      .where('patient_id', '=', p.patientId)
      .where('id', '<', p.beforeId)
      .orderBy('id', 'desc')
      .limit(p.limit),
);

export async function listNotes(
  tx: Tx,
  patientId: string,
  filter: SeenBy,
  page: { beforeId: string | null; limit: number },
): Promise<NoteRow[]> {
  if (filter.kind === 'everything') {
    return page.beforeId === null
      ? staffNotesPage.rows(tx, { patientId, limit: page.limit })
      : staffNotesPageBefore.rows(tx, { patientId, beforeId: page.beforeId, limit: page.limit });
  }
  let q = tx
    .selectFrom('notes')
    .selectAll()
    .where('patient_id', '=', patientId)
    .where(
      visibleWhere(filter, {
        visibility: 'notes.visibility',
        sharedWith: 'notes.shared_with',
        author: 'notes.author_id',
        releaseAt: 'notes.release_at',
      }),
    )
    .orderBy('id', 'desc')
    .limit(page.limit);
  if (page.beforeId !== null) q = q.where('id', '<', page.beforeId);
  return q.execute();
}

export async function insertAddendum(tx: Tx, row: NoteAddendumRow): Promise<void> {
  await tx.insertInto('note_addenda').values(row).execute();
}

export async function addendaOf(tx: Tx, noteIds: string[]): Promise<NoteAddendumRow[]> {
  if (noteIds.length === 0) return [];
  return tx
    .selectFrom('note_addenda')
    .selectAll()
    .where('note_id', 'in', noteIds)
    .orderBy('id')
    .execute();
}

/** Sets when the owner may see an addendum; false when it was released meanwhile. */
export async function setAddendumRelease(
  tx: Tx,
  addendumId: string,
  releaseAt: string,
  releasedBy: string,
  now: string,
): Promise<boolean> {
  const result = await tx
    .updateTable('note_addenda')
    .set({ release_at: releaseAt, released_by: releasedBy })
    .where('id', '=', addendumId)
    .where((eb) => eb.or([eb('release_at', 'is', null), eb('release_at', '>', now)]))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Keeps a full snapshot of the note as it is at `note.version` in its history. */
export async function recordRevision(
  tx: Tx,
  note: NoteRow,
  change: NoteChange,
  actorId: string,
  at: string,
  addendumId: string | null = null,
): Promise<void> {
  const row: NoteRevisionRow = {
    id: uuidv7(),
    note_id: note.id,
    version: note.version,
    change,
    kind: note.kind,
    title: note.title,
    body: note.body,
    visibility: note.visibility,
    shared_with: note.shared_with,
    status: note.status,
    addendum_id: addendumId,
    actor_id: actorId,
    at,
  };
  await revisionInsert.run(tx, row);
}

const revisionInsert = preparedInsert('note_revisions', [
  'id',
  'note_id',
  'version',
  'change',
  'kind',
  'title',
  'body',
  'visibility',
  'shared_with',
  'status',
  'addendum_id',
  'actor_id',
  'at',
]);

export async function revisionsOf(tx: Tx, noteId: string): Promise<NoteRevisionRow[]> {
  return tx
    .selectFrom('note_revisions')
    .selectAll()
    .where('note_id', '=', noteId)
    .orderBy('version')
    .execute();
}
