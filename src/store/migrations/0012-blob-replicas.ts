// Blob replication (issue 17): one row per blob the replica store must hold or must lose, with
// where its copy stands. Rows are written in the unit of work that stores the blob's row (or by
// the start-up backfill for blobs stored before replication was on), so no copy is forgotten.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('blob_replicas')
    .addColumn('blob_key', 'text', (c) => c.primaryKey())
    // pending → replicated; failed (the file store's copy is missing or damaged); purging →
    // removed after a retention purge.
    .addColumn('state', 'text', (c) => c.notNull())
    // When the blob was stored (the oldest pending one gives the lag).
    .addColumn('stored_at', 'text', (c) => c.notNull())
    // The outbox item doing the work now; null while the backlog waits to be queued.
    .addColumn('job_id', 'text')
    .addColumn('replicated_at', 'text')
    // What was written to the replica: encrypted bytes and their SHA-256 (not the plaintext's).
    .addColumn('bytes', 'bigint')
    .addColumn('sha256', 'text')
    .addColumn('last_error', 'text')
    .addColumn('last_error_at', 'text')
    .addColumn('removed_at', 'text')
    .execute();
  await db.schema
    .createIndex('blob_replicas_state')
    .on('blob_replicas')
    .columns(['state', 'stored_at'])
    .execute();
  await db.schema
    .createIndex('blob_replicas_replicated')
    .on('blob_replicas')
    .column('replicated_at')
    .execute();
  // A replication job finds what a blob key belongs to (content, thumbnail or result file).
  await db.schema
    .createIndex('document_versions_thumb_blob')
    .on('document_versions')
    .column('thumb_blob_key')
    .execute();
  await db.schema
    .createIndex('result_attachments_blob')
    .on('result_attachments')
    .column('blob_key')
    .execute();
}
