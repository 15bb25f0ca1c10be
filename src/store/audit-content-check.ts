// Checks audit event contents against their hashes on worker threads, one sequence range each,
// while the caller walks the chain links: verification then uses every core.
import os from 'node:os';
import { Worker } from 'node:worker_threads';

const here = import.meta.url;
// Under tsx (tests, development) the worker is TypeScript and starts through a shim that
// registers tsx in the worker thread.
const workerUrl = new URL(
  here.endsWith('.ts') ? './audit-content.worker-source.mjs' : './audit-content.worker.js',
  here,
);

function checkRange(
  file: string,
  from: number,
  to: number,
): Promise<{ firstAltered: number | null; checked: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerUrl, { workerData: { file, from, to } });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`audit content worker exited with ${code}`));
    });
  });
}

/** The first event in [from, to] whose content does not match its hash, or null. */
export async function firstAlteredEvent(
  file: string,
  from: number,
  to: number,
): Promise<number | null> {
  if (to < from) return null;
  const workers = Math.max(1, Math.min(4, os.availableParallelism()));
  const size = Math.ceil((to - from + 1) / workers);
  const ranges = Array.from(
    { length: workers },
    (_, i) => [from + i * size, Math.min(to, from + (i + 1) * size - 1)] as const,
  ).filter(([a, b]) => a <= b);
  const results = await Promise.all(ranges.map(([a, b]) => checkRange(file, a, b)));
  const altered = results.map((r) => r.firstAltered).filter((s): s is number => s !== null);
  return altered.length > 0 ? Math.min(...altered) : null;
}
