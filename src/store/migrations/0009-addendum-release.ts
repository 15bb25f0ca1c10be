// Addenda are released to the owner on their own, like notes: an addendum to an owner note
// stays internal until released (null) or until its release time has come.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Existing addenda start unreleased: none was ever released on purpose.
  await db.schema.alterTable('note_addenda').addColumn('release_at', 'text').execute();
  await db.schema.alterTable('note_addenda').addColumn('released_by', 'text').execute();
}
