// Documents and their versions (encrypted blobs), the transactional outbox, and notification
// subscriptions.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('documents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('patient_id', 'text', (c) => c.notNull().references('patients.id'))
    .addColumn('title', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('current_version', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('deleted_at', 'text')
    .addColumn('deleted_by', 'text')
    .addColumn('purged_at', 'text')
    .execute();
  await db.schema
    .createIndex('documents_patient')
    .on('documents')
    .columns(['organization_id', 'patient_id', 'id'])
    .execute();

  await db.schema
    .createTable('document_versions')
    .addColumn('document_id', 'text', (c) => c.notNull().references('documents.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('organization_id', 'text', (c) => c.notNull())
    .addColumn('blob_key', 'text', (c) => c.notNull().unique())
    .addColumn('filename', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('declared_type', 'text')
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('chunk_bytes', 'integer', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('wrapped_key', 'text', (c) => c.notNull())
    .addColumn('tier', 'text', (c) => c.notNull())
    .addColumn('last_read_at', 'text', (c) => c.notNull())
    .addColumn('archived_at', 'text')
    .addColumn('purged_at', 'text')
    .addColumn('preview_status', 'text', (c) => c.notNull())
    .addColumn('preview_reason', 'text')
    .addColumn('metadata', 'text')
    .addColumn('thumb_blob_key', 'text')
    .addColumn('thumb_key_id', 'text')
    .addColumn('thumb_wrapped_key', 'text')
    .addColumn('thumb_size', 'integer')
    .addColumn('thumb_sha256', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('document_versions_pk', ['document_id', 'version'])
    .execute();
  await db.schema
    .createIndex('document_versions_lifecycle')
    .on('document_versions')
    .columns(['tier', 'last_read_at'])
    .execute();

  await db.schema
    .createTable('outbox')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('topic', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull())
    .addColumn('available_at', 'text', (c) => c.notNull())
    .addColumn('locked_until', 'text')
    .addColumn('last_error', 'text')
    .addColumn('organization_id', 'text')
    .addColumn('subscription_id', 'text')
    .addColumn('event_id', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('done_at', 'text')
    .execute();
  await db.schema
    .createIndex('outbox_due')
    .on('outbox')
    .columns(['status', 'available_at'])
    .execute();
  await db.schema
    .createIndex('outbox_subscription')
    .on('outbox')
    .columns(['subscription_id', 'id'])
    .execute();

  await db.schema
    .createTable('subscriptions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('patient_id', 'text', (c) => c.references('patients.id'))
    .addColumn('events', 'text', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('secret_key_id', 'text')
    .addColumn('secret_wrapped', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('disabled_at', 'text')
    .execute();
  await db.schema
    .createIndex('subscriptions_org')
    .on('subscriptions')
    .columns(['organization_id', 'id'])
    .execute();
}

export async function down(): Promise<void> {
  throw new Error('Caretrail migrations are forward-only; restore a backup to go back.');
}
