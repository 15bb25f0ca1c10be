// Worker thread: walks one sequence range of the audit chain on a connection of its own (see
// RangeWalker) and answers with what the joining thread needs.
import { parentPort, workerData } from 'node:worker_threads';
import { sha256Hex } from '../domain/audit.js';
import { RangeWalker } from '../domain/audit-verify.js';
import {
  canonicalEventJsonOfRow,
  chainPageSql,
  openChainReader,
  type ChainSource,
} from './audit-scan.js';

export interface RangeJob {
  source: ChainSource;
  from: number;
  to: number;
  /** Checkpoint positions in the range, ascending. */
  checkpointSeqs: number[];
}

export interface RangeResult {
  first: RangeWalker['first'];
  run: ReturnType<RangeWalker['run']>;
}

// Small pages: rows of large pages outlive the young generation, and promoting them cost more
// (measured with 5,000 and 20,000 rows a page) than the per-query cost of 1,000.
const PAGE = 1000;

async function walk({ source, from, to, checkpointSeqs }: RangeJob): Promise<RangeResult> {
  const reader = await openChainReader(source);
  const sql = chainPageSql(source.engine);
  const walker = new RangeWalker(checkpointSeqs);
  try {
    let after = from - 1;
    pages: for (;;) {
      const rows = await reader.rows(sql, [after, to, PAGE]);
      for (const r of rows) {
        const hash = r[18] as string;
        const matches = sha256Hex(canonicalEventJsonOfRow(r)) === hash;
        if (!walker.push(r[0] as number, hash, r[19] as string, matches)) break pages;
      }
      const last = rows[rows.length - 1];
      if (rows.length < PAGE || !last) break;
      after = last[0] as number;
    }
  } finally {
    await reader.close();
  }
  return { first: walker.first, run: walker.run() };
}

parentPort?.postMessage(await walk(workerData as RangeJob));
