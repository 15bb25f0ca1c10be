// Verifies the audit chain on worker threads, one contiguous sequence range each (contents,
// internal links, chain values at checkpoints); this thread joins the ranges and keeps the
// verdict exactly the one a single walk would give.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChainVerifier } from '../domain/audit-verify.js';
import type { ChainSource } from './audit-scan.js';
import type { RangeJob, RangeResult } from './audit-verify.worker.js';

const here = import.meta.url;
// Under tsx (tests, development) the worker is TypeScript and starts through a shim that
// registers tsx in the worker thread.
const workerUrl = new URL(
  here.endsWith('.ts') ? './audit-verify.worker-source.mjs' : './audit-verify.worker.js',
  here,
);

function runRange(job: RangeJob): Promise<RangeResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerUrl, { workerData: job });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`audit verify worker exited with ${code}`));
    });
  });
}

/**
 * Feeds events (afterSeq, upTo] to `verifier` as ranges verified on worker threads, in order,
 * stopping at the first failure. `checkpointSeqs`: every checkpoint position, ascending.
 */
export async function verifyRangesInWorkers(
  verifier: ChainVerifier,
  source: ChainSource,
  afterSeq: number,
  upTo: number,
  checkpointSeqs: readonly number[],
): Promise<void> {
  if (upTo <= afterSeq) return;
  const workers = Math.max(1, Math.min(4, os.availableParallelism()));
  const size = Math.ceil((upTo - afterSeq) / workers);
  const jobs: RangeJob[] = [];
  for (let from = afterSeq + 1; from <= upTo; from += size) {
    const to = Math.min(upTo, from + size - 1);
    jobs.push({
      source,
      from,
      to,
      checkpointSeqs: checkpointSeqs.filter((s) => s >= from && s <= to),
    });
  }
  // All ranges run at once; they are joined in order, and the first failure ends the walk.
  const results = jobs.map(runRange);
  // Rejections of ranges after a failure are not waited for, but must not go unhandled.
  for (const r of results) r.catch(() => undefined);
  for (const pending of results) {
    const { first, run } = await pending;
    if (first === null) continue;
    if (!verifier.pushLink(first.seq, first.hash, first.chain, () => first.contentMatches)) return;
    if (!verifier.pushRun({ ...run, checkpointChains: new Map(run.checkpointChains) })) return;
  }
}
