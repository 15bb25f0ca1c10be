// Clinical, behaviour and other notes: drafts, finalization (lock), addenda and full history.
import { userNames } from '../store/user.store.js';
import { AppError, notFound, staleVersion } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import {
  assertCanAmend,
  assertEditable,
  type NoteChange,
  type NoteKind,
  type NoteStatus,
  type NoteVisibility,
} from '../domain/note.js';
import {
  addendaOf,
  findNote,
  insertAddendum,
  insertNote,
  recordRevision,
  listNotes,
  revisionsOf,
  setAddendumRelease,
  updateNoteIfVersion,
} from '../store/note.store.js';
import type { NoteRow, Tx } from '../store/tables.js';
import { documentsOfResults, resultsOfNotes } from '../store/result.store.js';
import type { ResultObservation } from '../domain/result.js';
import type { NoteResult } from './result.service.js';
import {
  canSeeAddendum,
  parseSharedWith,
  seenBy,
  type CareRole,
  type PatientCapability,
} from '../domain/access.js';
import { accessItem, accessPatient, sees, type PatientGrant } from './access.js';
import { audited, auditedView, type AuditRecord } from './audit.service.js';
import type { Actor, RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { emitEvent } from './events.js';
import { toPage, type Page, idAfter } from './pagination.js';

export interface Addendum {
  id: string;
  body: string;
  authorId: string;
  /** The author's name as it is now (for display; the audit trail keeps the id). */
  authorName: string;
  createdAt: string;
  /** When the owner may see it (addenda to owner notes); null while not released. */
  releaseAt: string | null;
}

export interface Note {
  id: string;
  patientId: string;
  kind: NoteKind;
  title: string | null;
  body: string;
  visibility: NoteVisibility;
  sharedWith: CareRole[];
  status: NoteStatus;
  version: number;
  authorId: string;
  authorName: string;
  releaseAt: string | null;
  createdAt: string;
  updatedAt: string;
  finalizedAt: string | null;
  finalizedBy: string | null;
  addenda: Addendum[];
  /** For result notes: the device result with its structured observations. */
  result: NoteResult | null;
}

export interface NoteRevision {
  version: number;
  change: NoteChange;
  kind: NoteKind;
  title: string | null;
  body: string;
  visibility: NoteVisibility;
  status: NoteStatus;
  addendumId: string | null;
  actorId: string;
  at: string;
}

export interface NoteInput {
  kind: NoteKind;
  title?: string | null;
  body: string;
  visibility?: NoteVisibility;
  sharedWith?: CareRole[];
}

function toNote(
  row: NoteRow,
  authorName: string,
  addenda: Addendum[],
  result: NoteResult | null = null,
): Note {
  return {
    result,
    id: row.id,
    patientId: row.patient_id,
    kind: row.kind as NoteKind,
    title: row.title,
    body: row.body,
    visibility: row.visibility as NoteVisibility,
    sharedWith: parseSharedWith(row.shared_with),
    status: row.status as NoteStatus,
    version: row.version,
    authorId: row.author_id,
    authorName,
    releaseAt: row.release_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finalizedAt: row.finalized_at,
    finalizedBy: row.finalized_by,
    addenda,
  };
}

/** When a release takes effect: `at` if given (not in the past), else after the clinic's delay. */
function releaseTimeFor(now: Date, delayHours: number, input: { at?: string }): Date {
  if (input.at === undefined) return new Date(now.getTime() + delayHours * 3_600_000);
  const at = new Date(input.at);
  if (Number.isNaN(at.getTime()))
    throw new AppError('invalid', 'at must be a date and time (ISO 8601).');
  // A minute of grace for clocks; anything earlier is a mistake, not "release now".
  if (at.getTime() < now.getTime() - 60_000)
    throw new AppError('invalid', 'at is in the past; leave it out to release now.');
  return at.getTime() < now.getTime() ? now : at;
}

function checkBody(body: string): string {
  if (body.trim() === '') throw new AppError('invalid', 'The note body is empty.');
  return body;
}

export function createNoteService(deps: ServiceDeps) {
  const { clock, settings } = deps;
  const releaseTime = (now: Date, input: { at?: string }) =>
    releaseTimeFor(now, settings.ownerReleaseDelayHours, input);

  /**
   * Notes as `grant`'s holder sees them: with the addenda they may see (the owner only those
   * released to them) and, for result notes, the device result.
   */
  async function withAddenda(tx: Tx, rows: NoteRow[], grant: PatientGrant): Promise<Note[]> {
    const ids = rows.map((r) => r.id);
    const now = clock.now();
    const addenda = (await addendaOf(tx, ids)).filter((a) =>
      canSeeAddendum(grant.access, { releaseAt: a.release_at }, now),
    );
    // Result notes carry the structured observations of their device result.
    const results = rows.some((r) => r.kind === 'result') ? await resultsOfNotes(tx, ids) : [];
    const files = await documentsOfResults(
      tx,
      results.map((r) => r.id),
    );
    const names = await userNames(tx, [
      ...new Set([...rows.map((r) => r.author_id), ...addenda.map((a) => a.author_id)]),
    ]);
    const nameOf = (id: string) => names.get(id) ?? 'Unknown';
    return rows.map((row) => {
      const result = results.find((x) => x.note_id === row.id);
      return toNote(
        row,
        nameOf(row.author_id),
        addenda
          .filter((a) => a.note_id === row.id)
          .map((a) => ({
            id: a.id,
            body: a.body,
            authorId: a.author_id,
            authorName: nameOf(a.author_id),
            createdAt: a.created_at,
            releaseAt: a.release_at,
          })),
        result
          ? {
              id: result.id,
              source: result.source,
              kind: result.kind,
              version: result.current_version,
              abnormal: result.abnormal === 1,
              observations: JSON.parse(result.observations) as ResultObservation[],
              documentIds: files.filter((f) => f.result_id === result.id).map((f) => f.document_id),
            }
          : null,
      );
    });
  }

  async function noteAsDto(tx: Tx, row: NoteRow, grant: PatientGrant): Promise<Note> {
    const [note] = await withAddenda(tx, [row], grant);
    if (!note) throw notFound('Note');
    return note;
  }

  const revise = (
    tx: Tx,
    note: NoteRow,
    change: NoteChange,
    actor: Actor,
    at: string,
    addendumId: string | null = null,
  ) => recordRevision(tx, note, change, actor.userId, at, addendumId);

  /**
   * The note if the caller may see it and use `capability` on its patient, else 404 (403 when
   * they see it but may not do this); records which patient it belongs to. Changes lock the
   * row, so concurrent addenda or edits queue up instead of failing on the version.
   */
  async function loadNote(
    tx: Tx,
    ctx: RequestContext,
    id: string,
    record: AuditRecord,
    capability: PatientCapability,
    lock = false,
  ): Promise<{ row: NoteRow; grant: PatientGrant }> {
    const row = await findNote(tx, id, { forUpdate: lock });
    if (!row) throw notFound('Note');
    const now = clock.now();
    const grant = await accessItem(
      tx,
      ctx,
      { ...row, author: row.author_id },
      capability,
      record,
      now,
      'Note',
    );
    record.entity = { type: 'Note', id: row.id, version: row.version };
    return { row, grant };
  }

  async function reload(tx: Tx, id: string): Promise<NoteRow> {
    const row = await findNote(tx, id);
    if (!row) throw notFound('Note');
    return row;
  }

  /** People outside the organization change only what they wrote themselves. */
  function requireOwnWorkOutside(grant: PatientGrant, row: NoteRow, what: string): void {
    if (grant.access.via !== 'organization' && row.author_id !== grant.actor.userId)
      throw new AppError('forbidden', `Only the author may ${what} this note.`);
  }

  /**
   * Applies one change to a note still at `row.version`, keeps the new snapshot in its history
   * and returns the updated note; 412 when someone else changed it first.
   */
  async function applyChange(
    tx: Tx,
    grant: PatientGrant,
    record: AuditRecord,
    row: NoteRow,
    change: NoteChange,
    changes: Parameters<typeof updateNoteIfVersion>[3],
    addendumId: string | null = null,
  ): Promise<Note> {
    if (!(await updateNoteIfVersion(tx, row.id, row.version, changes))) throw staleVersion('note');
    const updated = await reload(tx, row.id);
    await revise(tx, updated, change, grant.actor, changes.updated_at, addendumId);
    record.entity = { type: 'Note', id: row.id, version: updated.version };
    return noteAsDto(tx, updated, grant);
  }

  async function create(ctx: RequestContext, patientId: string, input: NoteInput): Promise<Note> {
    const body = checkBody(input.body);
    return audited(
      deps,
      ctx,
      { action: 'C', type: 'note.create', patientId },
      async (tx, record) => {
        const { actor, patient } = await accessPatient(
          tx,
          ctx,
          patientId,
          'notes.write',
          record,
          clock.now(),
        );
        const now = clock.now().toISOString();
        const row: NoteRow = {
          id: uuidv7(),
          organization_id: patient.organization_id,
          patient_id: patientId,
          kind: input.kind,
          title: input.title?.trim() || null,
          body,
          visibility: input.visibility ?? 'internal',
          shared_with: JSON.stringify(input.sharedWith ?? []),
          status: 'draft',
          version: 1,
          author_id: actor.userId,
          created_at: now,
          updated_at: now,
          finalized_at: null,
          finalized_by: null,
          release_at: null,
          released_by: null,
        };
        await insertNote(tx, row);
        await revise(tx, row, 'created', actor, now);
        record.entity = { type: 'Note', id: row.id, version: 1 };
        return toNote(row, actor.name, []);
      },
    );
  }

  async function list(
    ctx: RequestContext,
    patientId: string,
    page: { limit: number; cursor?: string },
  ): Promise<Page<Note>> {
    const beforeId = idAfter(page.cursor);
    return auditedView(
      deps,
      ctx,
      { action: 'R', type: 'note.list', patientId },
      async (tx, record) => {
        const now = clock.now();
        const grant = await accessPatient(tx, ctx, patientId, 'notes.read', record, now);
        const rows = await listNotes(tx, patientId, seenBy(grant.access, grant.actor.userId, now), {
          beforeId,
          limit: page.limit + 1,
        });
        const result = toPage(
          rows,
          page.limit,
          (r) => [r.id],
          (r) => r,
        );
        record.detail = { count: result.items.length, noteIds: result.items.map((r) => r.id) };
        return {
          items: await withAddenda(tx, result.items, grant),
          nextCursor: result.nextCursor,
        };
      },
    );
  }

  async function get(ctx: RequestContext, id: string): Promise<Note> {
    return audited(
      deps,
      ctx,
      {
        action: 'R',
        type: 'note.read',
        entity: { type: 'Note', id, version: null },
      },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.read');
        return noteAsDto(tx, row, grant);
      },
    );
  }

  async function update(
    ctx: RequestContext,
    id: string,
    expectedVersion: number,
    changes: {
      kind?: NoteKind;
      title?: string | null;
      body?: string;
      visibility?: NoteVisibility;
      sharedWith?: CareRole[];
    },
  ): Promise<Note> {
    if (changes.body !== undefined) checkBody(changes.body);
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'note.update',
        entity: { type: 'Note', id, version: null },
      },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.write', true);
        const actor = grant.actor;
        assertEditable(row.status as NoteStatus);
        if (row.author_id !== actor.userId)
          throw new AppError('forbidden', 'Only the author may edit a draft note.');
        if (row.version !== expectedVersion) throw staleVersion('note', row.version);
        const now = clock.now().toISOString();
        record.detail = { fields: Object.keys(changes).sort() };
        return applyChange(tx, grant, record, row, 'edited', {
          ...(changes.kind !== undefined ? { kind: changes.kind } : {}),
          ...(changes.title !== undefined ? { title: changes.title?.trim() || null } : {}),
          ...(changes.body !== undefined ? { body: changes.body } : {}),
          ...(changes.visibility !== undefined ? { visibility: changes.visibility } : {}),
          ...(changes.sharedWith !== undefined
            ? { shared_with: JSON.stringify(changes.sharedWith) }
            : {}),
          updated_at: now,
        });
      },
    );
  }

  async function finalize(
    ctx: RequestContext,
    id: string,
    expectedVersion: number | undefined,
  ): Promise<Note> {
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'note.finalize',
        entity: { type: 'Note', id, version: null },
      },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.finalize', true);
        const actor = grant.actor;
        assertEditable(row.status as NoteStatus);
        // The author signs their own note; a clinician of the patient's organization may also
        // sign off a colleague's draft.
        const orgClinician =
          grant.access.via === 'organization' && grant.access.role === 'clinician';
        if (row.author_id !== actor.userId && !orgClinician) {
          throw new AppError('forbidden', 'Only the author or a clinician may finalize this note.');
        }
        if (expectedVersion !== undefined && row.version !== expectedVersion) {
          throw staleVersion('note', row.version);
        }
        const at = clock.now();
        const now = at.toISOString();
        const note = await applyChange(tx, grant, record, row, 'finalized', {
          status: 'final',
          finalized_at: now,
          finalized_by: actor.userId,
          updated_at: now,
        });
        await emitEvent(tx, at, {
          type: 'note.finalized',
          organizationId: row.organization_id,
          patientId: row.patient_id,
          data: { noteId: row.id, kind: row.kind },
        });
        return note;
      },
    ).finally(() => deps.onOutbox?.());
  }

  async function addAddendum(
    ctx: RequestContext,
    id: string,
    input: { body: string },
  ): Promise<Note> {
    const body = checkBody(input.body);
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'note.addendum',
        entity: { type: 'Note', id, version: null },
      },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.amend', true);
        const actor = grant.actor;
        requireOwnWorkOutside(grant, row, 'amend');
        assertCanAmend(row.status as NoteStatus);
        const now = clock.now().toISOString();
        const addendumId = uuidv7();
        await insertAddendum(tx, {
          id: addendumId,
          note_id: id,
          body,
          author_id: actor.userId,
          created_at: now,
          release_at: null,
          released_by: null,
        });
        record.detail = { addendumId };
        return applyChange(tx, grant, record, row, 'addendum', { updated_at: now }, addendumId);
      },
    );
  }

  /**
   * Releases a final owner-visible note to the owner, now or at a later time (the clinic's
   * delay when none is given). A release still in the future can be moved.
   */
  async function release(ctx: RequestContext, id: string, input: { at?: string }): Promise<Note> {
    const now = clock.now();
    const at = releaseTime(now, input);
    return audited(
      deps,
      ctx,
      { action: 'U', type: 'note.release', entity: { type: 'Note', id, version: null } },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.release', true);
        if (row.visibility !== 'owner')
          throw new AppError(
            'conflict',
            'Only notes with visibility "owner" can be released to the owner.',
          );
        if (row.status !== 'final')
          throw new AppError('conflict', 'Finalize the note before releasing it to the owner.');
        if (row.release_at !== null && Date.parse(row.release_at) <= now.getTime())
          throw new AppError('conflict', 'This note is already released to the owner.');
        record.detail = { releaseAt: at.toISOString() };
        return applyChange(tx, grant, record, row, 'released', {
          release_at: at.toISOString(),
          released_by: grant.actor.userId,
          updated_at: now.toISOString(),
        });
      },
    );
  }

  /**
   * Releases one addendum of a final owner note to the owner, by the same rules as the note:
   * now or at a later time (the clinic's delay when none is given). Releasing the note does not
   * release its addenda: each is written later and reviewed on its own.
   */
  async function releaseAddendum(
    ctx: RequestContext,
    id: string,
    addendumId: string,
    input: { at?: string },
  ): Promise<Note> {
    const now = clock.now();
    const at = releaseTime(now, input);
    return audited(
      deps,
      ctx,
      { action: 'U', type: 'note.addendum.release', entity: { type: 'Note', id, version: null } },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.release', true);
        const addendum = (await addendaOf(tx, [row.id])).find((a) => a.id === addendumId);
        if (!addendum) throw notFound('Addendum');
        if (row.visibility !== 'owner')
          throw new AppError(
            'conflict',
            'Only addenda to notes with visibility "owner" can be released to the owner.',
          );
        const released = await setAddendumRelease(
          tx,
          addendumId,
          at.toISOString(),
          grant.actor.userId,
          now.toISOString(),
        );
        if (!released)
          throw new AppError('conflict', 'This addendum is already released to the owner.');
        record.detail = { addendumId, releaseAt: at.toISOString() };
        return applyChange(
          tx,
          grant,
          record,
          row,
          'addendum_released',
          { updated_at: now.toISOString() },
          addendumId,
        );
      },
    );
  }

  async function history(
    ctx: RequestContext,
    id: string,
  ): Promise<{ items: NoteRevision[]; addenda: Addendum[] }> {
    return audited(
      deps,
      ctx,
      {
        action: 'R',
        type: 'note.history',
        entity: { type: 'Note', id, version: null },
      },
      async (tx, record) => {
        const { row, grant } = await loadNote(tx, ctx, id, record, 'notes.read');
        const now = clock.now();
        // Outside the organization, only the versions the caller could have seen: an owner the
        // final ones of an owner note, a care role those shared with it. An earlier internal
        // draft stays internal.
        const seen = (await revisionsOf(tx, id)).filter(
          (r) =>
            grant.access.via === 'organization' ||
            (sees(grant, { ...r, author: row.author_id, release_at: row.release_at }, now) &&
              !(
                grant.access.via === 'share' &&
                grant.access.shareRole === 'owner' &&
                r.status !== 'final'
              )),
        );
        const note = await noteAsDto(tx, row, grant);
        // Nor, for the owner, the revisions of an addendum not released to them.
        const shown = new Set(note.addenda.map((a) => a.id));
        const revisions = seen.filter((r) => r.addendum_id === null || shown.has(r.addendum_id));
        return {
          items: revisions.map((r) => ({
            version: r.version,
            change: r.change as NoteChange,
            kind: r.kind as NoteKind,
            title: r.title,
            body: r.body,
            visibility: r.visibility as NoteVisibility,
            status: r.status as NoteStatus,
            addendumId: r.addendum_id,
            actorId: r.actor_id,
            at: r.at,
          })),
          addenda: note.addenda,
        };
      },
    );
  }

  return { create, list, get, update, finalize, addAddendum, release, releaseAddendum, history };
}

export type NoteService = ReturnType<typeof createNoteService>;
