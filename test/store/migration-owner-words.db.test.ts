// Upgrading a database that already holds owners to the owner-name-words schema (0010): owners
// on record before the upgrade are found by a word prefix of their names, as new ones are.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { openDatabase } from '../../src/store/database.js';
import { migrationProvider } from '../../src/store/migrations/index.js';
import {
  insertOwner,
  replacePatientOwners,
  searchPatients,
} from '../../src/store/patient.store.js';
import type { DB } from '../../src/store/tables.js';
import { describeEachEngine } from '../helpers/engines.js';

function connect(url: string): Kysely<DB> {
  if (url.startsWith('sqlite:')) {
    const raw = new BetterSqlite3(url.slice('sqlite:'.length));
    raw.pragma('journal_mode = WAL');
    return new Kysely<DB>({ dialect: new SqliteDialect({ database: raw }) });
  }
  return new Kysely<DB>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
  });
}

const at = '2026-01-02T03:04:05.000Z';

function patient(id: string, name: string) {
  return {
    id,
    organization_id: 'org-1',
    name,
    name_search: name.toLowerCase(),
    species: 'canine',
    breed: null,
    sex: null,
    birth_date: null,
    version: 1,
    created_by: 'user-1',
    created_at: at,
    updated_at: at,
  };
}

describeEachEngine('migration to owner name words', ({ url }) => {
  test('owners on record before the upgrade are found by a word prefix of their names', async () => {
    const old = connect(url());
    const migrator = new Migrator({
      db: old,
      provider: migrationProvider,
      migrationTableName: 'schema_migrations',
      migrationLockTableName: 'schema_migrations_lock',
    });
    assert.equal((await migrator.migrateTo('0007-patient-alerts')).error, undefined);
    await old
      .insertInto('organizations')
      .values({ id: 'org-1', name: 'Old Clinic', created_at: at })
      .execute();
    await old
      .insertInto('users')
      .values({
        id: 'user-1',
        organization_id: 'org-1',
        email: 'vet@old.test',
        name: 'Old Vet',
        role: 'clinician',
        password_hash: 'hash',
        disabled: 0,
        totp_secret: null,
        totp_pending_secret: null,
        totp_enabled: 0,
        totp_last_step: null,
        version: 1,
        created_at: at,
        updated_at: at,
      })
      .execute();
    await old.insertInto('patients').values(patient('patient-1', 'Rex')).execute();
    const owner = {
      organization_id: 'org-1',
      email: null,
      phone: null,
      created_at: at,
      updated_at: at,
    };
    await old
      .insertInto('owners')
      .values({
        ...owner,
        id: 'owner-1',
        name: 'Marta Castellano',
        name_search: 'marta castellano',
      })
      .execute();
    await old
      .insertInto('patient_owners')
      .values({ patient_id: 'patient-1', owner_id: 'owner-1', position: 0 })
      .execute();
    await old.destroy();

    const db = await openDatabase(url());
    try {
      await db.migrate();
      // A second patient and owner registered after the upgrade.
      await db.write(async (tx) => {
        await tx.insertInto('patients').values(patient('patient-2', 'Castor')).execute();
        await insertOwner(tx, {
          ...owner,
          id: 'owner-2',
          name: 'Ana Castro Diaz',
          name_search: 'ana castro diaz',
        });
        await replacePatientOwners(tx, 'patient-2', ['owner-2']);
      });
      const found = async (text: string) =>
        (await searchPatients(db.read, { organizationId: 'org-1', text, limit: 10 })).map(
          (p) => p.id,
        );
      assert.deepEqual(await found('castel'), ['patient-1'], 'surname prefix, owner from before');
      assert.deepEqual(await found('marta'), ['patient-1'], 'first name, owner from before');
      assert.deepEqual(await found('diaz'), ['patient-2'], 'third word, owner from after');
      // "cast" starts Castor (a patient name) and both owners' surnames: ordered by name.
      assert.deepEqual(await found('cast'), ['patient-2', 'patient-1']);
      assert.deepEqual(await found('arta'), [], 'only word prefixes match');
      assert.deepEqual(await found('marta cas'), ['patient-1'], 'several words');
    } finally {
      await db.close();
    }
  });
});
