// `npm run bench`: every scenario on both engines (seeded datasets, cached), each figure next to
// a baseline measured in the same run (bare Fastify, the raw disk) and next to its aim.
// BENCH_SCALE=full|small|tiny, BENCH_ENGINES=sqlite,postgres, BENCH_ONLY=chart,search-name,
// search-chip,create,mixed,audit,audit-lock,instances,documents,replication,mllp, BENCH_SECONDS (10), BENCH_REPEAT (1),
// BENCH_CONNECTIONS (50), BENCH_FILE_MB (100), BENCH_FILE_ROUNDS (1), BENCH_OUT (a JSON file for the figures).
import fs from 'node:fs';
import os from 'node:os';
import { auditBench, type AuditResults } from './audit.bench.js';
import { auditLockBench, type AuditLockResult } from './audit-lock.bench.js';
import { instancesBench, type InstancesRun } from './instances.bench.js';
import { dataset, type Engine } from './dataset.js';
import { documentsBench, type DocumentsBenchResult } from './documents.bench.js';
import { httpBench, SCENARIOS, type HttpResults, type Scenario } from './http.bench.js';
import { fsyncRate, machine } from './machine.js';
import { mllpBench } from './mllp.bench.js';
import { replicationBench, type ReplicationBenchResult } from './replication.bench.js';
import { SCALES } from './seed.js';
import type { WrkResult } from './wrk.js';

const scale = SCALES[process.env.BENCH_SCALE ?? 'full'];
if (!scale) throw new Error('BENCH_SCALE must be full, small or tiny');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const repeat = Number(process.env.BENCH_REPEAT ?? 1);
const engines = (process.env.BENCH_ENGINES ?? 'sqlite,postgres').split(',') as Engine[];
const only = process.env.BENCH_ONLY?.split(',');
const wanted = (name: string) => only === undefined || only.includes(name);
const scenarios = SCENARIOS.filter(wanted);
const out = (line = '') => process.stdout.write(`${line}\n`);

/** Aims on SQLite (PostgreSQL is measured only). */
const AIMS: Partial<Record<Scenario, { ratio?: number; p99?: number }>> = {
  chart: { ratio: 0.3, p99: 50 },
  create: { ratio: 0.25 },
  'search-name': { p99: 20 },
  'search-chip': { p99: 20 },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const spread = (xs: number[], f: (n: number) => string) =>
  xs.length > 1 ? ` (${f(Math.min(...xs))}–${f(Math.max(...xs))})` : '';
const n0 = (n: number) => n.toFixed(0);
const n2 = (n: number) => n.toFixed(2);
const n1 = (n: number) => n.toFixed(1);

function row(name: string, runs: WrkResult[], bare: number, engine: Engine): string {
  const rps = runs.map((r) => r.rps);
  const ratios = runs.map((r) => r.rps / bare);
  const p99 = runs.map((r) => r.p99Ms);
  const aim = AIMS[name as Scenario];
  const aims = [
    aim?.ratio !== undefined ? `ratio >= ${String(aim.ratio)}` : '',
    aim?.p99 !== undefined ? `p99 <= ${String(aim.p99)} ms` : '',
  ].filter(Boolean);
  const met =
    (aim?.ratio === undefined || median(ratios) >= aim.ratio) &&
    (aim?.p99 === undefined || median(p99) <= aim.p99);
  const verdict =
    aims.length === 0 ? '' : engine === 'sqlite' ? (met ? ' MET' : ' BELOW') : ' (measured only)';
  return [
    `  ${name.padEnd(12)} ${n0(median(rps)).padStart(6)} req/s${spread(rps, n0)}`,
    `ratio ${n2(median(ratios))}${spread(ratios, n2)}`,
    `p50 ${n1(median(runs.map((r) => r.p50Ms)))} ms`,
    `p99 ${n1(median(p99))} ms${spread(p99, n1)}`,
    `${n0(median(runs.map((r) => r.perCore)))} req/CPU-s`,
    aims.length > 0 ? `aim ${aims.join(', ')}${verdict}` : '',
  ].join('  ');
}

function printHttp(engine: Engine, r: HttpResults): void {
  const bare = median(r.bare.map((b) => b.rps));
  out(
    `HTTP under wrk (-t1 -c${process.env.BENCH_CONNECTIONS ?? '50'}, ${String(seconds)} s after a warm-up, ${String(repeat)} run(s): median (min–max))`,
  );
  out(row('bare Fastify', r.bare, bare, engine));
  for (const [name, runs] of Object.entries(r.scenarios)) out(row(name, runs, bare, engine));
}

function printAudit(a: AuditResults): void {
  out(
    `  caretrail audit verify: ${a.verified.toLocaleString('en')} events in ${n1(a.verifySeconds)} s (aim < 5 s for 1,000,000; start-up included)`,
  );
  out(
    `  caretrail audit export --format csv: ${a.exported.toLocaleString('en')} rows in ${n1(a.exportSeconds)} s, RSS growth ${n1(a.exportRssGrowthMb)} MB (aim < 5 s, < 100 MB)`,
  );
}

function printAuditLock(r: AuditLockResult): void {
  const before = r['head-lock'];
  const after = r.sealer;
  out(
    `  ${String(r.connections)} connections; head-lock = every unit of work locks the chain head (before), sealer = after:`,
  );
  for (const kind of ['chart', 'create'] as const) {
    const name = kind === 'chart' ? 'audited chart reads' : 'durable note creates';
    out(
      `  ${name.padEnd(21)} head-lock ${n0(before[kind].rps).padStart(5)}/s (p99 ${n1(before[kind].p99Ms)} ms, ${n0(before[kind].perCore)} req/CPU-s)  sealer ${n0(after[kind].rps).padStart(5)}/s (p99 ${n1(after[kind].p99Ms)} ms, ${n0(after[kind].perCore)} req/CPU-s)  ratio ${n2(after[kind].rps / before[kind].rps)}${kind === 'create' ? ' (aim >= 3)' : ''}`,
    );
  }
  out(
    `  backends waiting on a lock (pg_stat_activity, ${String(before.samples)}/${String(after.samples)} samples): head-lock ${n1(before.lockWaiting)} of ${n1(before.active)} active, sealer ${n1(after.lockWaiting)} of ${n1(after.active)} (aim 0)`,
  );
  out(
    `  sealing lag (oldest unsealed event): p50 ${n2(after.sealLagP50Seconds)} s, p99 ${n2(after.sealLagP99Seconds)} s (aim <= 1 s)`,
  );
}

function printInstances(runs: InstancesRun[]): void {
  for (const r of runs)
    out(
      `  ${String(r.instances)} instance(s): chart ${n0(r.chart.rps).padStart(5)}/s (p99 ${n1(r.chart.p99Ms)} ms, ${n0(r.chart.perCore)} req/CPU-s)  creates ${n0(r.create.rps).padStart(5)}/s (p99 ${n1(r.create.p99Ms)} ms, ${n0(r.create.perCore)} req/CPU-s)  waiting on a lock ${n1(r.lockWaiting)} of ${n1(r.active)} active`,
    );
}

function printDocuments(d: DocumentsBenchResult): void {
  const mb = (x: number) => `${n0(x)} MB/s`;
  const many = d.rounds.length > 1;
  out(
    `  ${String(d.megabytes)} MB file (curl; encrypted, fsync'd, SHA-256 checked)${many ? `, median of ${String(d.rounds.length)} rounds` : ''}:`,
  );
  out(
    `  upload ${mb(d.uploadMBps)} vs raw write+fsync ${mb(d.rawWriteMBps)}: ratio ${n2(d.uploadRatio)} (aim >= 0.5); server CPU ${n2(d.uploadCpuSeconds)} s`,
  );
  out(
    `  download ${mb(d.downloadMBps)} vs raw read ${mb(d.rawReadMBps)}: ratio ${n2(d.downloadRatio)} (aim >= 0.5); server CPU ${n2(d.downloadCpuSeconds)} s`,
  );
  out(
    `  server peak RSS growth: upload ${n1(d.uploadRssGrowthMb)} MB, download ${n1(d.downloadRssGrowthMb)} MB`,
  );
  if (many)
    for (const r of d.rounds)
      out(
        `    round: up ${mb(r.uploadMBps)} / raw ${mb(r.rawWriteMBps)} = ${n2(r.uploadRatio)}, down ${mb(r.downloadMBps)} / raw ${mb(r.rawReadMBps)} = ${n2(r.downloadRatio)}`,
      );
}

function printReplication(r: ReplicationBenchResult): void {
  const line = (name: string, w: WrkResult) =>
    `  ${name.padEnd(6)} ${n0(w.rps).padStart(6)} creates/s  ratio to off ${n2(w.rps / r.off.rps)}  p50 ${n1(w.p50Ms)} ms  p99 ${n1(w.p99Ms)} ms`;
  out('  durable note creates under wrk, replica a folder on the same disk:');
  out(line('off', r.off));
  out(line('async', r.async));
  out(line('sync', r.sync));
  out(
    `  replication lag during the async run: p50 ${n2(r.lagP50Seconds)} s, p99 ${n2(r.lagP99Seconds)} s (${String(r.lagSamples)} samples; aim RPO <= 1 s)`,
  );
  out(
    `  restore: ${n1(r.databaseBytes / 1e6)} MB database in ${n1(r.restoreSeconds)} s = ${n1(r.restoreSecondsPerGb)} s per GB (aim RTO <= 60 s for 1 GB)`,
  );
}

const report: Record<string, unknown> = { scale, seconds, repeat, machine: machine() };
out(`machine: ${machine()}`);
const fsyncs = fsyncRate(os.tmpdir());
report.fsyncPerSecond = fsyncs;
out(`disk: ${n0(fsyncs)} fsync'd SQLite commits/s (${os.tmpdir()})`);
out(
  `dataset: ${scale.name}: ${scale.patients.toLocaleString('en')} patients, ${scale.notes.toLocaleString('en')} notes, ${scale.events.toLocaleString('en')} audit events`,
);

for (const engine of engines) {
  out();
  out(`=== ${engine} ===`);
  const ds = await dataset(engine, scale);
  const results: Record<string, unknown> = {};
  try {
    if (scenarios.length > 0) {
      const r = await httpBench(ds, scenarios, { seconds, repeat });
      results.http = r;
      printHttp(engine, r);
    }
    if (wanted('audit')) {
      out('audit chain');
      const a = await auditBench(ds);
      results.audit = a;
      printAudit(a);
    }
    if (wanted('audit-lock') && engine === 'postgres') {
      out('audit appends on PostgreSQL: head lock vs sealer');
      const a = await auditLockBench(ds, seconds);
      results.auditLock = a;
      printAuditLock(a);
    }
    if (wanted('instances') && engine === 'postgres') {
      out('several instances behind nginx (PostgreSQL, wrk through nginx)');
      const r = await instancesBench(ds, seconds);
      results.instances = r;
      printInstances(r);
    }
    if (wanted('documents')) {
      out('documents');
      const d = await documentsBench(
        ds,
        Number(process.env.BENCH_FILE_MB ?? 100),
        Number(process.env.BENCH_FILE_ROUNDS ?? 1),
      );
      results.documents = d;
      printDocuments(d);
    }
    if (wanted('replication') && engine === 'sqlite') {
      out('replication (SQLite)');
      const r = await replicationBench(ds, seconds);
      results.replication = r;
      printReplication(r);
    }
  } finally {
    await ds.drop();
  }
  report[engine] = results;
}

if (wanted('mllp') && engines.includes('sqlite')) {
  const connections = Number(process.env.BENCH_MLLP_CONNECTIONS ?? 8);
  const m = await mllpBench({ seconds, connections });
  out();
  out(`HL7 v2 ORU^R01 over MLLP (SQLite, fresh data folder, ${String(connections)} connections)`);
  out(`  JSON webhook (baseline) ${n0(m.webhookPerSecond)} /s; MLLP ${n0(m.mllpPerSecond)} /s`);
  out(
    `  ratio ${n2(m.mllpPerSecond / m.webhookPerSecond)}; MLLP AA ${String(m.mllpAa)} of ${String(m.mllpSent)}, non-AA ${String(m.mllpNonAa)}`,
  );
  report.mllp = m;
}
if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(report, null, 2));
