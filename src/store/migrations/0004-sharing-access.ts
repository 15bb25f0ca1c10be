// Care-team sharing and access control: people outside any organization (users without one),
// per-patient shares and their invitations, owner consents with their history, break-glass
// grants, integration keys, session activity, and who may see each note and document.
import { sql, type Kysely } from 'kysely';
import { engineOf } from '../dialect.js';

/**
 * users.organization_id and users.role become optional: an invited trainer or owner has an
 * account but belongs to no organization. SQLite cannot drop NOT NULL, so the table is rebuilt
 * (the documented 12-step procedure: foreign keys off, copy, swap, check, foreign keys on).
 */
async function relaxUsers(db: Kysely<unknown>): Promise<void> {
  if (engineOf(db) === 'postgres') {
    await sql`alter table users alter column organization_id drop not null`.execute(db);
    await sql`alter table users alter column role drop not null`.execute(db);
    return;
  }
  await sql`create table users_new (
    id text primary key,
    organization_id text references organizations (id),
    email text not null unique,
    name text not null,
    role text,
    password_hash text not null,
    disabled integer not null default 0,
    totp_secret text,
    totp_pending_secret text,
    totp_enabled integer not null default 0,
    totp_last_step bigint,
    version integer not null,
    created_at text not null,
    updated_at text not null
  )`.execute(db);
  await sql`insert into users_new select id, organization_id, email, name, role, password_hash,
    disabled, totp_secret, totp_pending_secret, totp_enabled, totp_last_step, version, created_at,
    updated_at from users`.execute(db);
  await sql`drop table users`.execute(db);
  await sql`alter table users_new rename to users`.execute(db);
  await sql`create index users_org on users (organization_id, email)`.execute(db);
}

async function createTables(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('last_seen_at', 'text').execute();
  await sql`update sessions set last_seen_at = created_at`.execute(db);

  await db.schema
    .alterTable('notes')
    .addColumn('shared_with', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();
  await db.schema.alterTable('notes').addColumn('release_at', 'text').execute();
  // Each revision keeps who could see it then, so a note's history shows people outside the
  // organization only the versions they could see.
  await db.schema
    .alterTable('note_revisions')
    .addColumn('shared_with', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();
  await db.schema.alterTable('notes').addColumn('released_by', 'text').execute();
  await db.schema
    .alterTable('documents')
    .addColumn('visibility', 'text', (c) => c.notNull().defaultTo('internal'))
    .execute();
  await db.schema
    .alterTable('documents')
    .addColumn('shared_with', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();

  // Lists of a patient's documents no longer start from the caller's organization.
  await db.schema
    .createIndex('documents_patient_id')
    .on('documents')
    .columns(['patient_id', 'id'])
    .execute();

  await db.schema
    .createTable('consents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('patient_id', 'text', (c) => c.notNull().references('patients.id'))
    .addColumn('grantee_email', 'text', (c) => c.notNull())
    .addColumn('purpose', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('method', 'text', (c) => c.notNull())
    .addColumn('consented_by_owner_id', 'text')
    .addColumn('consented_by_user_id', 'text')
    .addColumn('document_id', 'text')
    .addColumn('recorded_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('revoked_at', 'text')
    .addColumn('revoked_by', 'text')
    .addColumn('version', 'integer', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('consents_patient')
    .on('consents')
    .columns(['patient_id', 'grantee_email'])
    .execute();

  await db.schema
    .createTable('consent_versions')
    .addColumn('consent_id', 'text', (c) => c.notNull().references('consents.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('change', 'text', (c) => c.notNull())
    .addColumn('snapshot', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('consent_versions_pk', ['consent_id', 'version'])
    .execute();

  await db.schema
    .createTable('shares')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('patient_id', 'text', (c) => c.notNull().references('patients.id'))
    .addColumn('grantee_email', 'text', (c) => c.notNull())
    .addColumn('grantee_user_id', 'text', (c) => c.references('users.id'))
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('access', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('consent_id', 'text', (c) => c.references('consents.id'))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .addColumn('revoked_by', 'text')
    .execute();
  await db.schema
    .createIndex('shares_grantee')
    .on('shares')
    .columns(['grantee_user_id', 'patient_id'])
    .execute();
  await db.schema
    .createIndex('shares_patient')
    .on('shares')
    .columns(['patient_id', 'id'])
    .execute();
  await db.schema.createIndex('shares_email').on('shares').column('grantee_email').execute();
  await db.schema.createIndex('shares_consent').on('shares').column('consent_id').execute();

  await db.schema
    .createTable('invitations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('share_id', 'text', (c) => c.notNull().references('shares.id'))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .execute();

  await db.schema
    .createTable('break_glass_grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('patient_id', 'text', (c) => c.notNull().references('patients.id'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('break_glass_user')
    .on('break_glass_grants')
    .columns(['user_id', 'patient_id', 'expires_at'])
    .execute();

  await db.schema
    .createTable('integration_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('organization_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('secret_key_id', 'text', (c) => c.notNull())
    .addColumn('secret_wrapped', 'text', (c) => c.notNull())
    // The account that authors what the device sends (result notes): disabled, no password.
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('last_used_at', 'text')
    .addColumn('revoked_at', 'text')
    .execute();
  await db.schema
    .createIndex('integration_keys_org')
    .on('integration_keys')
    .columns(['organization_id', 'id'])
    .execute();
}

export async function up(db: Kysely<unknown>): Promise<void> {
  if (engineOf(db) === 'postgres') {
    // Kysely runs PostgreSQL migrations in a transaction already.
    await relaxUsers(db);
    await createTables(db);
    return;
  }
  // SQLite migrations run outside a transaction; foreign keys can only be switched off there.
  await sql`pragma foreign_keys = off`.execute(db);
  try {
    await sql`begin immediate`.execute(db);
    try {
      await relaxUsers(db);
      await createTables(db);
      const broken = await sql`pragma foreign_key_check`.execute(db);
      if (broken.rows.length > 0)
        throw new Error('foreign key check failed after rebuilding users');
      await sql`commit`.execute(db);
    } catch (err) {
      await sql`rollback`.execute(db);
      throw err;
    }
  } finally {
    await sql`pragma foreign_keys = on`.execute(db);
  }
}
