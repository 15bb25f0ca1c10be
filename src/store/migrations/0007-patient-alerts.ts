// Patient alerts: short warnings every reader of the chart must see first ("Bites — muzzle",
// "Allergic to penicillin"), kept as a JSON array of strings on the patient.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('patients')
    .addColumn('alerts', 'text', (c) => c.notNull().defaultTo(sql`'[]'`))
    .execute();
}
