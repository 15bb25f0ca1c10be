// Audit without a global lock (issue 18). On PostgreSQL a unit of work no longer locks the
// audit_head row: it inserts its events here, stamped with its transaction id (xid8), and one
// sealer per database moves them into audit_events in transaction-id order, assigning sequence
// numbers and chain hashes only below the horizon of transactions still in flight
// (src/audit-sealing/). Existing chains are untouched: sealing continues them.
// SQLite has a single writer and keeps appending at the head; the table exists there unused.
import { sql, type Kysely } from 'kysely';
import { engineOf } from '../dialect.js';

export async function up(db: Kysely<unknown>): Promise<void> {
  const postgres = engineOf(db) === 'postgres';
  await db.schema
    .createTable('audit_inbox')
    // Insertion order within a transaction (a sequence: no lock between transactions).
    .addColumn('n', postgres ? 'bigserial' : 'integer', (c) => c.primaryKey())
    // The inserting transaction's id: sealing waits until every transaction below it ended.
    .addColumn('xid', postgres ? sql`xid8` : 'integer', (c) =>
      postgres ? c.notNull().defaultTo(sql`pg_current_xact_id()`) : c,
    )
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('occurred_at', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('actor_user_id', 'text')
    .addColumn('actor_role', 'text')
    .addColumn('actor_org_id', 'text')
    .addColumn('actor_ip', 'text')
    .addColumn('actor_user_agent', 'text')
    .addColumn('patient_id', 'text')
    .addColumn('entity_type', 'text')
    .addColumn('entity_id', 'text')
    .addColumn('entity_version', 'integer')
    .addColumn('purpose', 'text')
    .addColumn('request_id', 'text')
    .addColumn('detail', 'text')
    .execute();
  await db.schema.createIndex('audit_inbox_xid').on('audit_inbox').columns(['xid', 'n']).execute();
}
