// The WAL reader against real SQLite logs: the committed frames it finds, written back behind a
// copy of the database, give SQLite exactly the transactions committed so far; a damaged frame,
// a log restarted by a checkpoint, and a run continued from where the last one ended.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import {
  FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  committedFrames,
  parseWalHeader,
  readCommitted,
  walChecksum,
} from '../../src/replication/wal.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function scratch(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-wal-'));
  dirs.push(dir);
  return dir;
}

/** A WAL database whose log is empty, with checkpoints left to the caller; and its snapshot. */
function freshDatabase(dir: string): {
  db: BetterSqlite3.Database;
  file: string;
  snapshot: Buffer;
} {
  const file = path.join(dir, 'primary.db');
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('create table t (n integer primary key, payload blob not null)');
  db.pragma('wal_checkpoint(TRUNCATE)');
  return { db, file, snapshot: fs.readFileSync(file) };
}

/** Commits `count` transactions of `rows` rows each, numbered on from `from`. */
function commit(db: BetterSqlite3.Database, from: number, count: number, rows = 40): number {
  const insert = db.prepare('insert into t (n, payload) values (?, ?)');
  let n = from;
  for (let i = 0; i < count; i++) {
    db.transaction(() => {
      for (let r = 0; r < rows; r++) {
        insert.run(n, Buffer.alloc(200, n % 251));
        n += 1;
      }
    })();
  }
  return n;
}

/** Opens `snapshot` with `wal` beside it, as a restore does, and counts the rows SQLite sees. */
function restoredRows(snapshot: Buffer, wal: Buffer): number {
  const dir = scratch();
  const file = path.join(dir, 'restored.db');
  fs.writeFileSync(file, snapshot);
  fs.writeFileSync(`${file}-wal`, wal);
  const db = new BetterSqlite3(file);
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    return (db.prepare('select count(*) as n from t').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

test('the checksum is SQLite’s: a header SQLite wrote checks, one flipped bit does not', () => {
  const dir = scratch();
  const { db, file } = freshDatabase(dir);
  commit(db, 0, 1);
  const bytes = fs.readFileSync(`${file}-wal`).subarray(0, WAL_HEADER_SIZE);
  const header = parseWalHeader(bytes);
  assert.ok(header);
  assert.equal(header.pageSize, db.pragma('page_size', { simple: true }));
  const flipped = Buffer.from(bytes);
  flipped[17] = (flipped[17] ?? 0) ^ 1;
  assert.equal(parseWalHeader(flipped), null);
  assert.throws(() => walChecksum(Buffer.alloc(12), false, [0, 0]), /multiples of 8/);
  db.close();
});

test('the committed frames restore every committed transaction, and a prefix restores a prefix', async () => {
  const dir = scratch();
  const { db, file, snapshot } = freshDatabase(dir);
  commit(db, 0, 5);
  const read = await readCommitted(`${file}-wal`);
  assert.ok(read);
  const { header, run } = read;
  assert.equal(run.commits, 5);
  assert.equal(run.endOffset, WAL_HEADER_SIZE + run.frames.length);
  assert.equal(restoredRows(snapshot, Buffer.concat([header.bytes, run.frames])), 200);

  // Cut after the third commit frame: SQLite sees three transactions, not a torn fourth.
  const frameSize = FRAME_HEADER_SIZE + header.pageSize;
  let cut = 0;
  let seen = 0;
  for (let at = 0; at < run.frames.length && seen < 3; at += frameSize) {
    if (run.frames.readUInt32BE(at + 4) !== 0) {
      seen += 1;
      cut = at + frameSize;
    }
  }
  const prefix = committedFrames(
    header,
    run.frames.subarray(0, cut),
    WAL_HEADER_SIZE,
    header.checksum,
  );
  assert.equal(prefix.commits, 3);
  assert.equal(restoredRows(snapshot, Buffer.concat([header.bytes, prefix.frames])), 120);
  // Half a frame more is not a transaction.
  const torn = committedFrames(
    header,
    run.frames.subarray(0, cut + frameSize / 2),
    WAL_HEADER_SIZE,
    header.checksum,
  );
  assert.equal(torn.commits, 3);
  db.close();
});

test('a run continues from where the last one ended: only the new transactions', async () => {
  const dir = scratch();
  const { db, file, snapshot } = freshDatabase(dir);
  let n = commit(db, 0, 2);
  const first = await readCommitted(`${file}-wal`);
  assert.ok(first);
  n = commit(db, n, 3);
  const second = await readCommitted(`${file}-wal`, {
    offset: first.run.endOffset,
    checksum: first.run.endChecksum,
  });
  assert.ok(second);
  assert.equal(second.run.commits, 3);
  const wal = Buffer.concat([first.header.bytes, first.run.frames, second.run.frames]);
  assert.equal(restoredRows(snapshot, wal), n);
  // Nothing new: an empty run that ends where it began.
  const third = await readCommitted(`${file}-wal`, {
    offset: second.run.endOffset,
    checksum: second.run.endChecksum,
  });
  assert.ok(third);
  assert.equal(third.run.commits, 0);
  assert.equal(third.run.endOffset, second.run.endOffset);
  db.close();
});

test('a damaged frame ends the run before it', async () => {
  const dir = scratch();
  const { db, file } = freshDatabase(dir);
  commit(db, 0, 4);
  const walPath = `${file}-wal`;
  const read = await readCommitted(walPath);
  assert.ok(read);
  const frameSize = FRAME_HEADER_SIZE + read.header.pageSize;
  const wal = fs.readFileSync(walPath);
  // One byte of the last frame's page.
  const last = WAL_HEADER_SIZE + read.run.frames.length - frameSize;
  const at = last + FRAME_HEADER_SIZE + 100;
  wal[at] = (wal[at] ?? 0) ^ 0xff;
  const damaged = committedFrames(
    read.header,
    wal.subarray(WAL_HEADER_SIZE),
    WAL_HEADER_SIZE,
    read.header.checksum,
  );
  assert.equal(damaged.commits, 3);
  assert.ok(damaged.endOffset <= last);
  db.close();
});

test('after a checkpoint restarts the log, the old position finds nothing and the new header is read', async () => {
  const dir = scratch();
  const { db, file, snapshot } = freshDatabase(dir);
  let n = commit(db, 0, 2);
  const before = await readCommitted(`${file}-wal`);
  assert.ok(before);
  db.pragma('wal_checkpoint(RESTART)');
  const checkpointed = fs.readFileSync(file);
  n = commit(db, n, 1);
  const after = await readCommitted(`${file}-wal`, {
    offset: before.run.endOffset,
    checksum: before.run.endChecksum,
  });
  assert.ok(after);
  assert.notEqual(after.header.salt1, before.header.salt1, 'a new generation of the log');
  assert.equal(after.run.commits, 0, 'frames of the new log do not continue the old checksum');
  const fresh = await readCommitted(`${file}-wal`);
  assert.ok(fresh);
  assert.equal(fresh.run.commits, 1);
  assert.equal(
    restoredRows(checkpointed, Buffer.concat([fresh.header.bytes, fresh.run.frames])),
    n,
  );
  assert.equal(restoredRows(snapshot, Buffer.concat([before.header.bytes, before.run.frames])), 80);
  db.close();
});
