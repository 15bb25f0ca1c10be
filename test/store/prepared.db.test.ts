// Prepared queries (compiled once per engine) answer exactly as the Kysely queries they stand
// for, with new values on every run, inside the caller's transaction — on both engines.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase, type Database } from '../../src/store/database.js';
import { prepared, preparedInsert } from '../../src/store/prepared.js';
import { describeEachEngine } from '../helpers/engines.js';

const orgsNamed = prepared((db, p: { prefix: string; limit: number }) =>
  db
    .selectFrom('organizations')
    .select(['id', 'name'])
    .where('name', '>=', p.prefix)
    .where('id', 'like', 'prep-%')
    .orderBy('name')
    .limit(p.limit),
);
const renameOrg = prepared((db, p: { id: string; name: string }) =>
  db.updateTable('organizations').set({ name: p.name }).where('id', '=', p.id),
);
const orgInsert = preparedInsert('organizations', ['id', 'name', 'created_at']);

describeEachEngine('prepared queries', ({ url }) => {
  let db: Database;
  before(async () => {
    db = await openDatabase(url());
    await db.migrate();
  });
  after(async () => {
    await db.close();
  });

  test('a prepared insert, select and update give what the built queries give', async () => {
    const at = new Date().toISOString();
    await db.write(async (tx) => {
      for (const [id, name] of [
        ['prep-1', 'Alder Clinic'],
        ['prep-2', 'Birch Clinic'],
        ['prep-3', 'Cedar Clinic'],
      ] as const)
        await orgInsert.run(tx, { id, name, created_at: at });
    });
    const built = await db.read
      .selectFrom('organizations')
      .select(['id', 'name'])
      .where('name', '>=', 'B')
      .where('id', 'like', 'prep-%')
      .orderBy('name')
      .limit(5)
      .execute();
    assert.deepEqual(await orgsNamed.rows(db.read, { prefix: 'B', limit: 5 }), built);
    // The same statement again with other values: nothing of the first run sticks.
    assert.deepEqual(await orgsNamed.rows(db.read, { prefix: 'A', limit: 1 }), [
      { id: 'prep-1', name: 'Alder Clinic' },
    ]);
    assert.equal(await orgsNamed.first(db.read, { prefix: 'Z', limit: 1 }), undefined);
    assert.equal(
      await db.write((tx) => renameOrg.run(tx, { id: 'prep-2', name: 'Beech Clinic' })),
      1,
    );
    assert.equal(await db.write((tx) => renameOrg.run(tx, { id: 'prep-none', name: 'X' })), 0);
    assert.deepEqual(
      (await orgsNamed.rows(db.read, { prefix: 'B', limit: 5 })).map((r) => r.name),
      ['Beech Clinic', 'Cedar Clinic'],
    );
  });

  test('a prepared statement runs inside the unit of work that called it', async () => {
    await assert.rejects(
      db.write(async (tx) => {
        await renameOrg.run(tx, { id: 'prep-3', name: 'Renamed Then Undone' });
        throw new Error('the unit fails after the update');
      }),
      /the unit fails/,
    );
    const row = await orgsNamed.first(db.read, { prefix: 'C', limit: 1 });
    assert.equal(row?.name, 'Cedar Clinic');
  });

  test('a value that cannot be a bound parameter is refused, not run', async () => {
    // A list stands for one parameter when compiled: refused when a list comes to bind.
    const listed = prepared((qb, p: { ids: string[] }) =>
      qb.selectFrom('organizations').select('id').where('id', 'in', p.ids),
    );
    // A value used where SQL needs a name is written into the SQL, not bound.
    const inlined = prepared((qb, p: { name: string }) =>
      qb
        .selectFrom('organizations')
        .select('id')
        .where('name', '=', p.name)
        .orderBy(p.name as never),
    );
    await assert.rejects(listed.rows(db.read, { ids: ['prep-1'] }), /must be a single value/);
    await assert.rejects(inlined.rows(db.read, { name: 'x' }), /did not become bound/);
  });
});
