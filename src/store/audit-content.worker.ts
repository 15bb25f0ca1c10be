// Worker thread: recomputes the hash of every audit event in a sequence range of a SQLite
// database and reports the first whose content no longer matches its stored hash.
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { eventHash } from '../domain/audit.js';
import { auditEventFromRow, CHAIN_COLUMNS, rowFromArray } from './audit.store.js';

const { file, from, to } = workerData as { file: string; from: number; to: number };
const db = new BetterSqlite3(file, { readonly: true });
let firstAltered: number | null = null;
let checked = 0;
try {
  const rows = db
    .prepare(
      `select ${CHAIN_COLUMNS.join(', ')} from audit_events where seq >= ? and seq <= ? order by seq`,
    )
    .raw(true)
    .iterate(from, to) as IterableIterator<unknown[]>;
  for (const r of rows) {
    const { event, hash } = auditEventFromRow(rowFromArray(r));
    checked++;
    if (eventHash(event) !== hash) {
      firstAltered = event.seq;
      break;
    }
  }
} finally {
  db.close();
}
parentPort?.postMessage({ firstAltered, checked });
