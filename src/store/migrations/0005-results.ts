// Results from devices: one row per result (matched to a patient, waiting unmatched, or
// discarded) and its versions (a correction is a new version of the same result).
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('results')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('integration_key_id', 'text', (c) => c.notNull().references('integration_keys.id'))
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('source_result_id', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('patient_id', 'text', (c) => c.references('patients.id'))
    .addColumn('note_id', 'text', (c) => c.references('notes.id'))
    .addColumn('identifiers', 'text', (c) => c.notNull())
    .addColumn('current_version', 'integer', (c) => c.notNull())
    .addColumn('received_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('resolved_by', 'text')
    .addColumn('resolved_at', 'text')
    .addColumn('discard_reason', 'text')
    .execute();
  // A sender's own result id names one result: a re-sent one is the same, a corrected one a
  // new version of it. Scoped to the key, so one device cannot rewrite another's results.
  // (Several NULLs are allowed on both engines.)
  await db.schema
    .createIndex('results_source_id')
    .on('results')
    .columns(['integration_key_id', 'source', 'source_result_id'])
    .unique()
    .execute();
  await db.schema
    .createIndex('results_queue')
    .on('results')
    .columns(['organization_id', 'status', 'id'])
    .execute();
  await db.schema.createIndex('results_note').on('results').column('note_id').execute();

  await db.schema
    .createTable('result_versions')
    .addColumn('result_id', 'text', (c) => c.notNull().references('results.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('observations', 'text', (c) => c.notNull())
    .addColumn('abnormal', 'integer', (c) => c.notNull())
    .addColumn('original', 'text', (c) => c.notNull())
    .addColumn('original_type', 'text', (c) => c.notNull())
    .addColumn('received_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('result_versions_pk', ['result_id', 'version'])
    .execute();
}
