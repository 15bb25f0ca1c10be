// Results, second step: what the source said about the animal besides identifiers (for the
// fallback match), the source's own patient ids mapped to patients per integration key (learned
// when staff assign a result), and files that came with a result (embedded PDFs, DICOM images)
// until they become documents on the patient's chart.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('results').addColumn('demographics', 'text').execute();

  await db.schema
    .createTable('integration_patient_ids')
    .addColumn('integration_key_id', 'text', (c) => c.notNull().references('integration_keys.id'))
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('patient_id', 'text', (c) => c.notNull().references('patients.id'))
    .addColumn('created_by', 'text', (c) => c.notNull().references('users.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('integration_patient_ids_pk', ['integration_key_id', 'value'])
    .execute();

  await db.schema
    .createTable('result_attachments')
    .addColumn('result_id', 'text', (c) => c.notNull().references('results.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('filename', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('blob_key', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('chunk_bytes', 'integer', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('wrapped_key', 'text', (c) => c.notNull())
    /** The document it became on the chart (null while the result waits unmatched). */
    .addColumn('document_id', 'text', (c) => c.references('documents.id'))
    .addPrimaryKeyConstraint('result_attachments_pk', ['result_id', 'version', 'position'])
    .execute();
}
