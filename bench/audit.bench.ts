// Audit chain at scale, on the seeded dataset: `caretrail audit verify` over every event, and
// `caretrail audit export --format csv` (time and how much its resident memory grows).
import { spawn } from 'node:child_process';
import type { Dataset } from './dataset.js';
import { MAIN, rssOf, runCli } from './server.js';

export interface AuditResults {
  verifySeconds: number;
  verified: number;
  exportSeconds: number;
  exported: number;
  exportRssGrowthMb: number;
}

/**
 * Runs the export as its own process, counting CSV rows and sampling its resident memory:
 * growth is measured from the first row (start-up and module loading are not the export's).
 */
function exportCsv(
  env: Record<string, string>,
): Promise<Omit<AuditResults, 'verifySeconds' | 'verified'>> {
  const child = spawn(process.execPath, [MAIN, 'audit', 'export', '--format', 'csv'], {
    env: { ...process.env, CARETRAIL_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = child.pid ?? 0;
  let baseline = 0;
  let peak = 0;
  let lines = 0;
  let started = 0n;
  const sampler = setInterval(() => {
    if (baseline > 0) peak = Math.max(peak, rssOf(pid));
  }, 20);
  child.stdout.on('data', (chunk: Buffer) => {
    if (baseline === 0) {
      baseline = rssOf(pid);
      peak = baseline;
      started = process.hrtime.bigint();
    }
    // indexOf, not a loop over every byte: the counting shares the machine's two cores with the
    // export it measures (a byte loop over 350 MB cost seconds of CPU).
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      clearInterval(sampler);
      if (code !== 0) reject(new Error(`audit export exited with ${String(code)}`));
      else
        resolve({
          exportSeconds: Number(process.hrtime.bigint() - started) / 1e9,
          exported: lines - 1,
          exportRssGrowthMb: (peak - baseline) / 1024 / 1024,
        });
    });
  });
}

export async function auditBench(ds: Dataset): Promise<AuditResults> {
  const t0 = process.hrtime.bigint();
  const { stdout } = await runCli(['audit', 'verify'], ds.env);
  const verifySeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const verified = Number(/([\d,]+) events/.exec(stdout)?.[1]?.replace(/,/g, '') ?? 0);
  return { verifySeconds, verified, ...(await exportCsv(ds.env)) };
}
