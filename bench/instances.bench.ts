// One, two and three `caretrail serve` instances on one PostgreSQL database behind nginx (issue
// 18): audited chart reads and durable note creates under wrk through nginx, throughput per CPU
// second of all instances together, and backends waiting on a lock (pg_stat_activity). On two
// shared cores more instances cannot add cores: the figures show that nothing serializes them
// (lock waits) and what each instance costs, not a speed-up this machine cannot give.
import fs from 'node:fs';
import path from 'node:path';
import { startNginx } from '../test/helpers/nginx.js';
import { sampler } from './audit-lock.bench.js';
import type { Dataset } from './dataset.js';
import { sampleEnv } from './http.bench.js';
import { BENCH_PASSWORD } from './lib.js';
import { post, startCaretrail, type Server } from './server.js';
import { measure, type WrkResult } from './wrk.js';

export interface InstancesRun {
  instances: number;
  chart: WrkResult;
  create: WrkResult;
  lockWaiting: number;
  active: number;
}

export async function instancesBench(ds: Dataset, seconds: number): Promise<InstancesRun[]> {
  const connections = Number(process.env.BENCH_AUDIT_CONNECTIONS ?? 64);
  const saved = process.env.BENCH_CONNECTIONS;
  process.env.BENCH_CONNECTIONS = String(connections);
  const runs: InstancesRun[] = [];
  try {
    for (const n of [1, 2, 3]) {
      // The same data folder (keys, files) and database for all: what several machines share.
      const servers: Server[] = [];
      const dir = path.join(ds.dataDir, '..', `nginx-${String(n)}`);
      fs.rmSync(dir, { recursive: true, force: true });
      try {
        for (let i = 0; i < n; i++)
          servers.push(await startCaretrail({ ...ds.env, CARETRAIL_PG_POOL_SIZE: '16' }));
        for (const s of servers) await s.waitForLog(/audit trail verified/);
        const nginx = await startNginx(
          dir,
          servers.map((s) => Number(new URL(s.baseUrl).port)),
        );
        try {
          const login = { email: 'vet@bench.test', password: BENCH_PASSWORD };
          const { token } = await post<{ token: string }>(
            nginx.baseUrl,
            '/api/v1/auth/login',
            login,
          );
          const env = sampleEnv(ds, token);
          const pids = servers.map((s) => s.pid);
          const samples = sampler(ds.env.CARETRAIL_DATABASE_URL ?? '');
          await samples.start();
          const chart = await measure(nginx.baseUrl, pids, 'chart', env, seconds);
          const create = await measure(nginx.baseUrl, pids, 'create', env, seconds);
          const s = await samples.stop();
          runs.push({ instances: n, chart, create, lockWaiting: s.lockWaiting, active: s.active });
        } finally {
          await nginx.stop();
        }
      } finally {
        await Promise.all(servers.map((s) => s.stop()));
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    if (saved === undefined) delete process.env.BENCH_CONNECTIONS;
    else process.env.BENCH_CONNECTIONS = saved;
  }
  return runs;
}
