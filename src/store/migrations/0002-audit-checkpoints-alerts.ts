// Signed audit checkpoints, unusual-access alerts, and an index for audit time-range search.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('chain_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_alerts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('rule', 'text', (c) => c.notNull())
    .addColumn('detail', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('audit_alerts_org')
    .on('audit_alerts')
    .columns(['organization_id', 'id'])
    .execute();
  await db.schema
    .createIndex('audit_alerts_user')
    .on('audit_alerts')
    .columns(['user_id', 'rule', 'created_at'])
    .execute();

  await db.schema
    .createIndex('audit_events_time')
    .on('audit_events')
    .columns(['occurred_at', 'seq'])
    .execute();
  await db.schema
    .createIndex('audit_events_org')
    .on('audit_events')
    .columns(['actor_org_id', 'seq'])
    .execute();
}

export async function down(): Promise<void> {
  throw new Error('Caretrail migrations are forward-only; restore a backup to go back.');
}
