// Idempotency claims name the server process holding them, so that a retry after a crash can take
// over a dead process's claim at once instead of waiting for its lease to run out.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('idempotency_keys').addColumn('holder', 'integer').execute();
}
