// Durable note creates per second over HTTP, against the machine's single-commit (fsync) rate
// measured in the same run. Both figures come from the same disk, so their ratio is what counts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { startServer } from '../test/helpers/process.js';
import { clinicWithPatient, measureRate } from './lib.js';

/** Sequential one-row transactions with synchronous=FULL: each commit waits for its own fsync. */
function singleCommitRate(dir: string, seconds: number): number {
  const db = new BetterSqlite3(path.join(dir, 'fsync.db'));
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
  return n / seconds;
}

export async function groupCommitBench(options: {
  seconds: number;
  concurrency: number;
}): Promise<Record<string, number>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-bench-'));
  try {
    const results: Record<string, number> = { singleCommitPerSecond: singleCommitRate(dir, 2) };
    for (const [label, maxBatch] of [
      ['groupCommit', '1000'],
      ['noGroupCommit', '1'],
    ] as const) {
      const dataDir = path.join(dir, label);
      fs.mkdirSync(dataDir);
      const env = {
        CARETRAIL_DATA_DIR: dataDir,
        CARETRAIL_DATABASE_URL: `sqlite:${path.join(dataDir, 'caretrail.db')}`,
        CARETRAIL_SQLITE_MAX_BATCH: maxBatch,
        CARETRAIL_LOGIN_IP_MAX_FAILURES: '100000',
      };
      const server = await startServer(env);
      try {
        const { token, patientId } = await clinicWithPatient(server, env, dataDir);
        const body = JSON.stringify({
          kind: 'clinical',
          body: 'Bench note: temperature 38.6 C, heart rate 92/min, bright and alert.',
        });
        results[`${label}NotesPerSecond`] = await measureRate(
          server,
          { method: 'POST', path: `/api/v1/patients/${patientId}/notes`, token, body },
          201,
          options,
        );
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
    }
    return results;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
