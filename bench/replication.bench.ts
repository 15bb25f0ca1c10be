// Replication's cost and figures (SQLite): durable note creates under wrk with replication off,
// asynchronous and synchronous (to a folder on the same disk: the cost of the work, not of a
// network), the replication lag sampled every 100 ms during the asynchronous run (p50/p99), and
// the time `caretrail restore` takes per GB of database from that replica.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_PASSWORD } from './lib.js';
import type { Dataset } from './dataset.js';
import { MAIN, startCaretrail } from './server.js';
import { measure, type WrkResult } from './wrk.js';
import { sampleEnv } from './http.bench.js';

export interface ReplicationBenchResult {
  off: WrkResult;
  async: WrkResult;
  sync: WrkResult;
  lagP50Seconds: number;
  lagP99Seconds: number;
  lagSamples: number;
  databaseBytes: number;
  restoreSeconds: number;
  restoreSecondsPerGb: number;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
};

async function createsWith(
  ds: Dataset,
  env: Record<string, string>,
  seconds: number,
  whileRunning?: () => () => void,
): Promise<WrkResult> {
  const server = await startCaretrail({ ...ds.env, ...env });
  try {
    await server.waitForLog(/audit trail verified/);
    if (env.CARETRAIL_REPLICA_URL) await server.waitForLog(/replicating the database/);
    const res = await fetch(`${server.baseUrl}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'vet@bench.test', password: BENCH_PASSWORD }),
    });
    const { token } = (await res.json()) as { token: string };
    const stop = whileRunning?.();
    try {
      return await measure(server.baseUrl, server.pid, 'create', sampleEnv(ds, token), seconds);
    } finally {
      stop?.();
    }
  } finally {
    await server.stop();
  }
}

export async function replicationBench(
  ds: Dataset,
  seconds: number,
): Promise<ReplicationBenchResult> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-bench-replica-'));
  try {
    const off = await createsWith(ds, {}, seconds);
    const asyncReplica = path.join(work, 'async');
    const lags: number[] = [];
    const statusFile = path.join(ds.dataDir, 'replication-status.json');
    const asyncRun = await createsWith(
      ds,
      { CARETRAIL_REPLICA_URL: `file:${asyncReplica}` },
      seconds,
      () => {
        const timer = setInterval(() => {
          try {
            const s = JSON.parse(fs.readFileSync(statusFile, 'utf8')) as { lagSeconds: number };
            lags.push(s.lagSeconds);
          } catch {
            // between writes of the file
          }
        }, 100);
        return () => {
          clearInterval(timer);
        };
      },
    );
    const sync = await createsWith(
      ds,
      { CARETRAIL_REPLICA_URL: `file:${path.join(work, 'sync')}`, CARETRAIL_REPLICA_SYNC: 'true' },
      seconds,
    );
    // Restore from the asynchronous run's replica (its server stopped cleanly: all shipped).
    const to = path.join(work, 'restored');
    const started = Date.now();
    const restore = spawnSync(
      process.execPath,
      [MAIN, 'restore', '--from', `file:${asyncReplica}`, '--to', to, '--key-dir', ds.dataDir],
      { env: { ...process.env, ...ds.env, CARETRAIL_DATA_DIR: to }, encoding: 'utf8' },
    );
    const restoreSeconds = (Date.now() - started) / 1000;
    if (restore.status !== 0)
      throw new Error(
        `restore failed (${String(restore.status)}): ${restore.stdout}${restore.stderr}`,
      );
    const databaseBytes = fs.statSync(path.join(to, 'caretrail.db')).size;
    return {
      off,
      async: asyncRun,
      sync,
      lagP50Seconds: quantile(lags, 0.5),
      lagP99Seconds: quantile(lags, 0.99),
      lagSamples: lags.length,
      databaseBytes,
      restoreSeconds,
      restoreSecondsPerGb: restoreSeconds / (databaseBytes / 1e9),
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
