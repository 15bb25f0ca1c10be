// SQLite replication end to end on real files: the server's database (group commit, checkpoints
// left to the replicator) ships its log to a folder replica; a restore onto a fresh folder holds
// every committed write, across log restarts; a restore to a moment between two writes holds
// the first only; a damaged segment stops the restore at the last good point and names it; a log
// restarted behind the replicator's back starts a new generation and loses nothing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { createKeyring, newMasterKey } from '../../src/blobs/master-key.js';
import {
  openReplicaDestination,
  type ReplicaDestination,
} from '../../src/replication/destination.js';
import { AppError } from '../../src/domain/errors.js';
import { RestoreError, listGenerations, restoreSqlite } from '../../src/replication/restore.js';
import {
  createSqliteReplicator,
  type SqliteReplicator,
} from '../../src/replication/sqlite-replicator.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { tempDir } from '../helpers/engines.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function folder(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

/** A clock the test moves by hand. */
function manualClock(start = Date.parse('2026-12-05T10:00:00.000Z')) {
  let t = start;
  return {
    now: () => new Date(t),
    advance(ms: number) {
      t += ms;
    },
  };
}

async function setUp(checkpointBytes = 4 * 1024 * 1024) {
  const dir = folder('caretrail-primary-');
  const replicaDir = folder('caretrail-replica-');
  let replicator: SqliteReplicator | null = null;
  const db = await openDatabase(`sqlite:${path.join(dir, 'caretrail.db')}`, {
    checkpoints: 'caller',
    afterCommit: (raw, batch) => replicator?.afterCommit(raw, batch),
  });
  await db.migrate();
  const keyring = createKeyring([newMasterKey()]);
  const destination = openReplicaDestination(`file:${replicaDir}`);
  const clock = manualClock();
  replicator = createSqliteReplicator({
    db,
    destination,
    keyring,
    now: clock.now,
    checkpointBytes,
  });
  return { db, dir, replicaDir, keyring, destination, clock, replicator: replicator };
}

/** Commits `count` organizations in parallel (one group-commit batch or a few). */
async function writeOrganizations(db: Database, tag: string, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      db.write((tx) =>
        tx
          .insertInto('organizations')
          .values({
            id: `${tag}-${String(i)}`,
            name: `${tag} ${'x'.repeat(300)}`,
            created_at: new Date().toISOString(),
          })
          .execute(),
      ),
    ),
  );
}

function organizationIds(file: string): string[] {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return (db.prepare('select id from organizations order by id').all() as { id: string }[]).map(
      (r) => r.id,
    );
  } finally {
    db.close();
  }
}

test('a restore holds every committed write, across log restarts', async () => {
  const { db, dir, keyring, destination, clock, replicator } = await setUp(64 * 1024);
  await replicator.ship(); // the first generation: a snapshot
  for (let round = 0; round < 6; round++) {
    await writeOrganizations(db, `r${String(round)}`, 40);
    clock.advance(1000);
    await replicator.ship();
    await replicator.checkpoint();
  }
  await writeOrganizations(db, 'last', 5);
  await replicator.stop();
  const status = replicator.status();
  assert.ok(status.index >= 2, `the log restarted (index ${String(status.index)})`);
  assert.equal(status.lastError, null);

  const expected = organizationIds(path.join(dir, 'caretrail.db'));
  assert.equal(expected.length, 6 * 40 + 5);
  const to = path.join(folder('caretrail-restored-'), 'caretrail.db');
  const report = await restoreSqlite({ destination, keyring, to });
  assert.equal(report.stoppedAt, null);
  assert.deepEqual(organizationIds(to), expected);
  assert.ok(report.segments >= 7, `segments applied: ${String(report.segments)}`);
  await db.close();

  // A restore does not overwrite a database without --force.
  await assert.rejects(restoreSqlite({ destination, keyring, to }), /already holds a database/);
  const again = await restoreSqlite({ destination, keyring, to, force: true });
  assert.equal(again.commits, report.commits);
});

test('a restore to a moment between two writes holds the first and not the second', async () => {
  const { db, keyring, destination, clock, replicator } = await setUp();
  await replicator.ship();
  await writeOrganizations(db, 'morning', 3);
  clock.advance(1000);
  await replicator.ship();
  const between = new Date(clock.now().getTime() + 500);
  clock.advance(60_000);
  await writeOrganizations(db, 'noon', 3);
  await replicator.ship();
  await db.close();

  const to = path.join(folder('caretrail-pitr-'), 'caretrail.db');
  const report = await restoreSqlite({ destination, keyring, to, at: between, now: clock.now() });
  const ids = organizationIds(to);
  assert.ok(ids.filter((id) => id.startsWith('morning')).length === 3, ids.join(','));
  assert.equal(ids.filter((id) => id.startsWith('noon')).length, 0);
  assert.ok(report.restoredTo <= between.toISOString());

  await assert.rejects(
    restoreSqlite({
      destination,
      keyring,
      to,
      force: true,
      at: new Date(clock.now().getTime() + 3_600_000),
      now: clock.now(),
    }),
    (err) => err instanceof RestoreError && /in the future/.test(err.message),
  );
  await assert.rejects(
    restoreSqlite({
      destination,
      keyring,
      to,
      force: true,
      at: new Date('2020-01-01T00:00:00Z'),
      now: clock.now(),
    }),
    /outside retention/,
  );
});

test('a damaged segment stops the restore at the last good point and is named', async () => {
  const { db, replicaDir, keyring, destination, clock, replicator } = await setUp();
  await replicator.ship();
  await writeOrganizations(db, 'a', 3);
  clock.advance(1000);
  await replicator.ship();
  await writeOrganizations(db, 'b', 3);
  clock.advance(1000);
  await replicator.ship();
  await db.close();
  const segments = (await destination.list('generations/')).filter((n) => n.includes('/wal/'));
  // The new log's first frame (written when the generation began), then a, then b.
  assert.equal(segments.length, 3);
  const second = segments[2] as string;
  const file = path.join(replicaDir, ...second.split('/'));
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0xff;
  fs.writeFileSync(file, bytes);

  const to = path.join(folder('caretrail-damaged-'), 'caretrail.db');
  const report = await restoreSqlite({ destination, keyring, to });
  const { stoppedAt } = report;
  assert.ok(stoppedAt, 'the restore says it stopped early');
  assert.equal(stoppedAt.segment, second);
  assert.match(stoppedAt.reason, /altered or damaged/);
  const ids = organizationIds(to);
  assert.equal(ids.filter((id) => id.startsWith('a-')).length, 3);
  assert.equal(ids.filter((id) => id.startsWith('b-')).length, 0);
});

test('a log restarted behind the replicator’s back starts a new generation and loses nothing', async () => {
  const { db, dir, keyring, destination, clock, replicator } = await setUp();
  await replicator.ship();
  await writeOrganizations(db, 'before', 4);
  clock.advance(1000);
  // Another process (an operator's sqlite3 shell) checkpoints and restarts the log.
  const other = new BetterSqlite3(path.join(dir, 'caretrail.db'));
  other.pragma('wal_checkpoint(RESTART)');
  other.close();
  await writeOrganizations(db, 'after', 4);
  await replicator.ship();
  clock.advance(1000);
  await writeOrganizations(db, 'later', 4);
  await replicator.ship();
  await db.close();
  assert.equal((await listGenerations(destination, keyring)).length, 2);
  const to = path.join(folder('caretrail-newgen-'), 'caretrail.db');
  await restoreSqlite({ destination, keyring, to });
  const ids = organizationIds(to);
  for (const tag of ['before', 'after', 'later'])
    assert.equal(ids.filter((id) => id.startsWith(`${tag}-`)).length, 4, tag);
});

test('the replica reveals no database content without the master key', async () => {
  const { db, replicaDir, replicator } = await setUp();
  await writeOrganizations(db, 'Secret-Clinic-Name', 2);
  await replicator.ship();
  await writeOrganizations(db, 'Another-Secret', 2);
  await replicator.ship();
  await db.close();
  const everything = fs
    .readdirSync(replicaDir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => fs.readFileSync(path.join(e.parentPath, e.name)));
  assert.ok(everything.length >= 3);
  for (const bytes of everything) {
    assert.ok(!bytes.includes(Buffer.from('Secret-Clinic-Name')));
    assert.ok(!bytes.includes(Buffer.from('Another-Secret')));
    assert.ok(!bytes.includes(Buffer.from('SQLite format 3')));
  }
});

test('a point in time inside one segment: each transaction’s commit time is kept', async () => {
  const { db, keyring, destination, clock, replicator } = await setUp();
  await replicator.ship();
  await writeOrganizations(db, 'first', 1);
  clock.advance(2000);
  const between = new Date(clock.now().getTime() - 1000);
  await writeOrganizations(db, 'second', 1);
  await replicator.ship(); // both in one segment
  await db.close();
  const segments = (await destination.list('generations/')).filter((n) => n.includes('/wal/'));
  assert.equal(segments.length, 2, 'the new log’s first frame, then one segment with both');

  const to = path.join(folder('caretrail-pitr-inside-'), 'caretrail.db');
  const report = await restoreSqlite({ destination, keyring, to, at: between, now: clock.now() });
  assert.deepEqual(organizationIds(to), ['first-0']);
  assert.equal(report.restoredTo, new Date(between.getTime() - 1000).toISOString());
  assert.equal(report.stoppedAt, null);
});

/** A destination that can be taken down and brought back, around a real folder. */
function flaky(destination: ReplicaDestination) {
  let down = false;
  const check = () => {
    if (down) throw new Error('replica unreachable (test outage)');
  };
  return {
    setDown(value: boolean) {
      down = value;
    },
    destination: {
      description: destination.description,
      put: async (name: string, bytes: Buffer) => {
        check();
        await destination.put(name, bytes);
      },
      get: async (name: string) => {
        check();
        return destination.get(name);
      },
      list: async (prefix: string) => {
        check();
        return destination.list(prefix);
      },
      delete: async (name: string) => {
        check();
        await destination.delete(name);
      },
    } satisfies ReplicaDestination,
  };
}

test('synchronous mode: a write is answered only once it is on the replica, and refused while the replica is down', async () => {
  const dir = folder('caretrail-sync-');
  const replicaDir = folder('caretrail-sync-replica-');
  const keyring = createKeyring([newMasterKey()]);
  const outage = flaky(openReplicaDestination(`file:${replicaDir}`));
  let replicator: SqliteReplicator | null = null;
  const db = await openDatabase(`sqlite:${path.join(dir, 'caretrail.db')}`, {
    checkpoints: 'caller',
    afterCommit: (raw, batch) => replicator?.afterCommit(raw, batch),
    writeGate: () => replicator?.writeGate() ?? null,
  });
  await db.migrate();
  replicator = createSqliteReplicator({
    db,
    destination: outage.destination,
    keyring,
    sync: true,
    checkpointBytes: 32 * 1024,
  });
  await replicator.ship();

  const restoreNow = async (tag: string) => {
    const to = path.join(folder(`caretrail-sync-${tag}-`), 'caretrail.db');
    await restoreSqlite({ destination: outage.destination, keyring, to });
    return organizationIds(to);
  };
  // No ship() between the write and the restore: the answer itself means it is there.
  await writeOrganizations(db, 'acked', 30);
  assert.equal((await restoreNow('a')).filter((id) => id.startsWith('acked-')).length, 30);

  outage.setDown(true);
  await assert.rejects(writeOrganizations(db, 'during', 1), (err: unknown) => {
    assert.ok(err instanceof AppError);
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, /replica cannot be reached/);
    return true;
  });
  assert.match(replicator.status().lastError ?? '', /test outage/);
  // Refused before anything is written while the replica is known to be down.
  const before = organizationIds(path.join(dir, 'caretrail.db')).length;
  await assert.rejects(writeOrganizations(db, 'refused', 1), /replica cannot be reached/);
  assert.equal(organizationIds(path.join(dir, 'caretrail.db')).length, before);

  outage.setDown(false);
  await replicator.ship(); // what the timer does every 250 ms
  assert.equal(replicator.writeGate(), null);
  await writeOrganizations(db, 'after', 5);
  const ids = await restoreNow('b');
  assert.equal(ids.filter((id) => id.startsWith('after-')).length, 5);
  // The batch that failed to ship is shipped by the next round (committed locally, not acknowledged).
  assert.equal(ids.filter((id) => id.startsWith('during-')).length, 1);
  assert.equal(ids.filter((id) => id.startsWith('refused-')).length, 0);
  await replicator.stop();
  await db.close();
});

test('periodic snapshots: restores start from the latest, and retention prunes what no restore can reach', async () => {
  const { db, keyring, destination, clock, replicator } = await setUp();
  await replicator.ship();
  await writeOrganizations(db, 'day1', 3);
  clock.advance(24 * 3600_000);
  await replicator.checkpoint({ snapshot: true });
  await writeOrganizations(db, 'day2', 3);
  clock.advance(24 * 3600_000);
  await replicator.checkpoint({ snapshot: true });
  await writeOrganizations(db, 'day3', 3);
  await replicator.ship();
  const snapshots = (await destination.list('generations/')).filter((n) => n.endsWith('.json'));
  assert.equal(snapshots.length, 3);

  // Nothing is older than 35 days yet.
  assert.equal(await replicator.prune(), 0);
  // 36 days on, the day-1 snapshot is past retention and so is the day-2 one; the day-3 point
  // (the newest snapshot before the cutoff) stays, with everything after it.
  clock.advance(36 * 24 * 3600_000);
  const deleted = await replicator.prune();
  assert.ok(deleted > 0);
  const left = (await destination.list('generations/')).filter((n) => n.endsWith('.json'));
  assert.equal(left.length, 1, left.join(','));

  const to = path.join(folder('caretrail-pruned-'), 'caretrail.db');
  const report = await restoreSqlite({ destination, keyring, to, now: clock.now() });
  assert.equal(organizationIds(to).length, 9);
  assert.equal(report.stoppedAt, null);
  await assert.rejects(
    restoreSqlite({
      destination,
      keyring,
      to,
      force: true,
      at: new Date(clock.now().getTime() - 37 * 24 * 3600_000),
      now: clock.now(),
    }),
    /outside retention/,
  );
  await replicator.stop();
  await db.close();
});

test('batches that change nothing (the outbox relay’s empty claims) take no commit time', async () => {
  const { db, keyring, destination, clock, replicator } = await setUp();
  await replicator.ship();
  await writeOrganizations(db, 'first', 1);
  for (let i = 0; i < 5; i++) {
    clock.advance(500);
    // A unit of work that only reads: its batch commits no frame.
    await db.write((tx) => tx.selectFrom('organizations').select('id').execute());
  }
  clock.advance(2000);
  const between = new Date(clock.now().getTime() - 1000);
  await writeOrganizations(db, 'second', 1);
  await replicator.ship();
  await db.close();
  const to = path.join(folder('caretrail-empty-batches-'), 'caretrail.db');
  await restoreSqlite({ destination, keyring, to, at: between, now: clock.now() });
  assert.deepEqual(organizationIds(to), ['first-0']);
});
