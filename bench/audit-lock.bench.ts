// The audit append on PostgreSQL before and after issue 18, in the same run: audited chart
// reads and durable note creates under wrk with 64 connections, once with every unit of work
// locking the chain head (CARETRAIL_AUDIT_APPEND=head-lock, the old way) and once with the
// sealer. pg_stat_activity is sampled every 100 ms for backends waiting on a lock, and the
// sealer's lag (the oldest unsealed event's age) beside it.
import pg from 'pg';
import type { Dataset } from './dataset.js';
import { sampleEnv } from './http.bench.js';
import { BENCH_PASSWORD } from './lib.js';
import { post, startCaretrail } from './server.js';
import { measure, type WrkResult } from './wrk.js';

export const AUDIT_MODES = ['head-lock', 'sealer'] as const;
export type AuditMode = (typeof AUDIT_MODES)[number];

export interface AuditLockRun {
  chart: WrkResult;
  create: WrkResult;
  /** Mean backends of the database waiting on a lock (heavyweight: row or advisory) per sample. */
  lockWaiting: number;
  /** Mean active backends per sample (the load). */
  active: number;
  /** The oldest unsealed event's age, p50/p99 over the samples (0 with head-lock). */
  sealLagP50Seconds: number;
  sealLagP99Seconds: number;
  samples: number;
}

export type AuditLockResult = Record<AuditMode, AuditLockRun> & { connections: number };

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
};

/** pg_stat_activity and the sealer's lag every 100 ms, while a measurement runs. */
export function sampler(databaseUrl: string) {
  const client = new pg.Client({ connectionString: databaseUrl });
  const waiting: number[] = [];
  const active: number[] = [];
  const lag: number[] = [];
  let timer: NodeJS.Timeout | null = null;
  let busy = false;
  return {
    async start() {
      await client.connect();
      timer = setInterval(() => {
        if (busy) return;
        busy = true;
        client
          .query<{ waiting: number; active: number; lag: number }>(
            `select (select count(*) from pg_stat_activity
                      where datname = current_database() and pid <> pg_backend_pid()
                        and wait_event_type = 'Lock')::int as waiting,
                    (select count(*) from pg_stat_activity
                      where datname = current_database() and pid <> pg_backend_pid()
                        and state = 'active')::int as active,
                    coalesce(extract(epoch from now() - min(occurred_at)::timestamptz), 0)::float8
                      as lag
               from audit_inbox`,
          )
          .then(({ rows: [r] }) => {
            if (!r) return;
            waiting.push(r.waiting);
            active.push(r.active);
            lag.push(Math.max(0, r.lag));
          })
          .catch(() => undefined)
          .finally(() => {
            busy = false;
          });
      }, 100);
    },
    async stop() {
      if (timer) clearInterval(timer);
      while (busy) await new Promise((r) => setTimeout(r, 20));
      await client.end();
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
      return {
        lockWaiting: mean(waiting),
        active: mean(active),
        sealLagP50Seconds: quantile(lag, 0.5),
        sealLagP99Seconds: quantile(lag, 0.99),
        samples: waiting.length,
      };
    },
  };
}

export async function auditLockBench(ds: Dataset, seconds: number): Promise<AuditLockResult> {
  const connections = Number(process.env.BENCH_AUDIT_CONNECTIONS ?? 64);
  const saved = process.env.BENCH_CONNECTIONS;
  process.env.BENCH_CONNECTIONS = String(connections);
  const databaseUrl = ds.env.CARETRAIL_DATABASE_URL ?? '';
  const result: Partial<Record<AuditMode, AuditLockRun>> = {};
  try {
    for (const mode of AUDIT_MODES) {
      const server = await startCaretrail({
        ...ds.env,
        CARETRAIL_AUDIT_APPEND: mode,
        // Room for 64 concurrent units of work.
        CARETRAIL_PG_POOL_SIZE: '32',
      });
      try {
        await server.waitForLog(/audit trail verified/);
        const login = { email: 'vet@bench.test', password: BENCH_PASSWORD };
        const { token } = await post<{ token: string }>(
          server.baseUrl,
          '/api/v1/auth/login',
          login,
        );
        const env = sampleEnv(ds, token);
        const samples = sampler(databaseUrl);
        await samples.start();
        const chart = await measure(server.baseUrl, server.pid, 'chart', env, seconds);
        const create = await measure(server.baseUrl, server.pid, 'create', env, seconds);
        result[mode] = { chart, create, ...(await samples.stop()) };
      } finally {
        await server.stop();
      }
    }
  } finally {
    if (saved === undefined) delete process.env.BENCH_CONNECTIONS;
    else process.env.BENCH_CONNECTIONS = saved;
  }
  return { connections, ...(result as Record<AuditMode, AuditLockRun>) };
}
