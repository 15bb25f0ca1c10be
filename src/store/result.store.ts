// Results from devices and their versions.
import { sql } from 'kysely';
import { engineOf, escapeLike } from './dialect.js';
import type {
  IntegrationPatientIdRow,
  ResultAttachmentRow,
  ResultRow,
  ResultVersionRow,
  Tx,
} from './tables.js';

export async function insertResult(tx: Tx, row: ResultRow): Promise<void> {
  await tx.insertInto('results').values(row).execute();
}

export async function insertResultVersion(tx: Tx, row: ResultVersionRow): Promise<void> {
  await tx.insertInto('result_versions').values(row).execute();
}

/**
 * The result this key already sent under this id, locked against a concurrent correction. On
 * PostgreSQL a transaction lock on the id itself comes first, so that two first copies arriving
 * at once are stored one after the other (the second finds the first) instead of one failing on
 * the unique index. SQLite writes one transaction at a time anyway.
 */
export async function findBySourceId(
  tx: Tx,
  integrationKeyId: string,
  source: string,
  sourceResultId: string,
): Promise<ResultRow | undefined> {
  if (engineOf(tx) === 'postgres') {
    const lockKey = JSON.stringify(['result', integrationKeyId, source, sourceResultId]);
    await sql`select pg_advisory_xact_lock(hashtextextended(${lockKey}, 0))`.execute(tx);
  }
  return tx
    .selectFrom('results')
    .selectAll()
    .where('integration_key_id', '=', integrationKeyId)
    .where('source', '=', source)
    .where('source_result_id', '=', sourceResultId)
    .$if(engineOf(tx) === 'postgres', (q) => q.forUpdate())
    .executeTakeFirst();
}

/** A result of the organization; locked (PostgreSQL) when it is about to change. */
export async function findResult(
  tx: Tx,
  organizationId: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<ResultRow | undefined> {
  return tx
    .selectFrom('results')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .$if(options.forUpdate === true && engineOf(tx) === 'postgres', (q) => q.forUpdate())
    .executeTakeFirst();
}

export async function updateResult(
  tx: Tx,
  id: string,
  changes: Partial<Omit<ResultRow, 'id' | 'organization_id'>>,
): Promise<void> {
  await tx.updateTable('results').set(changes).where('id', '=', id).execute();
}

/** Every version's observations, oldest first (a late re-send of an old one is no correction). */
/** The observations of every version of a result (not the originals: they may be large). */
export async function observationsOfVersions(
  tx: Tx,
  resultId: string,
): Promise<Pick<ResultVersionRow, 'version' | 'observations'>[]> {
  return tx
    .selectFrom('result_versions')
    .select(['version', 'observations'])
    .where('result_id', '=', resultId)
    .orderBy('version')
    .execute();
}

export async function versionOf(
  tx: Tx,
  resultId: string,
  version: number,
): Promise<ResultVersionRow | undefined> {
  return tx
    .selectFrom('result_versions')
    .selectAll()
    .where('result_id', '=', resultId)
    .where('version', '=', version)
    .executeTakeFirst();
}

/** Results waiting for a patient, oldest first. */
/** Results joined with their current version's observations. */
function withCurrentVersion(tx: Tx) {
  return tx
    .selectFrom('results')
    .innerJoin('result_versions', (j) =>
      j
        .onRef('result_versions.result_id', '=', 'results.id')
        .onRef('result_versions.version', '=', 'results.current_version'),
    )
    .selectAll('results')
    .select(['result_versions.observations', 'result_versions.abnormal']);
}

export type ResultWithObservations = ResultRow & { observations: string; abnormal: number };

export async function unmatchedResults(
  tx: Tx,
  organizationId: string,
  page: { afterId: string | null; limit: number },
): Promise<ResultWithObservations[]> {
  return withCurrentVersion(tx)
    .where('results.organization_id', '=', organizationId)
    .where('results.status', '=', 'unmatched')
    .$if(page.afterId !== null, (q) => q.where('results.id', '>', page.afterId ?? ''))
    .orderBy('results.id')
    .limit(page.limit)
    .execute();
}

/** The results behind these result notes, with their current observations. */
export async function resultsOfNotes(tx: Tx, noteIds: string[]): Promise<ResultWithObservations[]> {
  if (noteIds.length === 0) return [];
  return withCurrentVersion(tx).where('results.note_id', 'in', noteIds).execute();
}

/** Patients of the organization holding this identifier (normally one). */
export async function patientsWithIdentifier(
  tx: Tx,
  organizationId: string,
  system: string,
  value: string,
): Promise<string[]> {
  const rows = await tx
    .selectFrom('patient_identifiers')
    .select('patient_id')
    .where('organization_id', '=', organizationId)
    .where('system', '=', system)
    .where('value', '=', value)
    .execute();
  return [...new Set(rows.map((r) => r.patient_id))];
}

/** The patient a source's own patient id was assigned to before (learned per integration key). */
export async function mappedPatient(
  tx: Tx,
  integrationKeyId: string,
  value: string,
): Promise<string | undefined> {
  const row = await tx
    .selectFrom('integration_patient_ids')
    .select('patient_id')
    .where('integration_key_id', '=', integrationKeyId)
    .where('value', '=', value)
    .executeTakeFirst();
  return row?.patient_id;
}

/** Remembers (or moves, when staff decide again) which patient a source's own id names. */
export async function mapPatient(tx: Tx, row: IntegrationPatientIdRow): Promise<void> {
  await tx
    .insertInto('integration_patient_ids')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['integration_key_id', 'value']).doUpdateSet({
        patient_id: row.patient_id,
        created_by: row.created_by,
        created_at: row.created_at,
      }),
    )
    .execute();
}

/**
 * Patients of the organization with this name, species and birth date and an owner with this
 * surname (the last word of the owner's name, or the whole of it). At most two: two means a tie.
 */
export async function patientsByDemographics(
  tx: Tx,
  organizationId: string,
  who: { nameKey: string; species: string; birthDate: string; surnameKey: string },
): Promise<string[]> {
  const rows = await tx
    .selectFrom('patients as p')
    .select('p.id')
    .where('p.organization_id', '=', organizationId)
    .where('p.name_search', '=', who.nameKey)
    .where('p.species', '=', who.species)
    .where('p.birth_date', '=', who.birthDate)
    .where((eb) =>
      eb.exists(
        eb
          .selectFrom('patient_owners as po')
          .innerJoin('owners as o', 'o.id', 'po.owner_id')
          .select('o.id')
          .whereRef('po.patient_id', '=', 'p.id')
          .where((o) =>
            o.or([
              o('o.name_search', '=', who.surnameKey),
              sql<boolean>`${o.ref('o.name_search')} like ${`% ${escapeLike(who.surnameKey)}`} escape '\\'`,
            ]),
          ),
      ),
    )
    .limit(2)
    .execute();
  return rows.map((r) => r.id);
}

export async function insertAttachment(tx: Tx, row: ResultAttachmentRow): Promise<void> {
  await tx.insertInto('result_attachments').values(row).execute();
}

/** Files of a result that are not on a chart yet (it waited unmatched). */
export async function attachmentsWithoutDocument(
  tx: Tx,
  resultId: string,
): Promise<ResultAttachmentRow[]> {
  return tx
    .selectFrom('result_attachments')
    .selectAll()
    .where('result_id', '=', resultId)
    .where('document_id', 'is', null)
    .orderBy('version')
    .orderBy('position')
    .execute();
}

export async function setAttachmentDocument(
  tx: Tx,
  row: Pick<ResultAttachmentRow, 'result_id' | 'version' | 'position'>,
  documentId: string,
): Promise<void> {
  await tx
    .updateTable('result_attachments')
    .set({ document_id: documentId })
    .where('result_id', '=', row.result_id)
    .where('version', '=', row.version)
    .where('position', '=', row.position)
    .execute();
}

/** The documents that the files of these results became. */
export async function documentsOfResults(
  tx: Tx,
  resultIds: string[],
): Promise<{ result_id: string; document_id: string }[]> {
  if (resultIds.length === 0) return [];
  const rows = await tx
    .selectFrom('result_attachments')
    .select(['result_id', 'document_id'])
    .where('result_id', 'in', resultIds)
    .where('document_id', 'is not', null)
    .orderBy('version')
    .orderBy('position')
    .execute();
  return rows.flatMap((r) =>
    r.document_id === null ? [] : [{ result_id: r.result_id, document_id: r.document_id }],
  );
}
