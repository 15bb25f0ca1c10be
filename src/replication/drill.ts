// `caretrail dr drill`: rehearses losing the server. On a scratch folder it starts a server that
// replicates, drives writes (notes and uploads), kills it with SIGKILL at a random moment, treats
// its data folder as lost, restores from the replica alone onto a fresh folder, starts a server
// there, and measures what an operator needs to know: acknowledged writes missing (the RPO, in
// writes and seconds), seconds from the kill to a healthy restored server (the RTO), the audit
// trail and the files verified. The result is kept in the data folder (last-drill.json) for the
// Backups page and printed; the exit code is 1 when an objective is missed.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { ConfigError, type Config } from '../config.js';
import { setUpClinic, sleep, startLoad, tally, waitReady } from './drill-workload.js';

export const LAST_DRILL_FILE = 'last-drill.json';

export interface DrillResult {
  engine: 'sqlite' | 'postgres';
  replica: string;
  mode: 'async' | 'sync';
  startedAt: string;
  loadSeconds: number;
  acknowledged: { notes: number; documents: number };
  missing: { notes: number; documents: number };
  /** Seconds of acknowledged writes lost: from the oldest missing one to the kill (0: none). */
  rpoSeconds: number;
  /** Seconds from the kill to a restored server answering /readyz 200. */
  rtoSeconds: number;
  restoreSeconds: number;
  restoredTo: string | null;
  audit: { ok: boolean; message: string };
  files: { checked: number; ok: number; bad: number };
  objectives: { rpoSeconds: number; rtoSeconds: number };
  passed: boolean;
  problems: string[];
}

export function parseDuration(raw: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim());
  if (!m) throw new ConfigError(`${flag} must be a duration such as 500ms, 1s or 2m.`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  });
}

/** What a child process printed last (its output is always read, so it never blocks on it). */
const tails = new WeakMap<ChildProcess, { stdout: string; stderr: string }>();

/** Runs this same CLI (built or through tsx) with `args`. */
function cli(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const entry = process.argv[1] ?? 'dist/cli/main.js';
  const child = spawn(process.execPath, [...process.execArgv, entry, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = { stdout: '', stderr: '' };
  tails.set(child, tail);
  child.stdout.on('data', (d: Buffer) => {
    tail.stdout = (tail.stdout + d.toString()).slice(-20_000);
  });
  child.stderr.on('data', (d: Buffer) => {
    tail.stderr = (tail.stderr + d.toString()).slice(-20_000);
  });
  return child;
}

const printed = (child: ChildProcess) => tails.get(child) ?? { stdout: '', stderr: '' };

async function run(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = cli(args, env);
  const code = await exited(child);
  return { code, ...printed(child) };
}

function exited(child: ChildProcess): Promise<number> {
  // Killed by a signal, a child has no exit code but a signal code.
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve(child.exitCode ?? 1);
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      resolve(code ?? 1);
    });
  });
}

export async function drillCommand(config: Config, flags: Record<string, string>): Promise<number> {
  const seconds = flags.seconds ? parseDuration(flags.seconds, '--seconds') : 10;
  const rpo = parseDuration(flags.rpo ?? '1s', '--rpo');
  const rto = parseDuration(flags.rto ?? '60s', '--rto');
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let result: DrillResult;
  if (config.databaseUrl.startsWith('postgres')) {
    // A private PostgreSQL cluster with pgBackRest archiving and a WAL receiver (archiving alone
    // ships a segment per archive_timeout and misses a 1 s objective about half the time).
    const { pgDrill } = await import('./postgres/drill.js');
    result = await pgDrill({
      workDir: flags.dir ?? null,
      seconds,
      rpoSeconds: rpo,
      rtoSeconds: rto,
      sync: flags.sync === 'true',
      receiver: true,
      log,
    });
  } else {
    result = await sqliteDrill({
      workDir: flags.dir ?? null,
      replica: flags.replica ?? null,
      sync: flags.sync === 'true',
      seconds,
      rpoSeconds: rpo,
      rtoSeconds: rto,
      log,
    });
  }
  fs.mkdirSync(config.dataDir, { recursive: true });
  fs.writeFileSync(path.join(config.dataDir, LAST_DRILL_FILE), JSON.stringify(result, null, 2));
  printDrill(result);
  return result.passed ? 0 : 1;
}

export function printDrill(r: DrillResult): void {
  const line = (s: string) => process.stdout.write(`${s}\n`);
  line(`Disaster-recovery drill (${r.engine}, ${r.mode}, replica ${r.replica}), ${r.startedAt}`);
  line(
    `  load: ${r.loadSeconds.toFixed(1)} s until SIGKILL; acknowledged ${String(r.acknowledged.notes)} notes, ${String(r.acknowledged.documents)} uploads`,
  );
  line(
    `  RPO: ${String(r.missing.notes + r.missing.documents)} acknowledged writes missing (${String(r.missing.notes)} notes, ${String(r.missing.documents)} uploads), ${r.rpoSeconds.toFixed(2)} s of writes lost (objective ${String(r.objectives.rpoSeconds)} s)`,
  );
  line(
    `  RTO: ${r.rtoSeconds.toFixed(1)} s from the kill to a healthy restored server (restore ${r.restoreSeconds.toFixed(1)} s; objective ${String(r.objectives.rtoSeconds)} s)`,
  );
  line(`  restored to: ${r.restoredTo ?? 'unknown'}`);
  line(`  audit trail: ${r.audit.message}`);
  line(
    `  files: ${String(r.files.ok)} of ${String(r.files.checked)} restored uploads read back with their SHA-256${r.files.bad ? `, ${String(r.files.bad)} BAD` : ''}`,
  );
  for (const p of r.problems) line(`  PROBLEM: ${p}`);
  line(r.passed ? 'PASSED: within the objectives.' : 'FAILED: see above.');
}

export interface SqliteDrillOptions {
  workDir: string | null;
  replica: string | null;
  sync: boolean;
  seconds: number;
  rpoSeconds: number;
  rtoSeconds: number;
  log: (line: string) => void;
}

export async function sqliteDrill(options: SqliteDrillOptions): Promise<DrillResult> {
  const work = options.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-drill-'));
  const keep = options.workDir !== null;
  const primary = path.join(work, 'primary');
  const restored = path.join(work, 'restored');
  for (const dir of [primary, restored]) fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(primary, { recursive: true });
  const replica = options.replica ?? `file:${path.join(work, 'replica')}`;
  if (options.replica === null)
    fs.rmSync(path.join(work, 'replica'), { recursive: true, force: true });
  const blobReplica = `file:${path.join(work, 'blob-replica')}`;
  fs.rmSync(path.join(work, 'blob-replica'), { recursive: true, force: true });
  // The keys an operator escrows: here only in this process's memory, never beside the replica.
  const masterKey = randomBytes(32).toString('base64');
  const signingKey = generateKeyPairSync('ed25519')
    .privateKey.export({ format: 'pem', type: 'pkcs8' })
    .toString();
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    CARETRAIL_MASTER_KEY: masterKey,
    CARETRAIL_AUDIT_SIGNING_KEY: signingKey,
    CARETRAIL_LOG_LEVEL: 'warn',
    CARETRAIL_DATABASE_URL: '',
    CARETRAIL_BLOB_URL: '',
  };
  const port = await freePort();
  const primaryEnv = {
    ...baseEnv,
    CARETRAIL_DATA_DIR: primary,
    CARETRAIL_PORT: String(port),
    CARETRAIL_REPLICA_URL: replica,
    CARETRAIL_REPLICA_SYNC: options.sync ? 'true' : 'false',
    CARETRAIL_BLOB_REPLICA_URL: blobReplica,
  };
  const base = `http://127.0.0.1:${String(port)}`;
  const startedAt = new Date().toISOString();
  const problems: string[] = [];

  options.log(`drill: starting a replicating server on ${base} (replica ${replica})`);
  const server = cli(['serve'], primaryEnv);
  const gone = (child: ChildProcess) => () =>
    child.exitCode !== null || child.signalCode !== null ? 'the server exited' : null;
  let killAt = 0;
  try {
    await waitReady(base, gone(server), 30_000);
    const clinic = await setUpClinic(base, work, async (args) => {
      const made = await run(args, primaryEnv);
      return { ok: made.code === 0, output: made.stderr };
    });
    const writers = startLoad(base, clinic.token, clinic.patientId);
    const { acks } = writers;
    const loadStarted = Date.now();
    await sleep(options.seconds * 1000 * (0.5 + Math.random() * 0.5));
    server.kill('SIGKILL');
    killAt = Date.now();
    options.log(`drill: SIGKILL after ${((killAt - loadStarted) / 1000).toFixed(1)} s`);
    await writers.stop();
    await exited(server);

    // The data folder is lost: restore from the replica alone.
    const loadSeconds = (killAt - loadStarted) / 1000;
    const restoreStarted = Date.now();
    const restore = await run(['restore', '--from', replica, '--to', restored], {
      ...baseEnv,
      CARETRAIL_DATA_DIR: restored,
      CARETRAIL_BLOB_REPLICA_URL: blobReplica,
    });
    const restoreSeconds = (Date.now() - restoreStarted) / 1000;
    const report = readRestoreReport(restored);
    if (!report)
      problems.push(
        `restore exited ${String(restore.code)}: ${(restore.stderr || restore.stdout).trim().split('\n').slice(-3).join(' ')}`,
      );
    else if (report.database.stoppedAt)
      problems.push(`the restore stopped early at ${report.database.stoppedAt.segment}`);
    // Files the replica never received (uploads in the last moment): lost writes, counted in the
    // RPO below; files it holds damaged: a failure of their own.
    const lostFiles = new Set((report?.blobs?.missingBlobs ?? []).map((b) => b.documentId ?? ''));
    const restoredPort = await freePort();
    const restoredBase = `http://127.0.0.1:${String(restoredPort)}`;
    const second = cli(['serve'], {
      ...baseEnv,
      CARETRAIL_DATA_DIR: restored,
      CARETRAIL_PORT: String(restoredPort),
    });
    try {
      await waitReady(restoredBase, gone(second), 120_000);
      const rtoSeconds = (Date.now() - killAt) / 1000;
      const { missing, rpoSeconds, files } = await tally({
        acks,
        killAt,
        present: presentKeys(path.join(restored, 'caretrail.db')),
        lostFiles,
        base: restoredBase,
        clinic,
        rtoSeconds,
        objectives: { rpoSeconds: options.rpoSeconds, rtoSeconds: options.rtoSeconds },
        problems,
      });
      const result: DrillResult = {
        engine: 'sqlite',
        replica: replica.split('?')[0] ?? replica,
        mode: options.sync ? 'sync' : 'async',
        startedAt,
        loadSeconds,
        acknowledged: {
          notes: acks.filter((a) => a.kind === 'note').length,
          documents: acks.filter((a) => a.kind === 'document').length,
        },
        missing,
        rpoSeconds,
        rtoSeconds,
        restoreSeconds,
        restoredTo: report?.database.restoredTo ?? null,
        audit: report?.audit ?? { ok: false, message: 'no restore report' },
        files,
        objectives: { rpoSeconds: options.rpoSeconds, rtoSeconds: options.rtoSeconds },
        passed: false,
        problems,
      };
      if (!result.audit.ok) problems.push('the restored audit trail did not verify');
      result.passed = problems.length === 0;
      return result;
    } finally {
      second.kill('SIGTERM');
      await exited(second);
    }
  } catch (err) {
    throw new Error(
      `drill failed: ${err instanceof Error ? err.message : String(err)}${lastWords(server)}`,
    );
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    if (!keep) fs.rmSync(work, { recursive: true, force: true });
  }
}

function lastWords(child: ChildProcess): string {
  const { stdout, stderr } = printed(child);
  const text = `${stderr}\n${stdout}`.trim();
  return text ? ` (server said: ${text.split('\n').slice(-2).join(' ')})` : '';
}

interface RestoreReportFile {
  database: { restoredTo: string; stoppedAt: { segment: string } | null };
  audit: { ok: boolean; message: string };
  blobs: { missingBlobs: { documentId?: string }[]; bad: number } | null;
}

function readRestoreReport(dir: string): RestoreReportFile | null {
  try {
    return JSON.parse(
      fs.readFileSync(path.join(dir, 'restore-report.json'), 'utf8'),
    ) as RestoreReportFile;
  } catch {
    return null;
  }
}

function presentKeys(file: string): { notes: Set<string>; documents: Set<string> } {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    const notes = db.prepare('select body from notes').pluck().all() as string[];
    const documents = db.prepare('select title from documents').pluck().all() as string[];
    return { notes: new Set(notes), documents: new Set(documents) };
  } finally {
    db.close();
  }
}
