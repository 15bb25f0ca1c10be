// Upgrading a database that already holds users, sessions and patients to the sharing schema
// (0004): on SQLite the users table is rebuilt, which must keep every row and every reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { openDatabase } from '../../src/store/database.js';
import { migrationProvider } from '../../src/store/migrations/index.js';
import type { DB } from '../../src/store/tables.js';
import { describeEachEngine } from '../helpers/engines.js';

function connect(url: string): Kysely<DB> {
  if (url.startsWith('sqlite:')) {
    const raw = new BetterSqlite3(url.slice('sqlite:'.length));
    raw.pragma('journal_mode = WAL');
    raw.pragma('foreign_keys = ON');
    return new Kysely<DB>({ dialect: new SqliteDialect({ database: raw }) });
  }
  return new Kysely<DB>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
  });
}

describeEachEngine('migration to the sharing schema', ({ url }) => {
  test('an existing database keeps its users, sessions and references, and gains the new columns', async () => {
    const old = connect(url());
    const migrator = new Migrator({
      db: old,
      provider: migrationProvider,
      migrationTableName: 'schema_migrations',
      migrationLockTableName: 'schema_migrations_lock',
    });
    const before = await migrator.migrateTo('0003-documents-outbox');
    assert.equal(before.error, undefined);
    const at = '2026-01-02T03:04:05.000Z';
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
        version: 3,
        created_at: at,
        updated_at: at,
      })
      .execute();
    await sql`insert into sessions (id, token_hash, user_id, created_at, expires_at, revoked_at, ip, user_agent)
      values ('session-1', 'token-hash', 'user-1', ${at}, '2099-01-01T00:00:00.000Z', null, null, null)`.execute(
      old,
    );
    await old
      .insertInto('patients')
      .values({
        id: 'patient-1',
        organization_id: 'org-1',
        name: 'Rex',
        name_search: 'rex',
        species: 'canine',
        breed: null,
        sex: null,
        birth_date: null,
        version: 1,
        created_by: 'user-1',
        created_at: at,
        updated_at: at,
      })
      .execute();
    await sql`insert into notes (id, organization_id, patient_id, kind, title, body, visibility, status, version, author_id, created_at, updated_at, finalized_at, finalized_by)
      values ('note-1', 'org-1', 'patient-1', 'soap', null, 'Body', 'owner', 'final', 2, 'user-1', ${at}, ${at}, ${at}, 'user-1')`.execute(
      old,
    );
    await old.destroy();

    const db = await openDatabase(url());
    try {
      // The sharing migration and every one after it, in order.
      const later = Object.keys(await migrationProvider.getMigrations()).filter(
        (name) => name > '0003-documents-outbox',
      );
      assert.equal(later[0], '0004-sharing-access');
      assert.deepEqual(await db.migrate(), later);
      const user = await db.read
        .selectFrom('users')
        .selectAll()
        .where('id', '=', 'user-1')
        .executeTakeFirstOrThrow();
      assert.deepEqual(
        { org: user.organization_id, email: user.email, role: user.role, version: user.version },
        { org: 'org-1', email: 'vet@old.test', role: 'clinician', version: 3 },
      );
      const session = await db.read.selectFrom('sessions').selectAll().executeTakeFirstOrThrow();
      assert.equal(session.last_seen_at, at, 'existing sessions count as seen when they started');
      const note = await db.read.selectFrom('notes').selectAll().executeTakeFirstOrThrow();
      assert.deepEqual(
        { sharedWith: note.shared_with, releaseAt: note.release_at, visibility: note.visibility },
        { sharedWith: '[]', releaseAt: null, visibility: 'owner' },
        'old owner notes are not released by the upgrade',
      );
      // References to users still hold: a session of a user that does not exist is refused.
      await assert.rejects(
        db.write((tx) =>
          sql`insert into sessions (id, token_hash, user_id, created_at, expires_at, last_seen_at)
            values ('session-2', 'other-hash', 'no-such-user', ${at}, ${at}, ${at})`.execute(tx),
        ),
      );
      // And a person outside any organization can now have an account.
      await db.write((tx) =>
        tx
          .insertInto('users')
          .values({
            id: 'user-2',
            organization_id: null,
            email: 'trainer@outside.test',
            name: 'Trainer',
            role: null,
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
          .execute(),
      );
      assert.equal((await db.read.selectFrom('users').select('id').execute()).length, 2);
    } finally {
      await db.close();
    }
  });
});
