// Patients, their identifiers and their owners.
import { sql, type ExpressionBuilder } from 'kysely';
import { searchWordsOf } from '../domain/patient.js';
import { escapeLike } from './dialect.js';
import type { DB, NewPatientRow, OwnerRow, PatientRow, Tx } from './tables.js';

export async function insertPatient(tx: Tx, row: NewPatientRow): Promise<void> {
  await tx.insertInto('patients').values(row).execute();
  await insertSearchWords(tx, row, searchWordsOf(row.name_search, []));
}

async function insertSearchWords(
  tx: Tx,
  patient: { id: string; organization_id: string; name_search: string },
  words: string[],
): Promise<void> {
  if (words.length === 0) return;
  await tx
    .insertInto('patient_search_words')
    .values(
      words.map((word) => ({
        organization_id: patient.organization_id,
        word,
        name_sort: patient.name_search,
        patient_id: patient.id,
      })),
    )
    .execute();
}

/** Rewrites a patient's search words from its name and owners as they now are. */
async function refreshSearchWords(tx: Tx, patientId: string): Promise<void> {
  const patient = await tx
    .selectFrom('patients')
    .select(['id', 'organization_id', 'name_search'])
    .where('id', '=', patientId)
    .executeTakeFirst();
  await tx.deleteFrom('patient_search_words').where('patient_id', '=', patientId).execute();
  if (!patient) return;
  const owners = await tx
    .selectFrom('patient_owners')
    .innerJoin('owners', 'owners.id', 'patient_owners.owner_id')
    .select('owners.name_search')
    .where('patient_owners.patient_id', '=', patientId)
    .execute();
  await insertSearchWords(
    tx,
    patient,
    searchWordsOf(
      patient.name_search,
      owners.map((o) => o.name_search),
    ),
  );
}

export async function findPatient(
  tx: Tx,
  organizationId: string,
  id: string,
): Promise<PatientRow | undefined> {
  return tx
    .selectFrom('patients')
    .selectAll()
    .where('id', '=', id)
    .where('organization_id', '=', organizationId)
    .executeTakeFirst();
}

/** Bumps the version only if it still is `expectedVersion`; false when someone else got there first. */
export async function updatePatientIfVersion(
  tx: Tx,
  id: string,
  expectedVersion: number,
  changes: Partial<
    Pick<PatientRow, 'name' | 'name_search' | 'species' | 'breed' | 'sex' | 'birth_date' | 'alerts'>
  > & { updated_at: string },
): Promise<boolean> {
  const result = await tx
    .updateTable('patients')
    .set({ ...changes, version: expectedVersion + 1 })
    .where('id', '=', id)
    .where('version', '=', expectedVersion)
    .executeTakeFirst();
  const updated = Number(result.numUpdatedRows) === 1;
  if (updated && changes.name_search !== undefined) await refreshSearchWords(tx, id);
  return updated;
}

export interface IdentifierRow {
  patient_id: string;
  system: string;
  value: string;
}

export async function replaceIdentifiers(
  tx: Tx,
  patient: { id: string; organization_id: string },
  identifiers: { system: string; value: string; id: string }[],
): Promise<void> {
  await tx.deleteFrom('patient_identifiers').where('patient_id', '=', patient.id).execute();
  if (identifiers.length === 0) return;
  await tx
    .insertInto('patient_identifiers')
    .values(
      identifiers.map((i) => ({
        id: i.id,
        organization_id: patient.organization_id,
        patient_id: patient.id,
        system: i.system,
        value: i.value,
      })),
    )
    .execute();
}

/** Which of these identifiers another patient of the organization already carries. */
export async function findIdentifierHolders(
  tx: Tx,
  organizationId: string,
  identifiers: { system: string; value: string }[],
  exceptPatientId: string | null,
): Promise<IdentifierRow[]> {
  if (identifiers.length === 0) return [];
  let q = tx
    .selectFrom('patient_identifiers')
    .select(['patient_id', 'system', 'value'])
    .where('organization_id', '=', organizationId)
    .where((eb) =>
      eb.or(
        identifiers.map((i) => eb.and([eb('system', '=', i.system), eb('value', '=', i.value)])),
      ),
    );
  if (exceptPatientId !== null) q = q.where('patient_id', '!=', exceptPatientId);
  return q.execute();
}

export async function identifiersOf(tx: Tx, patientIds: string[]): Promise<IdentifierRow[]> {
  if (patientIds.length === 0) return [];
  return tx
    .selectFrom('patient_identifiers')
    .select(['patient_id', 'system', 'value'])
    .where('patient_id', 'in', patientIds)
    .orderBy('system')
    .orderBy('value')
    .execute();
}

export async function ownersOf(
  tx: Tx,
  patientIds: string[],
): Promise<(OwnerRow & { patient_id: string })[]> {
  if (patientIds.length === 0) return [];
  return tx
    .selectFrom('patient_owners')
    .innerJoin('owners', 'owners.id', 'patient_owners.owner_id')
    .selectAll('owners')
    .select('patient_owners.patient_id')
    .where('patient_owners.patient_id', 'in', patientIds)
    .orderBy('patient_owners.position')
    .execute();
}

/** A new owner has no patients yet: its words are indexed when it is linked to one. */
export async function insertOwner(tx: Tx, row: OwnerRow): Promise<void> {
  await tx.insertInto('owners').values(row).execute();
}

export async function findOwners(
  tx: Tx,
  organizationId: string,
  ids: string[],
): Promise<OwnerRow[]> {
  if (ids.length === 0) return [];
  return tx
    .selectFrom('owners')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', 'in', ids)
    .execute();
}

export async function replacePatientOwners(
  tx: Tx,
  patientId: string,
  ownerIds: string[],
): Promise<void> {
  await tx.deleteFrom('patient_owners').where('patient_id', '=', patientId).execute();
  if (ownerIds.length > 0)
    await tx
      .insertInto('patient_owners')
      .values(ownerIds.map((owner_id, position) => ({ patient_id: patientId, owner_id, position })))
      .execute();
  await refreshSearchWords(tx, patientId);
}

export interface PatientSearch {
  organizationId: string;
  /**
   * Lower-cased search key. One word matches a prefix of the patient's name or of a word of an
   * owner's name; several words match a prefix of the patient's name or of an owner's name from
   * the start of one of its words ("marta cas" finds Marta Castellano's animals).
   */
  text?: string;
  /** Exact identifier values that also match (any system), from the same search box. */
  identifierValues?: string[];
  identifier?: { system: string; value: string };
  after?: { nameSearch: string; id: string };
  limit: number;
}

/**
 * Above this many distinct words starting with a one-word search (a one- or two-letter prefix),
 * the matching rows are sorted instead of merged a page per word.
 */
const MAX_MERGED_WORDS = 32;

/** Patients ordered by name, then id; keyset pagination on (name_search, id). */
export async function searchPatients(tx: Tx, search: PatientSearch): Promise<PatientRow[]> {
  const { text, identifier } = search;
  if (identifier !== undefined) return searchByIdentifier(tx, search, identifier);
  if (text !== undefined) return searchByText(tx, { ...search, text });
  let q = tx
    .selectFrom('patients')
    .selectAll()
    .where('organization_id', '=', search.organizationId);
  const { after } = search;
  if (after !== undefined) q = q.where(afterName(after));
  return q.orderBy('patients.name_search').orderBy('patients.id').limit(search.limit).execute();
}

function afterName(after: { nameSearch: string; id: string }) {
  return (eb: ExpressionBuilder<DB, 'patients'>) =>
    eb.or([
      eb('patients.name_search', '>', after.nameSearch),
      eb.and([eb('patients.name_search', '=', after.nameSearch), eb('patients.id', '>', after.id)]),
    ]);
}

/** UTF-8 byte order: SQLite's BINARY and PostgreSQL's "C", the order of patient_search_words. */
function byteOrder(x: { nameSort: string; id: string }, y: { nameSort: string; id: string }) {
  return (
    Buffer.compare(Buffer.from(x.nameSort, 'utf8'), Buffer.from(y.nameSort, 'utf8')) ||
    Buffer.compare(Buffer.from(x.id, 'utf8'), Buffer.from(y.id, 'utf8'))
  );
}

interface Hit {
  id: string;
  nameSort: string;
}

/**
 * Text search: the matching (name, id) keys from patient_search_words, each way of matching an
 * index range in result order, then the page's rows. As one query with an OR of the name prefix
 * and the owners' words, SQLite walked the name index testing every patient, and a prefix that
 * started an eighth of all owners' names sorted every one of them (~70 ms at 100,000 patients).
 */
async function searchByText(
  tx: Tx,
  search: PatientSearch & { text: string },
): Promise<PatientRow[]> {
  const { organizationId, text, after, limit } = search;
  const afterKey =
    after === undefined
      ? sql``
      : sql`and (name_sort, patient_id) > (${after.nameSearch}, ${after.id})`;
  const words = text.split(' ');
  const first = words[0] ?? '';
  let hits: Hit[];
  if (words.length > 1) hits = await byPhrase(tx, organizationId, text, first, afterKey, limit);
  else {
    const upper = `${text}\u{10FFFF}`;
    const starting = await wordsStarting(tx, organizationId, text, upper);
    hits =
      starting.length > MAX_MERGED_WORDS
        ? await sortedByWordRange(tx, organizationId, text, upper, afterKey, limit)
        : await mergedByWord(tx, organizationId, starting, afterKey, limit);
  }
  hits.push(...(await identifierHits(tx, search)));
  const page = [...new Map(hits.map((h) => [h.id, h])).values()].sort(byteOrder).slice(0, limit);
  if (page.length === 0) return [];
  // By id alone: with organization_id too, SQLite walked the organization's name index (5 ms).
  const rows = await tx
    .selectFrom('patients')
    .selectAll()
    .where(
      'id',
      'in',
      page.map((h) => h.id),
    )
    .execute();
  const byId = new Map(
    rows.filter((r) => r.organization_id === organizationId).map((r) => [r.id, r]),
  );
  return page.flatMap((h) => byId.get(h.id) ?? []);
}

/**
 * The distinct words of the organization in [text, upper), one index seek each (a loose index
 * scan), stopping after MAX_MERGED_WORDS + 1.
 */
async function wordsStarting(
  tx: Tx,
  organizationId: string,
  text: string,
  upper: string,
): Promise<string[]> {
  const { rows } = await sql<{ word: string }>`
    with recursive found(word, n) as (
      select (select word from patient_search_words
              where organization_id = ${organizationId} and word >= ${text} and word < ${upper}
              order by word limit 1), 1
      union all
      select (select word from patient_search_words
              where organization_id = ${organizationId} and word > found.word and word < ${upper}
              order by word limit 1), n + 1
      from found where found.word is not null and n <= ${MAX_MERGED_WORDS}
    )
    select word from found where word is not null`.execute(tx);
  return rows.map((r) => r.word);
}

/** A page per word, each one index range in (name, id) order; merged by the caller. */
async function mergedByWord(
  tx: Tx,
  organizationId: string,
  words: string[],
  afterKey: ReturnType<typeof sql>,
  limit: number,
): Promise<Hit[]> {
  if (words.length === 0) return [];
  const pages = words.map(
    (word, i) => sql`select * from (
      select patient_id, name_sort from patient_search_words
      where organization_id = ${organizationId} and word = ${word} ${afterKey}
      order by name_sort, patient_id limit ${limit}) as ${sql.raw(`page${String(i)}`)}`,
  );
  const { rows } = await sql<{ patient_id: string; name_sort: string }>`${sql.join(
    pages,
    sql` union all `,
  )}`.execute(tx);
  return rows.map((r) => ({ id: r.patient_id, nameSort: r.name_sort }));
}

/** A short prefix starting many words: the whole range, sorted. */
async function sortedByWordRange(
  tx: Tx,
  organizationId: string,
  text: string,
  upper: string,
  afterKey: ReturnType<typeof sql>,
  limit: number,
): Promise<Hit[]> {
  const { rows } = await sql<{ patient_id: string; name_sort: string }>`
    select patient_id, name_sort from patient_search_words
    where organization_id = ${organizationId} and word >= ${text} and word < ${upper} ${afterKey}
    group by name_sort, patient_id
    order by name_sort, patient_id limit ${limit}`.execute(tx);
  return rows.map((r) => ({ id: r.patient_id, nameSort: r.name_sort }));
}

/**
 * Several words: every match has its first word as a whole word (of the patient's name or of an
 * owner's), so the candidates are that word's range, in order, each checked for the phrase.
 */
async function byPhrase(
  tx: Tx,
  organizationId: string,
  text: string,
  first: string,
  afterKey: ReturnType<typeof sql>,
  limit: number,
): Promise<Hit[]> {
  const prefix = `${escapeLike(text)}%`;
  const wordPrefix = `% ${escapeLike(text)}%`;
  const lastWord = text.slice(text.lastIndexOf(' ') + 1);
  // An owner's phrase ends in a word starting with the last word: one index seek rules most
  // candidates out before their owners are read.
  const { rows } = await sql<{ patient_id: string; name_sort: string }>`
    select patient_id, name_sort from patient_search_words w
    where organization_id = ${organizationId} and word = ${first} ${afterKey}
      and (name_sort like ${prefix} escape '\\'
        or (exists (
              select 1 from patient_search_words last
              where last.patient_id = w.patient_id
                and last.word >= ${lastWord} and last.word < ${`${lastWord}\u{10FFFF}`})
            and exists (
              select 1 from patient_owners po join owners o on o.id = po.owner_id
              where po.patient_id = w.patient_id
                and (o.name_search like ${prefix} escape '\\'
                  or o.name_search like ${wordPrefix} escape '\\'))))
    order by name_sort, patient_id limit ${limit}`.execute(tx);
  return rows.map((r) => ({ id: r.patient_id, nameSort: r.name_sort }));
}

/** Patients holding one of the typed identifier values (any system), after the cursor. */
async function identifierHits(tx: Tx, search: PatientSearch): Promise<Hit[]> {
  const values = search.identifierValues ?? [];
  if (values.length === 0) return [];
  const rows = await tx
    .selectFrom('patient_identifiers')
    .innerJoin('patients', 'patients.id', 'patient_identifiers.patient_id')
    .select(['patients.id', 'patients.name_search'])
    .where('patient_identifiers.organization_id', '=', search.organizationId)
    .where('patient_identifiers.value', 'in', values)
    .execute();
  const { after } = search;
  return rows
    .map((r) => ({ id: r.id, nameSort: r.name_search }))
    .filter(
      (h) => after === undefined || byteOrder(h, { nameSort: after.nameSearch, id: after.id }) > 0,
    );
}

/**
 * An identifier (system and value): its holder from the unique index, then that row. As one
 * query with a subquery, SQLite walked the name index testing all 100,000 patients of a clinic.
 */
async function searchByIdentifier(
  tx: Tx,
  search: PatientSearch,
  identifier: { system: string; value: string },
): Promise<PatientRow[]> {
  const holders = await tx
    .selectFrom('patient_identifiers')
    .select('patient_id')
    .where('organization_id', '=', search.organizationId)
    .where('system', '=', identifier.system)
    .where('value', '=', identifier.value)
    .execute();
  if (holders.length === 0) return [];
  let rows = await tx
    .selectFrom('patients')
    .selectAll()
    .where('organization_id', '=', search.organizationId)
    .where(
      'id',
      'in',
      holders.map((h) => h.patient_id),
    )
    .execute();
  // With a text too (both filters given): the holders that the text also matches.
  if (search.text !== undefined) {
    const found = await textMatches(tx, { ...search, text: search.text }, rows);
    rows = rows.filter((r) => found.has(r.id));
  }
  const { after } = search;
  return rows
    .map((r) => ({ row: r, nameSort: r.name_search, id: r.id }))
    .filter(
      (h) => after === undefined || byteOrder(h, { nameSort: after.nameSearch, id: after.id }) > 0,
    )
    .sort(byteOrder)
    .slice(0, search.limit)
    .map((h) => h.row);
}

/** Which of these patients a text search matches (the same rules as searchByText). */
async function textMatches(
  tx: Tx,
  search: PatientSearch & { text: string },
  rows: PatientRow[],
): Promise<Set<string>> {
  const { organizationId, text } = search;
  const ids = rows.map((r) => r.id);
  const found = new Set(
    (await identifierHits(tx, { ...search, after: undefined }))
      .map((h) => h.id)
      .filter((id) => ids.includes(id)),
  );
  if (!text.includes(' ')) {
    const words = await tx
      .selectFrom('patient_search_words')
      .select('patient_id')
      .where('organization_id', '=', organizationId)
      .where('patient_id', 'in', ids)
      .where('word', '>=', text)
      .where('word', '<', `${text}\u{10FFFF}`)
      .execute();
    for (const w of words) found.add(w.patient_id);
    return found;
  }
  for (const row of rows) if (row.name_search.startsWith(text)) found.add(row.id);
  const owned = await tx
    .selectFrom('patient_owners')
    .innerJoin('owners', 'owners.id', 'patient_owners.owner_id')
    .select('patient_owners.patient_id')
    .where('patient_owners.patient_id', 'in', ids)
    .where((o) =>
      o.or([
        sql<boolean>`${o.ref('owners.name_search')} like ${`${escapeLike(text)}%`} escape '\\'`,
        sql<boolean>`${o.ref('owners.name_search')} like ${`% ${escapeLike(text)}%`} escape '\\'`,
      ]),
    )
    .execute();
  for (const o of owned) found.add(o.patient_id);
  return found;
}
