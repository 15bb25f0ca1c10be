// Audit benchmarks: audited chart reads against the same route with auditing off (same run),
// verification speed over a million events, and the memory an export of them needs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { loadAuditSigner } from '../src/audit-signing-key.js';
import { loadConfig } from '../src/config.js';
import { chainHash, eventHash, GENESIS_CHAIN, type AuditEvent } from '../src/domain/audit.js';
import { createLogger } from '../src/log.js';
import { servicesFor } from '../src/server.js';
import { openDatabase } from '../src/store/database.js';
import { startServer } from '../test/helpers/process.js';
import { clinicWithPatient, measureRate } from './lib.js';

export async function auditedReadBench(options: {
  seconds: number;
  concurrency: number;
}): Promise<{ audited: number; unaudited: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-bench-read-'));
  const env = {
    CARETRAIL_DATA_DIR: dir,
    CARETRAIL_DATABASE_URL: `sqlite:${path.join(dir, 'caretrail.db')}`,
    CARETRAIL_LOGIN_IP_MAX_FAILURES: '100000',
    CARETRAIL_ALERT_DISTINCT_PATIENTS: '100000',
  };
  const rates = { audited: 0, unaudited: 0 };
  try {
    let clinic: { token: string; patientId: string } | undefined;
    for (const mode of ['unaudited', 'audited'] as const) {
      const server = await startServer(
        { ...env, BENCH_UNAUDITED: mode === 'unaudited' ? '1' : '0' },
        ['bench/read-server.ts'],
      );
      try {
        clinic ??= await clinicWithPatient(server, env, dir);
        rates[mode] = await measureRate(
          server,
          { method: 'GET', path: `/api/v1/patients/${clinic.patientId}`, token: clinic.token },
          200,
          options,
        );
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
    }
    return rates;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes `count` chained audit events straight into a fresh SQLite database. */
export async function seedEvents(file: string, count: number): Promise<void> {
  const db = await openDatabase(`sqlite:${file}`);
  await db.migrate();
  await db.close();
  const raw = new BetterSqlite3(file);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL'); // seeding only; the benchmark measures reading
  const insert = raw.prepare(
    `insert into audit_events (seq, id, occurred_at, action, type, outcome, actor_user_id, actor_role, actor_org_id, actor_ip, actor_user_agent, patient_id, entity_type, entity_id, entity_version, purpose, request_id, detail, event_hash, chain_hash)
     values (@seq, @id, @occurredAt, @action, @type, @outcome, @userId, @role, @org, @ip, @ua, @patientId, 'Patient', @patientId, 1, null, @requestId, null, @hash, @chain)`,
  );
  let chain = GENESIS_CHAIN;
  // Checkpoints every 10,000 events, signed with the data folder's key, as the server would.
  const signer = loadAuditSigner(path.dirname(file), undefined);
  const insertCheckpoint = raw.prepare(
    'insert into audit_checkpoints (seq, chain_hash, created_at, key_id, signature) values (?, ?, ?, ?, ?)',
  );
  const start = Date.UTC(2026, 0, 1);
  const batch = raw.transaction((from: number, to: number) => {
    for (let seq = from; seq <= to; seq++) {
      const patientId = `00000000-0000-7000-8000-${String(seq % 5000).padStart(12, '0')}`;
      const event: AuditEvent = {
        seq,
        id: `01000000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
        occurredAt: new Date(start + seq * 100).toISOString(),
        action: 'R',
        type: 'patient.read',
        outcome: 'success',
        actor: {
          userId: 'bench-user',
          role: 'clinician',
          organizationId: 'bench-org',
          ip: '127.0.0.1',
          userAgent: 'bench',
        },
        patientId,
        entity: { type: 'Patient', id: patientId, version: 1 },
        purpose: null,
        requestId: `req-${seq}`,
        detail: null,
      };
      const hash = eventHash(event);
      chain = chainHash(chain, hash);
      if (seq % 10_000 === 0) {
        const c = signer.sign({ seq, chain, createdAt: event.occurredAt });
        checkpointsToWrite.push([c.seq, c.chain, c.createdAt, c.keyId, c.signature]);
      }
      insert.run({
        seq,
        id: event.id,
        occurredAt: event.occurredAt,
        action: 'R',
        type: event.type,
        outcome: 'success',
        userId: 'bench-user',
        role: 'clinician',
        org: 'bench-org',
        ip: '127.0.0.1',
        ua: 'bench',
        patientId,
        requestId: event.requestId,
        hash,
        chain,
      });
    }
  });
  const checkpointsToWrite: [number, string, string, string, string][] = [];
  for (let from = 1; from <= count; from += 50_000) batch(from, Math.min(count, from + 49_999));
  for (const c of checkpointsToWrite) insertCheckpoint.run(...c);
  raw.prepare('update audit_head set seq = ?, chain_hash = ? where id = 1').run(count, chain);
  raw.close();
}

function rssOf(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0; // the process has exited
  }
}

/**
 * Runs `caretrail audit export --format csv` as its own process, counting the CSV rows it writes
 * and sampling its resident memory: growth is measured from when the first row arrives (start-up
 * and module loading are not the export's doing) to the peak.
 */
async function exportInChildProcess(
  env: Record<string, string>,
): Promise<{ exportRssGrowthMb: number; exportSeconds: number; exported: number }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'audit', 'export', '--format', 'csv'],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
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
    for (const byte of chunk) if (byte === 10) lines++;
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(sampler);
  if (code !== 0) throw new Error(`audit export exited with ${code}`);
  return {
    exportRssGrowthMb: (peak - baseline) / 1024 / 1024,
    exportSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    exported: lines - 1,
  };
}

/** Wall time of `caretrail audit verify` from the built CLI (dist/), start-up included. */
async function cliVerifyInChildProcess(env: Record<string, string>): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, ['dist/cli/main.js', 'audit', 'verify'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`caretrail audit verify exited with ${code}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

export async function verifyAndExportBench(count: number): Promise<{
  eventsPerSecond: number;
  verifySeconds: number;
  cliVerifySeconds: number;
  exportRssGrowthMb: number;
  exportSeconds: number;
  exported: number;
}> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-bench-audit-'));
  try {
    const file = path.join(dir, 'caretrail.db');
    await seedEvents(file, count);
    const config = loadConfig({
      CARETRAIL_DATA_DIR: dir,
      CARETRAIL_DATABASE_URL: `sqlite:${file}`,
    });
    const db = await openDatabase(config.databaseUrl);
    try {
      const services = servicesFor(config, db, createLogger('warn'));
      const t0 = process.hrtime.bigint();
      const result = await services.auditTrail.verifyChain();
      const verifySeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (!result.ok || result.checked !== count)
        throw new Error(`verification failed: ${JSON.stringify(result)}`);

      const env = { CARETRAIL_DATA_DIR: dir, CARETRAIL_DATABASE_URL: `sqlite:${file}` };
      const cliVerifySeconds = await cliVerifyInChildProcess(env);
      const exported = await exportInChildProcess(env);
      return {
        eventsPerSecond: result.checked / verifySeconds,
        verifySeconds,
        cliVerifySeconds,
        ...exported,
      };
    } finally {
      await db.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
