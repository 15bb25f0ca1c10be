// Results from devices into the chart: ingest (idempotent, optionally signed), matching by
// identifier, the result note, corrections as versions, and the queue of unmatched results.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Transform } from 'node:stream';
import { canonicalJson } from '../domain/audit.js';
import { AppError, notFound } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import { safeFilename } from '../domain/document.js';
import { isIdentifierSystem, normalizeIdentifier, searchKey } from '../domain/patient.js';
import {
  isAbnormalFlag,
  renderResult,
  speciesOf,
  type ResultKind,
  type ResultObservation,
} from '../domain/result.js';
import { isUniqueViolation } from '../store/dialect.js';
import {
  findNote,
  insertAddendum,
  insertNote,
  recordRevision,
  updateNoteIfVersion,
} from '../store/note.store.js';
import {
  findBySourceId,
  observationsOfVersions,
  versionOf,
  findResult,
  insertResult,
  insertResultVersion,
  insertAttachment,
  attachmentsWithoutDocument,
  setAttachmentDocument,
  mappedPatient,
  mapPatient,
  patientsByDemographics,
  patientsWithIdentifier,
  unmatchedResults,
  updateResult,
} from '../store/result.store.js';
import type { NoteRow, ResultRow, Tx } from '../store/tables.js';
import { accessPatient } from './access.js';
import { audited } from './audit.service.js';
import {
  requireIntegration,
  requirePermission,
  requireStaff,
  type RequestContext,
} from './context.js';
import type { ServiceDeps } from './deps.js';
import { replicateBlob } from '../replication/blobs/track.js';
import type { DocumentService, IncomingFile } from './document.service.js';
import { readDicomHeader, type DicomHeader } from '../previews/dicom.js';
import { emitEvent } from './events.js';
import { idAfter, toPage, type Page } from './pagination.js';

/** What a source says about the animal besides identifiers: for the fallback match. */
export interface Demographics {
  name?: string;
  species?: string;
  ownerSurname?: string;
  /** YYYY-MM-DD */
  birthDate?: string;
}

export interface ResultInput {
  /** An identifier (microchip, MRN, the source's own id as `external`), demographics, or both. */
  patient: { identifier?: { system: string; value: string } } & Demographics;
  source: string;
  kind: ResultKind;
  /** The source's own id for this result: a re-send is the same result, a change a correction. */
  resultId?: string;
  observations: ResultObservation[];
  /** Files that came with it (embedded PDFs, images): documents on the chart once matched. */
  attachments?: { filename: string; data: Buffer }[];
}

/** What results need of documents: files stored before the transaction, filed on a chart in it. */
export type ResultFiles = Pick<
  DocumentService,
  'storeFile' | 'storeAttachment' | 'fileForResult' | 'dropBlob'
>;

/** The first bytes of a DICOM file read for its header (pixel data comes after it). */
const DICOM_HEADER_BYTES = 1024 * 1024;

/** A DICOM file as a device result: one image (SOP instance) is one result of kind imaging. */
function dicomInput(header: DicomHeader): ResultInput {
  if (header.sopInstanceUid === null)
    throw new AppError('invalid', 'The DICOM file has no SOP Instance UID (0008,0018).');
  const id = header.patientId?.trim() ?? '';
  const chip = id.replace(/[\s-]/g, '');
  const identifier =
    id === ''
      ? undefined
      : /^\d{15}$/.test(chip)
        ? { system: 'microchip', value: chip }
        : { system: 'external', value: id.slice(0, 64) };
  const { family, given } = header.patientName;
  const name = given ?? family;
  const ownerSurname = header.ownerFamilyName ?? (given !== null ? family : null);
  const observations: ResultObservation[] = (
    [
      ['Modality', 'Modality', header.modality],
      ['StudyDate', 'Study date', header.studyDate],
      ['StudyDescription', 'Study', header.studyDescription],
      ['SeriesDescription', 'Series', header.seriesDescription],
      ['BodyPartExamined', 'Body part', header.bodyPart],
    ] as const
  ).flatMap(([code, display, value]) =>
    value === null ? [] : [{ code, display, value: value.slice(0, 500) }],
  );
  if (observations.length === 0)
    observations.push({ code: 'SOPInstanceUID', value: header.sopInstanceUid });
  return {
    patient: {
      ...(identifier ? { identifier } : {}),
      ...(name !== null ? { name } : {}),
      ...(header.species !== null ? { species: header.species } : {}),
      ...(ownerSurname !== null ? { ownerSurname } : {}),
      ...(header.birthDate !== null ? { birthDate: header.birthDate } : {}),
    },
    source: 'DICOM',
    kind: 'imaging',
    resultId: header.sopInstanceUid,
    observations,
  };
}
type StoredFile = Awaited<ReturnType<ResultFiles['storeAttachment']>>;
interface KeptFile {
  filename: string;
  stored: StoredFile;
}

export interface IngestAnswer {
  id: string;
  status: 'matched' | 'unmatched' | 'discarded';
  version: number;
  /** The same result was sent before with the same content: nothing new was stored. */
  duplicate: boolean;
}

export interface UnmatchedResult {
  id: string;
  source: string;
  kind: string;
  receivedAt: string;
  identifiers: { system: string; value: string }[];
  /** Name, species, owner surname, birth date as the source sent them. */
  patient: Demographics;
  observations: ResultObservation[];
  abnormal: boolean;
  version: number;
}

/** What a result note shows besides its text: the structured observations. */
export interface NoteResult {
  id: string;
  source: string;
  kind: string;
  version: number;
  abnormal: boolean;
  observations: ResultObservation[];
  /** The documents its files became on the chart. */
  documentIds: string[];
}

export function signatureOf(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The identifier a result names, validated and normalized (undefined when it names none). */
function identifierOf(input: ResultInput): { system: string; value: string } | undefined {
  const given = input.patient.identifier;
  if (!given) return undefined;
  if (!isIdentifierSystem(given.system))
    throw new AppError(
      'invalid',
      `patient.identifier.system "${given.system.slice(0, 40)}" is not known.`,
    );
  return { system: given.system, value: normalizeIdentifier(given.system, given.value) };
}

/** The demographics a source sent, trimmed; null when it sent none. */
function demographicsOf(patient: Demographics): Demographics | null {
  const out: Demographics = {};
  for (const key of ['name', 'species', 'ownerSurname', 'birthDate'] as const) {
    const value = patient[key]?.trim();
    if (value) out[key] = value.slice(0, 200);
  }
  if (out.birthDate !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(out.birthDate))
    throw new AppError('invalid', 'patient.birthDate must be a date (YYYY-MM-DD).');
  return Object.keys(out).length > 0 ? out : null;
}

/** The fallback match needs all four, and a species we know. */
function fallbackKeyOf(demographics: Demographics | null) {
  if (!demographics) return null;
  const { name, ownerSurname, birthDate } = demographics;
  const species = speciesOf(demographics.species);
  if (!name || !ownerSurname || !birthDate || !species) return null;
  return { nameKey: searchKey(name), species, birthDate, surnameKey: searchKey(ownerSurname) };
}

export interface PatientMatch {
  patientId: string | null;
  /** How it was matched; null when it waits in the queue. */
  by: 'identifier' | 'mapping' | 'demographics' | null;
  /** Patients that fit (more than one is a tie: never matched automatically). */
  candidates: number;
}

export function createResultService(
  deps: ServiceDeps,
  secretOf: (integrationKeyId: string) => Promise<string>,
  files: ResultFiles,
) {
  const { clock } = deps;

  /** Files of a result not on a chart yet become internal documents of its patient. */
  async function fileAttachments(
    tx: Tx,
    at: Date,
    result: ResultRow,
    patientId: string,
    authorId: string,
  ): Promise<void> {
    for (const a of await attachmentsWithoutDocument(tx, result.id)) {
      const documentId = await files.fileForResult(tx, at, {
        organizationId: result.organization_id,
        patientId,
        title: `${result.source}: ${a.filename}`.slice(0, 200),
        createdBy: authorId,
        filename: a.filename,
        stored: {
          blobKey: a.blob_key,
          tier: 'hot',
          size: a.size,
          sha256: a.sha256,
          chunkBytes: a.chunk_bytes,
          keyId: a.key_id,
          wrapped: a.wrapped_key,
          head: Buffer.alloc(0),
          contentType: a.content_type,
        },
      });
      await setAttachmentDocument(tx, a, documentId);
    }
  }

  /** The files of one version of a result, kept with it; on the chart at once when matched. */
  async function keepAttachments(
    tx: Tx,
    at: Date,
    result: ResultRow,
    version: number,
    kept: KeptFile[],
    patientId: string | null,
    authorId: string,
  ): Promise<void> {
    if (kept.length === 0) return;
    for (const [position, { filename, stored }] of kept.entries()) {
      await insertAttachment(tx, {
        result_id: result.id,
        version,
        position,
        filename,
        content_type: stored.contentType,
        blob_key: stored.blobKey,
        size: stored.size,
        sha256: stored.sha256,
        chunk_bytes: stored.chunkBytes,
        key_id: stored.keyId,
        wrapped_key: stored.wrapped,
        document_id: null,
      });
      await replicateBlob(deps, tx, at, stored.blobKey, stored.replica);
    }
    if (patientId) await fileAttachments(tx, at, result, patientId, authorId);
  }

  async function noteFor(
    tx: Tx,
    result: ResultRow,
    patientId: string,
    authorId: string,
    observations: ResultObservation[],
    now: string,
  ): Promise<string> {
    const row: NoteRow = {
      id: uuidv7(),
      organization_id: result.organization_id,
      patient_id: patientId,
      kind: 'result',
      title: `${result.kind} result from ${result.source}`,
      body: renderResult(`Result from ${result.source}`, observations),
      visibility: 'internal',
      shared_with: '[]',
      status: 'final',
      version: 1,
      author_id: authorId,
      created_at: now,
      updated_at: now,
      finalized_at: now,
      finalized_by: authorId,
      release_at: null,
      released_by: null,
    };
    await insertNote(tx, row);
    await recordRevision(tx, row, 'created', authorId, now);
    return row.id;
  }

  /**
   * Which patient a result is about: by identifier in the key's organization (the source's own
   * id through what staff assigned before), else by name + species + owner surname + birth date
   * when configured. Only exactly one candidate matches; a tie waits for staff.
   */
  async function matchPatient(
    tx: Tx,
    actor: { organizationId: string | null; integrationKeyId?: string },
    identifier: { system: string; value: string } | undefined,
    demographics: Demographics | null,
  ): Promise<PatientMatch> {
    const organizationId = actor.organizationId ?? '';
    if (identifier) {
      if (identifier.system === 'external') {
        const mapped = await mappedPatient(tx, actor.integrationKeyId ?? '', identifier.value);
        if (mapped) return { patientId: mapped, by: 'mapping', candidates: 1 };
      }
      const found = await patientsWithIdentifier(
        tx,
        organizationId,
        identifier.system,
        identifier.value,
      );
      if (found.length === 1)
        return { patientId: found[0] ?? null, by: 'identifier', candidates: 1 };
      // Two patients with one identifier is a data problem for staff, not a guess for us.
      if (found.length > 1) return { patientId: null, by: null, candidates: found.length };
    }
    const key = deps.settings.resultFallbackMatch ? fallbackKeyOf(demographics) : null;
    if (!key) return { patientId: null, by: null, candidates: 0 };
    const found = await patientsByDemographics(tx, organizationId, key);
    return found.length === 1
      ? { patientId: found[0] ?? null, by: 'demographics', candidates: 1 }
      : { patientId: null, by: null, candidates: found.length };
  }

  /** A correction reaches the chart as an addendum: a final note is never rewritten. */
  async function amendNote(
    tx: Tx,
    noteId: string,
    authorId: string,
    observations: ResultObservation[],
    version: number,
    now: string,
  ): Promise<void> {
    const note = await findNote(tx, noteId, { forUpdate: true });
    if (!note) return;
    const addendumId = uuidv7();
    await insertAddendum(tx, {
      id: addendumId,
      note_id: noteId,
      body: renderResult('', observations, version),
      author_id: authorId,
      created_at: now,
      // A corrected result reaches the owner only once staff release it, like any addendum.
      release_at: null,
      released_by: null,
    });
    if (!(await updateNoteIfVersion(tx, noteId, note.version, { updated_at: now })))
      throw new AppError('conflict', 'The result note changed meanwhile; send the result again.');
    await recordRevision(
      tx,
      { ...note, version: note.version + 1 },
      'addendum',
      authorId,
      now,
      addendumId,
    );
  }

  /** Subscribers hear ids only; what the result says they read through the API. */
  async function announce(
    tx: Tx,
    at: Date,
    result: ResultRow,
    patientId: string,
    noteId: string,
    version: number,
  ): Promise<void> {
    await emitEvent(tx, at, {
      type: 'result.received',
      organizationId: result.organization_id,
      patientId,
      data: { resultId: result.id, noteId, version },
    });
  }

  /**
   * A signed body must match its signature (HMAC-SHA256 with the key's secret), else 401. Run
   * before anything else, replays included, and outside any transaction.
   */
  async function checkSignature(
    ctx: RequestContext,
    body: string,
    signature: string | undefined,
  ): Promise<void> {
    if (signature === undefined) return;
    const actor = requireIntegration(ctx);
    const secret = await secretOf(actor.integrationKeyId ?? '');
    if (!sameText(signature.trim().toLowerCase(), signatureOf(secret, body)))
      throw new AppError('unauthenticated', 'X-Caretrail-Signature does not match the body.');
  }

  /**
   * Stores a result sent by a device or lab system (an integration key; its signature checked
   * first by `checkSignature`). A result id the key sent before is the same result: content equal
   * to any stored version is a duplicate, other content a new version (a correction) — for the
   * same patient identifier only.
   */
  async function ingest(
    ctx: RequestContext,
    input: ResultInput,
    raw: { body: string; contentType: string },
    /** Files stored already (streamed in); removed again like the others on a duplicate. */
    prestored: KeptFile[] = [],
  ): Promise<IngestAnswer> {
    const identifier = identifierOf(input);
    const demographics = demographicsOf(input.patient);
    if (!identifier && !demographics)
      throw new AppError(
        'invalid',
        'Name the patient: patient.identifier, or name, species, ownerSurname and birthDate.',
      );
    if (input.observations.length === 0)
      throw new AppError('invalid', 'A result needs at least one observation.');
    const abnormal = input.observations.some((o) => isAbnormalFlag(o.flag));
    // Files are stored (encrypted, fsync'd) before the transaction; a duplicate or a failure
    // removes them again.
    const kept: KeptFile[] = [...prestored];
    const dropKept = async () => {
      for (const { stored } of kept) await files.dropBlob(stored).catch(() => undefined);
    };
    try {
      for (const a of input.attachments ?? [])
        kept.push({
          filename: safeFilename(a.filename),
          stored: await files.storeAttachment(a.data),
        });
      const answer = await receive(ctx, input, raw, { identifier, demographics, abnormal, kept });
      if (answer.duplicate) await dropKept();
      return answer;
    } catch (err) {
      await dropKept();
      throw err;
    }
  }

  async function receive(
    ctx: RequestContext,
    input: ResultInput,
    raw: { body: string; contentType: string },
    checked: {
      identifier: { system: string; value: string } | undefined;
      demographics: Demographics | null;
      abnormal: boolean;
      kept: KeptFile[];
    },
  ): Promise<IngestAnswer> {
    const { identifier, demographics, abnormal, kept } = checked;
    return audited(deps, ctx, { action: 'C', type: 'result.receive' }, async (tx, record) => {
      const actor = requireIntegration(ctx);
      const at = clock.now();
      const now = at.toISOString();
      const observations = JSON.stringify(input.observations);
      const existing =
        input.resultId === undefined
          ? undefined
          : await findBySourceId(tx, actor.integrationKeyId ?? '', input.source, input.resultId);
      if (existing) {
        record.patientId = existing.patient_id;
        // A correction is about the same patient; another identifier is a mistake to refuse,
        // not a reason to change someone else's chart.
        const before: unknown = JSON.parse(existing.identifiers);
        const samePatient = identifier
          ? canonicalJson(before) === canonicalJson([identifier])
          : canonicalJson(before) === '[]' &&
            canonicalJson(JSON.parse(existing.demographics ?? 'null')) ===
              canonicalJson(demographics);
        if (!samePatient)
          throw new AppError(
            'conflict',
            'This resultId was sent for another patient; send a new resultId.',
          );
        const content = canonicalJson(input.observations);
        const same = (await observationsOfVersions(tx, existing.id)).find(
          (v) => canonicalJson(JSON.parse(v.observations)) === content,
        );
        if (same) {
          record.entity = { type: 'Result', id: existing.id, version: same.version };
          record.detail = { duplicate: true };
          return {
            id: existing.id,
            status: existing.status as IngestAnswer['status'],
            version: same.version,
            duplicate: true,
          };
        }
        const version = existing.current_version + 1;
        await insertResultVersion(tx, {
          result_id: existing.id,
          version,
          observations,
          abnormal: abnormal ? 1 : 0,
          original: raw.body,
          original_type: raw.contentType,
          received_at: now,
        });
        // A correction of a discarded result goes back to the queue: someone must look again.
        const reopened = existing.status === 'discarded';
        await updateResult(tx, existing.id, {
          current_version: version,
          updated_at: now,
          ...(reopened
            ? { status: 'unmatched', discard_reason: null, resolved_by: null, resolved_at: null }
            : {}),
        });
        const onChart = existing.status === 'matched' ? existing.patient_id : null;
        await keepAttachments(tx, at, existing, version, kept, onChart, actor.userId);
        if (existing.status === 'matched' && existing.note_id && existing.patient_id) {
          await amendNote(tx, existing.note_id, actor.userId, input.observations, version, now);
          await announce(tx, at, existing, existing.patient_id, existing.note_id, version);
        }
        record.entity = { type: 'Result', id: existing.id, version };
        const status = reopened ? 'unmatched' : (existing.status as IngestAnswer['status']);
        record.detail = { correction: true, status };
        return { id: existing.id, status, version, duplicate: false };
      }

      const match = await matchPatient(tx, actor, identifier, demographics);
      const patientId = match.patientId;
      const result: ResultRow = {
        id: uuidv7(at.getTime()),
        organization_id: actor.organizationId,
        integration_key_id: actor.integrationKeyId ?? '',
        source: input.source,
        source_result_id: input.resultId ?? null,
        kind: input.kind,
        status: patientId ? 'matched' : 'unmatched',
        patient_id: patientId,
        note_id: null,
        identifiers: JSON.stringify(identifier ? [identifier] : []),
        demographics: demographics ? JSON.stringify(demographics) : null,
        current_version: 1,
        received_at: now,
        updated_at: now,
        resolved_by: null,
        resolved_at: null,
        discard_reason: null,
      };
      try {
        await insertResult(tx, result);
      } catch (err) {
        // The same result id arriving twice at once: the retry finds the first one.
        if (isUniqueViolation(err))
          throw new AppError(
            'conflict',
            'This result is being stored by another request; send it again.',
          );
        throw err;
      }
      await insertResultVersion(tx, {
        result_id: result.id,
        version: 1,
        observations,
        abnormal: abnormal ? 1 : 0,
        original: raw.body,
        original_type: raw.contentType,
        received_at: now,
      });
      await keepAttachments(tx, at, result, 1, kept, patientId, actor.userId);
      if (patientId) {
        const noteId = await noteFor(tx, result, patientId, actor.userId, input.observations, now);
        await updateResult(tx, result.id, { note_id: noteId });
        await announce(tx, at, result, patientId, noteId, 1);
      }
      record.patientId = patientId;
      record.entity = { type: 'Result', id: result.id, version: 1 };
      record.detail = { status: result.status, matchedBy: match.by, candidates: match.candidates };
      return {
        id: result.id,
        status: result.status as IngestAnswer['status'],
        version: 1,
        duplicate: false,
      };
    }).finally(() => deps.onOutbox?.());
  }

  /** Streams one DICOM file into the blob store, keeping its first bytes to read the header. */
  async function storeDicom(
    file: IncomingFile,
  ): Promise<{ header: DicomHeader; input: ResultInput; kept: KeptFile }> {
    const prefix: Buffer[] = [];
    let length = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (length < DICOM_HEADER_BYTES) {
          const part = chunk.subarray(0, DICOM_HEADER_BYTES - length);
          prefix.push(Buffer.from(part));
          length += part.length;
        }
        done(null, chunk);
      },
    });
    file.stream.once('error', (err) => tap.destroy(err));
    const stored = await files.storeFile({ ...file, stream: file.stream.pipe(tap) });
    try {
      const header = readDicomHeader(Buffer.concat(prefix, length));
      const filename = safeFilename(file.filename ?? `${header.sopInstanceUid ?? 'image'}.dcm`);
      return { header, input: dicomInput(header), kept: { filename, stored } };
    } catch (err) {
      await files.dropBlob(stored).catch(() => undefined);
      throw err;
    }
  }

  /**
   * DICOM Part-10 files from an imaging device: each image a result of kind imaging (matched
   * like any result; re-sent images are duplicates by SOP Instance UID), the file itself a
   * document on the chart with its previews. Every file is read before any is stored as a
   * result: a request with a file that is not DICOM stores nothing.
   */
  async function ingestDicom(
    ctx: RequestContext,
    receive: (onFile: (file: IncomingFile) => Promise<void>) => Promise<void>,
  ): Promise<(IngestAnswer & { sopInstanceUid: string })[]> {
    requireIntegration(ctx);
    const got: { header: DicomHeader; input: ResultInput; kept: KeptFile }[] = [];
    const dropFrom = async (index: number) => {
      for (const { kept } of got.slice(index))
        await files.dropBlob(kept.stored).catch(() => undefined);
    };
    try {
      await receive(async (file) => {
        got.push(await storeDicom(file));
      });
    } catch (err) {
      await dropFrom(0);
      throw err;
    }
    if (got.length === 0) throw new AppError('invalid', 'The request has no DICOM file.');
    const answers: (IngestAnswer & { sopInstanceUid: string })[] = [];
    for (const [index, { header, input, kept }] of got.entries()) {
      const summary = {
        sopInstanceUid: header.sopInstanceUid,
        studyInstanceUid: header.studyInstanceUid,
        modality: header.modality,
        stationName: header.stationName,
        filename: kept.filename,
        size: kept.stored.size,
        sha256: kept.stored.sha256,
      };
      try {
        const answer = await ingest(
          ctx,
          input,
          { body: JSON.stringify(summary), contentType: 'application/dicom+json' },
          [kept],
        );
        answers.push({ ...answer, sopInstanceUid: input.resultId ?? '' });
      } catch (err) {
        await dropFrom(index + 1);
        throw err;
      }
    }
    return answers;
  }

  /**
   * The message or body a result version arrived as, exactly as received (the original kept
   * with the result note): for staff who may read the patient's notes, or reconcile the queue
   * while the result has no patient.
   */
  async function original(
    ctx: RequestContext,
    id: string,
    version: number | undefined,
  ): Promise<{ body: string; contentType: string; version: number }> {
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'result.original.read', entity: { type: 'Result', id, version: null } },
      async (tx, record) => {
        const actor = requireStaff(ctx);
        const result = await findResult(tx, actor.organizationId, id);
        if (!result) throw notFound('Result');
        if (result.status === 'matched' && result.patient_id)
          await accessPatient(tx, ctx, result.patient_id, 'notes.read', record, clock.now());
        else requirePermission(ctx, 'results.reconcile');
        const wanted = version ?? result.current_version;
        const row = await versionOf(tx, id, wanted);
        if (!row) throw notFound('Result version');
        record.entity = { type: 'Result', id, version: wanted };
        return { body: row.original, contentType: row.original_type, version: wanted };
      },
    );
  }

  async function listUnmatched(
    ctx: RequestContext,
    page: { limit: number; cursor?: string },
  ): Promise<Page<UnmatchedResult>> {
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'result.unmatched.list', permission: 'results.reconcile' },
      async (tx, record) => {
        const actor = requirePermission(ctx, 'results.reconcile');
        const rows = await unmatchedResults(tx, actor.organizationId, {
          afterId: idAfter(page.cursor),
          limit: page.limit + 1,
        });
        const result = toPage(
          rows,
          page.limit,
          (r) => [r.id],
          (r) => ({
            id: r.id,
            source: r.source,
            kind: r.kind,
            receivedAt: r.received_at,
            identifiers: JSON.parse(r.identifiers) as { system: string; value: string }[],
            patient: JSON.parse(r.demographics ?? '{}') as Demographics,
            observations: JSON.parse(r.observations) as ResultObservation[],
            abnormal: r.abnormal === 1,
            version: r.current_version,
          }),
        );
        record.detail = { count: result.items.length };
        return result;
      },
    );
  }

  /** Staff decide which patient an unmatched result belongs to; it then reaches the chart. */
  async function assign(ctx: RequestContext, id: string, patientId: string): Promise<IngestAnswer> {
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'result.assign',
        permission: 'results.reconcile',
        entity: { type: 'Result', id, version: null },
      },
      async (tx, record) => {
        const actor = requirePermission(ctx, 'results.reconcile');
        const result = await findResult(tx, actor.organizationId, id, { forUpdate: true });
        if (!result || result.status !== 'unmatched') throw notFound('Unmatched result');
        const at = clock.now();
        const now = at.toISOString();
        // The patient must be one this person may write notes for, in the result's organization.
        const { patient } = await accessPatient(tx, ctx, patientId, 'notes.write', record, at);
        if (patient.organization_id !== result.organization_id) throw notFound('Patient');
        const current = await versionOf(tx, result.id, result.current_version);
        const observations = JSON.parse(current?.observations ?? '[]') as ResultObservation[];
        const author = await tx
          .selectFrom('integration_keys')
          .select('user_id')
          .where('id', '=', result.integration_key_id)
          .executeTakeFirstOrThrow();
        const noteId = await noteFor(tx, result, patientId, author.user_id, observations, now);
        await fileAttachments(tx, at, result, patientId, author.user_id);
        await updateResult(tx, id, {
          status: 'matched',
          patient_id: patientId,
          note_id: noteId,
          resolved_by: actor.userId,
          resolved_at: now,
          updated_at: now,
        });
        await announce(tx, at, result, patientId, noteId, result.current_version);
        // The source's own patient id now names this patient: its next results match by it.
        const sourceIds = (
          JSON.parse(result.identifiers) as { system: string; value: string }[]
        ).filter((i) => i.system === 'external');
        for (const { value } of sourceIds)
          await mapPatient(tx, {
            integration_key_id: result.integration_key_id,
            value,
            organization_id: result.organization_id,
            patient_id: patientId,
            created_by: actor.userId,
            created_at: now,
          });
        record.entity = { type: 'Result', id, version: result.current_version };
        record.detail = { mapped: sourceIds.length > 0 };
        return {
          id,
          status: 'matched' as const,
          version: result.current_version,
          duplicate: false,
        };
      },
    ).finally(() => deps.onOutbox?.());
  }

  /** A result nobody can place (a test strip, another clinic's animal) leaves the queue, kept. */
  async function discard(ctx: RequestContext, id: string, reason: string): Promise<IngestAnswer> {
    const why = reason.trim();
    if (why.length < 3) throw new AppError('invalid', 'Say why the result is discarded.');
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'result.discard',
        permission: 'results.reconcile',
        entity: { type: 'Result', id, version: null },
        purpose: why,
      },
      async (tx) => {
        const actor = requirePermission(ctx, 'results.reconcile');
        const result = await findResult(tx, actor.organizationId, id, { forUpdate: true });
        if (!result || result.status !== 'unmatched') throw notFound('Unmatched result');
        const now = clock.now().toISOString();
        await updateResult(tx, id, {
          status: 'discarded',
          discard_reason: why,
          resolved_by: actor.userId,
          resolved_at: now,
          updated_at: now,
        });
        return {
          id,
          status: 'discarded' as const,
          version: result.current_version,
          duplicate: false,
        };
      },
    );
  }

  return { checkSignature, ingest, ingestDicom, original, listUnmatched, assign, discard };
}

export type ResultService = ReturnType<typeof createResultService>;
