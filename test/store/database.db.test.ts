// The store's promises: durable pragmas on SQLite, group commit that isolates failing units,
// idempotent migrations — on both engines where they apply.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import {
  compareVersions,
  MIN_SQLITE_VERSION,
  openDatabase,
  type Database,
} from '../../src/store/database.js';
import { describeEachEngine } from '../helpers/engines.js';

describeEachEngine('database', ({ url, engine }) => {
  let db: Database;
  before(async () => {
    db = await openDatabase(url());
    await db.migrate();
    await db.write((tx) =>
      tx
        .insertInto('organizations')
        .values({ id: 'org-db-test', name: 'Store Test', created_at: new Date().toISOString() })
        .execute(),
    );
  });
  after(async () => {
    await db.close();
  });

  test('migrations run once: a second run applies nothing', async () => {
    assert.deepEqual(await db.migrate(), []);
  });

  // SQLite only: PostgreSQL has no such pragmas and groups commits itself.
  if (engine === 'sqlite')
    test('every SQLite connection is WAL with foreign keys on; the reader synchronous=FULL, the group-commit writer NORMAL (it fsyncs the WAL itself)', async () => {
      const pragma = async (tx: Database['read'], name: string) => {
        const { rows } = await sql<Record<string, unknown>>`${sql.raw(`pragma ${name}`)}`.execute(
          tx,
        );
        return Object.values(rows[0] ?? {})[0];
      };
      for (const conn of ['reader', 'writer'] as const) {
        const check = async (tx: Database['read']) => ({
          journal: await pragma(tx, 'journal_mode'),
          synchronous: await pragma(tx, 'synchronous'),
          foreignKeys: await pragma(tx, 'foreign_keys'),
          busyTimeout: await pragma(tx, 'busy_timeout'),
        });
        const values = conn === 'reader' ? await check(db.read) : await db.write(check);
        // The writer's commits are made durable by its own fdatasync of the WAL before any
        // answer (test/faults/fsync-order.db.test.ts shows it under strace).
        assert.deepEqual(
          values,
          {
            journal: 'wal',
            synchronous: conn === 'reader' ? 2 : 1,
            foreignKeys: 1,
            busyTimeout: 5000,
          },
          conn,
        );
      }
    });

  if (engine === 'sqlite')
    test('exclusive() holds the writer: no unit commits until it is done', async () => {
      const order: string[] = [];
      let release = (): void => undefined;
      const held = db.exclusive(async () => {
        order.push('exclusive start');
        await new Promise<void>((r) => {
          release = r;
        });
        order.push('exclusive end');
      });
      await new Promise((r) => setTimeout(r, 20));
      const unit = db
        .write((tx) =>
          tx
            .insertInto('organizations')
            .values({ id: 'held-1', name: 'Held', created_at: new Date().toISOString() })
            .execute(),
        )
        .then(() => order.push('unit committed'));
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(order, ['exclusive start'], 'the unit waits');
      release();
      await Promise.all([held, unit]);
      assert.deepEqual(order, ['exclusive start', 'exclusive end', 'unit committed']);
    });

  if (engine === 'sqlite')
    test('concurrent units commit together: far fewer transactions than units (group commit)', async () => {
      const start = db.stats();
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          db.write((tx) =>
            tx
              .insertInto('organizations')
              .values({ id: `gc-${i}`, name: `GC ${i}`, created_at: new Date().toISOString() })
              .execute(),
          ),
        ),
      );
      const end = db.stats();
      assert.equal(end.units - start.units, 200);
      assert.ok(
        end.transactions - start.transactions <= 5,
        `${end.transactions - start.transactions} transactions for 200 units`,
      );
    });

  test(
    'a connection killed in the middle of a unit of work fails that unit with 503, and the process lives on',
    {
      skip: engine === 'postgres' ? false : 'PostgreSQL connections only',
    },
    async () => {
      const killed = db.write(async (tx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx);
        const admin = new pg.Client(url());
        await admin.connect();
        await admin.query('select pg_terminate_backend($1)', [rows[0]?.pid]);
        await admin.end();
        // The server's FATAL reaches the client while it is checked out and between statements:
        // before the fix, that 'error' event had no listener and ended the whole process.
        await new Promise((r) => setTimeout(r, 300));
        await sql`select 1`.execute(tx);
      });
      await assert.rejects(
        killed,
        (err: unknown) => (err as { code?: string }).code === 'unavailable',
      );
      const again = await db.write(
        async (tx) => (await sql<{ one: number }>`select 1 as one`.execute(tx)).rows[0]?.one,
      );
      assert.equal(again, 1, 'the pool replaced the dead connection');
    },
  );

  test('a failing unit rolls back alone; the others in its batch commit', async () => {
    const insert = (id: string) => (tx: Database['read']) =>
      tx
        .insertInto('organizations')
        .values({ id, name: id, created_at: new Date().toISOString() })
        .execute();
    const results = await Promise.allSettled([
      db.write(insert('iso-a')),
      db.write(async (tx) => {
        await insert('iso-b')(tx);
        throw new Error('unit b fails after writing');
      }),
      db.write(async (tx) => {
        await insert('iso-c')(tx);
        await insert('iso-c')(tx); // duplicate primary key: the database refuses
      }),
      db.write(insert('iso-d')),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'rejected', 'fulfilled'],
    );
    const ids = (
      await db.read
        .selectFrom('organizations')
        .select('id')
        .where('id', 'like', 'iso-%')
        .orderBy('id')
        .execute()
    ).map((r) => r.id);
    assert.deepEqual(ids, ['iso-a', 'iso-d']);
  });

  test('a write resolves only once committed: a second connection sees it immediately', async () => {
    await db.write((tx) =>
      tx
        .insertInto('organizations')
        .values({ id: 'visible-1', name: 'V', created_at: new Date().toISOString() })
        .execute(),
    );
    const other = await openDatabase(url());
    try {
      const row = await other.read
        .selectFrom('organizations')
        .select('id')
        .where('id', '=', 'visible-1')
        .executeTakeFirst();
      assert.equal(row?.id, 'visible-1');
    } finally {
      await other.close();
    }
  });
});

test('SQLite older than 3.51.3 is refused (version comparison)', () => {
  assert.equal(MIN_SQLITE_VERSION, '3.51.3');
  assert.ok(compareVersions('3.51.2', MIN_SQLITE_VERSION) < 0);
  assert.ok(compareVersions('3.50.9', MIN_SQLITE_VERSION) < 0);
  assert.equal(compareVersions('3.51.3', MIN_SQLITE_VERSION), 0);
  assert.ok(compareVersions('3.53.2', MIN_SQLITE_VERSION) > 0);
  assert.ok(compareVersions('4.0', MIN_SQLITE_VERSION) > 0);
});
