// Owner name words: one row per word of an owner's search key, so that a patient search for a
// word prefix ("smi" finds Emma Smith's pets) is an index range instead of a scan of every owner.
// Also audit_event_patients by seq, for the unusual-access rule's window of recent events.
import { sql, type Kysely } from 'kysely';
import { nameWords } from '../../domain/patient.js';
import { engineOf } from '../dialect.js';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('owner_name_words')
    .addColumn('organization_id', 'text', (c) => c.notNull())
    .addColumn('word', 'text', (c) => c.notNull())
    .addColumn('owner_id', 'text', (c) => c.notNull().references('owners.id'))
    .addPrimaryKeyConstraint('owner_name_words_pk', ['organization_id', 'word', 'owner_id'])
    .execute();
  // As for names (0001): PostgreSQL needs text_pattern_ops for LIKE 'x%' under a non-C collation.
  if (engineOf(db) === 'postgres')
    await sql`create index owner_name_words_prefix on owner_name_words (organization_id, word text_pattern_ops)`.execute(
      db,
    );

  await db.schema
    .createIndex('audit_event_patients_seq')
    .on('audit_event_patients')
    .column('seq')
    .execute();

  // The owners already on record, a page at a time.
  const untyped = db as Kysely<{
    owners: { id: string; organization_id: string; name_search: string };
    owner_name_words: { organization_id: string; word: string; owner_id: string };
  }>;
  let after = '';
  for (;;) {
    const owners = await untyped
      .selectFrom('owners')
      .select(['id', 'organization_id', 'name_search'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(1000)
      .execute();
    const last = owners.at(-1);
    if (!last) break;
    const rows = owners.flatMap((o) =>
      nameWords(o.name_search).map((word) => ({
        organization_id: o.organization_id,
        word,
        owner_id: o.id,
      })),
    );
    if (rows.length > 0) await untyped.insertInto('owner_name_words').values(rows).execute();
    after = last.id;
  }
}
