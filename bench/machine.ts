// What the machine is, measured in the same run: cores, CPU model, and the disk's fsync rate
// (sequential one-row SQLite commits with synchronous=FULL, each waiting for its own fsync).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';

export function fsyncRate(dir: string, seconds = 2): number {
  const file = path.join(dir, 'fsync.db');
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('create table t (id integer primary key, v text)');
  const insert = db.prepare('insert into t (v) values (?)');
  let n = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    insert.run('x');
    n++;
  }
  db.close();
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
  return n / seconds;
}

export function machine(): string {
  const cpus = os.cpus();
  return `${String(os.availableParallelism())} cores (nproc), ${cpus[0]?.model ?? '?'}, Node ${process.version}, load average ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;
}
