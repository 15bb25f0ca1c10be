// Patient search words: one row per (patient, word) where a one-word search may match — the first
// word of the patient's name and every word of its owners' names — with the patient's name key
// beside it, so that the patients matching one word come out of one index range already in result
// order (name, id) and a cursor goes on inside it. Replaces owner_name_words (0010).
import { sql, type Kysely } from 'kysely';
import { searchWordsOf } from '../../domain/patient.js';
import { engineOf } from '../dialect.js';

export async function up(db: Kysely<unknown>): Promise<void> {
  // PostgreSQL: byte order ("C"), as SQLite's BINARY, so that a prefix is one range of the index
  // and both engines page in the same order.
  const bytes = engineOf(db) === 'postgres' ? sql`collate "C"` : sql``;
  await db.schema
    .createTable('patient_search_words')
    .addColumn('organization_id', 'text', (c) => c.notNull())
    .addColumn('word', 'text', (c) => c.modifyFront(bytes).notNull())
    .addColumn('name_sort', 'text', (c) => c.modifyFront(bytes).notNull())
    .addColumn('patient_id', 'text', (c) =>
      c.modifyFront(bytes).notNull().references('patients.id'),
    )
    .addPrimaryKeyConstraint('patient_search_words_pk', [
      'organization_id',
      'word',
      'name_sort',
      'patient_id',
    ])
    .execute();
  // A patient's words: to rewrite them, and to test a candidate of a phrase search for its last word.
  await db.schema
    .createIndex('patient_search_words_patient')
    .on('patient_search_words')
    .columns(['patient_id', 'word'])
    .execute();

  // The patients already on record, a page at a time, with their owners' names.
  const untyped = db as Kysely<{
    patients: { id: string; organization_id: string; name_search: string };
    patient_owners: { patient_id: string; owner_id: string };
    owners: { id: string; name_search: string };
    patient_search_words: {
      organization_id: string;
      word: string;
      name_sort: string;
      patient_id: string;
    };
  }>;
  let after = '';
  for (;;) {
    const patients = await untyped
      .selectFrom('patients')
      .select(['id', 'organization_id', 'name_search'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(500)
      .execute();
    const last = patients.at(-1);
    if (!last) break;
    const owners = await untyped
      .selectFrom('patient_owners')
      .innerJoin('owners', 'owners.id', 'patient_owners.owner_id')
      .select(['patient_owners.patient_id', 'owners.name_search'])
      .where(
        'patient_owners.patient_id',
        'in',
        patients.map((p) => p.id),
      )
      .execute();
    const ownerKeys = new Map<string, string[]>();
    for (const o of owners)
      ownerKeys.set(o.patient_id, [...(ownerKeys.get(o.patient_id) ?? []), o.name_search]);
    const rows = patients.flatMap((p) =>
      searchWordsOf(p.name_search, ownerKeys.get(p.id) ?? []).map((word) => ({
        organization_id: p.organization_id,
        word,
        name_sort: p.name_search,
        patient_id: p.id,
      })),
    );
    for (let i = 0; i < rows.length; i += 1000)
      await untyped
        .insertInto('patient_search_words')
        .values(rows.slice(i, i + 1000))
        .execute();
    after = last.id;
  }

  await db.schema.dropTable('owner_name_words').execute();
}
