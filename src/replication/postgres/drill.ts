// The disaster-recovery drill on PostgreSQL (`caretrail dr drill` with a postgres:// database):
// in a scratch folder, a private PostgreSQL cluster archiving into a pgBackRest repository (and,
// for RPO 0, the synchronous WAL receiver), a built Caretrail server writing notes and uploads
// under load; then the machine is lost (SIGKILL of Caretrail, an immediate stop of PostgreSQL,
// its data directory deleted), the database is restored from the repository alone (plus the
// receiver's spool) into a fresh directory, PostgreSQL and Caretrail are started on it, and the
// drill measures what an operator must know: acknowledged writes missing (RPO), seconds from the
// kill to a healthy restored server (RTO), and `caretrail audit verify` on the restored data.
// Uploads live in the file store, which in production is off the machine (S3): here a folder
// beside the repository that survives the loss.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createKeyring, parseMasterKeys } from '../../blobs/master-key.js';
import { loadConfig } from '../../config.js';
import { openDatabase } from '../../store/database.js';
import { restoreBlobs, type RestoreBlobsReport } from '../blobs/index.js';
import type { DrillResult } from '../drill.js';
import { setUpClinic, sleep, startLoad, tally, waitReady } from '../drill-workload.js';
import { pgBackup } from './backup.js';
import { createPrivateCluster, freePort, localCluster, type LocalCluster } from './cluster.js';
import { PgReplicationError } from './errors.js';
import { pgRestore, type PgRestoreReport } from './restore.js';
import { pgReplicateSetup } from './setup.js';
import { pgReceiveWal, type PgReceiver } from './wal-receiver.js';

export interface PgDrillOptions {
  /** Scratch folder (kept afterwards for inspection); null: a temporary one, removed. */
  workDir: string | null;
  /** Seconds of load before the machine is lost (the kill falls in the last quarter of it). */
  seconds: number;
  /** Objectives the drill passes or fails on. */
  rpoSeconds: number;
  rtoSeconds: number;
  /** Synchronous WAL receiver (RPO 0); default: when the RPO objective is 0. */
  sync?: boolean;
  /** Stream WAL into a spool with pg_receivewal even when asynchronous (default: with sync). */
  receiver?: boolean;
  log: (line: string) => void;
  /** The built CLI (npm run build:server); default dist/cli/main.js of this checkout. */
  cliPath?: string;
}

export interface PgDrillResult extends DrillResult {
  engine: 'postgres';
  postgres: {
    /** Seconds the full backup before the load took. */
    backupSeconds: number;
    restore: PgRestoreReport | null;
    /** The restored data directory (kept with workDir). */
    dataDirectory: string;
    /** A WAL receiver streamed into a spool, used by the restore. */
    receiver: boolean;
  };
}

function defaultCli(): string {
  // src/replication/postgres/drill.ts or dist/replication/postgres/drill.js: dist/cli/main.js.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const built = path.resolve(here, '..', '..', 'cli', 'main.js');
  return fs.existsSync(built)
    ? built
    : path.resolve(here, '..', '..', '..', 'dist', 'cli', 'main.js');
}

interface Child {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** For waitReady: why the server cannot come up (it exited), or null. */
const exitedWith = (server: Child) => () =>
  server.child.exitCode !== null || server.child.signalCode !== null
    ? `the Caretrail server exited: ${server.output().trim().split('\n').slice(-2).join(' ')}`
    : null;

function node(cli: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      resolve(code);
    });
  });
  return { child, output: () => out, exited };
}

export async function pgDrill(options: PgDrillOptions): Promise<PgDrillResult> {
  const cli = options.cliPath ?? defaultCli();
  if (!fs.existsSync(cli))
    throw new PgReplicationError(
      `${cli} is missing: build the server first (npm run build:server)`,
    );
  const sync = options.sync ?? options.rpoSeconds === 0;
  const streaming = sync || options.receiver === true;
  const keep = options.workDir !== null;
  const work = path.resolve(
    options.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-pgdrill-')),
  );
  fs.mkdirSync(work, { recursive: true });
  fs.chmodSync(work, 0o755);
  const part = (name: string) => path.join(work, name);
  for (const name of [
    'pg',
    'repository',
    'pgbackrest',
    'spool',
    'app',
    'app-restored',
    'files',
    'blob-replica',
    'files-restored',
    'restored',
  ])
    fs.rmSync(part(name), { recursive: true, force: true });
  const startedAt = new Date().toISOString();
  const problems: string[] = [];
  const log = options.log;

  // The keys an operator escrows: only in this process and its children, never in the repository.
  const masterKey = randomBytes(32).toString('base64');
  const signingKey = generateKeyPairSync('ed25519')
    .privateKey.export({ format: 'pem', type: 'pkcs8' })
    .toString();

  let cluster: LocalCluster | null = null;
  let restored: LocalCluster | null = null;
  let receiver: PgReceiver | null = null;
  let server: Child | null = null;
  let second: Child | null = null;
  try {
    cluster = await createPrivateCluster({ dir: part('pg') });
    await cluster.query('create database caretrail');
    const config = loadConfig({
      CARETRAIL_DATABASE_URL: cluster.url('caretrail'),
      CARETRAIL_REPLICA_URL: `file:${part('repository')}`,
      CARETRAIL_REPLICA_SYNC: sync ? 'true' : 'false',
      CARETRAIL_MASTER_KEY: masterKey,
      CARETRAIL_DATA_DIR: part('app'),
    });
    const files = {
      configFile: path.join(part('pgbackrest'), 'pgbackrest.conf'),
      stateDir: part('pgbackrest'),
    };
    log(`drill: PostgreSQL on port ${String(cluster.port)}, repository ${part('repository')}`);
    if ((await pgReplicateSetup(config, { ...files, apply: true })).restartNeeded) {
      await cluster.stop();
      await cluster.start();
    }
    const setup = await pgReplicateSetup(config, files);
    if (!setup.checked && !setup.waitingForReceiver)
      throw new PgReplicationError('setup did not get archiving to work');
    const backupStarted = Date.now();
    await pgBackup(config, { ...files, type: 'full' });
    const backupSeconds = (Date.now() - backupStarted) / 1000;
    if (streaming) {
      receiver = await pgReceiveWal(config, { ...files, spool: part('spool'), synchronous: sync });
      for (let i = 0; i < 100 && !(await receiverConnected(cluster)); i++) await sleep(100);
      if (!(await receiverConnected(cluster)))
        throw new PgReplicationError('the WAL receiver did not connect');
      if (sync) await pgReplicateSetup(config, { ...files, apply: true });
      log(`drill: ${sync ? 'synchronous' : 'asynchronous'} WAL receiver connected`);
    }

    const port = await freePort();
    const base = `http://127.0.0.1:${String(port)}`;
    // The primary replicates as a clinic's would: the database watched (and in synchronous mode
    // gated on the WAL receiver), every file copied to the blob replica, which survives the loss.
    const appEnv = (dataDir: string, httpPort: number, primary: boolean): NodeJS.ProcessEnv => ({
      ...process.env,
      CARETRAIL_DATABASE_URL: config.databaseUrl,
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_BLOB_URL: `file:${part(primary ? 'files' : 'files-restored')}`,
      CARETRAIL_MASTER_KEY: masterKey,
      CARETRAIL_AUDIT_SIGNING_KEY: signingKey,
      CARETRAIL_PORT: String(httpPort),
      CARETRAIL_LOG_LEVEL: 'warn',
      CARETRAIL_REPLICA_URL: primary ? config.replicaUrl : '',
      CARETRAIL_REPLICA_SYNC: primary && sync ? 'true' : '',
      CARETRAIL_BLOB_REPLICA_URL: primary ? `file:${part('blob-replica')}` : '',
    });
    const env = appEnv(part('app'), port, true);
    server = node(cli, ['serve'], env);
    await waitReady(base, exitedWith(server), 60_000);
    const people = await setUpClinic(base, work, async (args) => {
      const made = node(cli, args, env);
      return { ok: (await made.exited) === 0, output: made.output() };
    });
    log(`drill: Caretrail on ${base}; load for up to ${String(options.seconds)} s`);
    const writers = startLoad(base, people.token, people.patientId);
    const loadStarted = Date.now();
    await sleep(options.seconds * 1000 * (0.75 + Math.random() * 0.25));

    // The machine is lost: the application and the database die at once, its disk with them.
    server.child.kill('SIGKILL');
    await cluster.stop('immediate');
    const killAt = Date.now();
    const loadSeconds = (killAt - loadStarted) / 1000;
    await writers.stop();
    await server.exited;
    for (const lost of ['pg', 'app', 'files'])
      fs.rmSync(part(lost), { recursive: true, force: true });
    log(`drill: machine lost after ${loadSeconds.toFixed(1)} s of load; restoring`);
    // The receiver runs elsewhere and survives; it is stopped so its spool is final.
    await receiver?.stop();

    const restoreStarted = Date.now();
    const dataDirectory = path.join(part('restored'), 'data');
    fs.mkdirSync(part('restored'), { recursive: true });
    fs.chmodSync(part('restored'), 0o755);
    const report = await pgRestore(config, {
      to: dataDirectory,
      port: cluster.port,
      ...(streaming ? { spool: part('spool') } : {}),
      log,
    });
    restored = localCluster({
      dataDir: dataDirectory,
      port: cluster.port,
      socketDir: '/var/run/postgresql',
      user: cluster.user,
      bin: cluster.bin,
      logFile: '',
    });
    const blobs = await restoreFilesOf(config.databaseUrl, {
      from: `file:${part('blob-replica')}`,
      to: `file:${part('files-restored')}`,
      masterKey,
    });
    log(
      `drill: ${String(blobs.verified)} files restored from the blob replica${blobs.missing ? `, ${String(blobs.missing)} never reached it` : ''}`,
    );
    if (blobs.bad > 0) problems.push(`${String(blobs.bad)} files are damaged on the blob replica`);
    const restoreSeconds = (Date.now() - restoreStarted) / 1000;
    const port2 = await freePort();
    const base2 = `http://127.0.0.1:${String(port2)}`;
    const env2 = appEnv(part('app-restored'), port2, false);
    second = node(cli, ['serve'], env2);
    await waitReady(base2, exitedWith(second), 120_000);
    const rtoSeconds = (Date.now() - killAt) / 1000;
    log(`drill: restored server healthy ${rtoSeconds.toFixed(1)} s after the kill`);

    // What came back.
    const present = await presentKeys(config.databaseUrl);
    const {
      missing,
      rpoSeconds,
      files: files2,
    } = await tally({
      acks: writers.acks,
      killAt,
      present,
      // Uploads whose file never reached the replica are lost writes, counted in the RPO.
      lostFiles: new Set(blobs.missingBlobs.map((b) => ('documentId' in b ? b.documentId : ''))),
      base: base2,
      clinic: people,
      rtoSeconds,
      objectives: { rpoSeconds: options.rpoSeconds, rtoSeconds: options.rtoSeconds },
      problems,
    });
    const verify = node(cli, ['audit', 'verify'], env2);
    const auditCode = await verify.exited;
    // The chain's verdict line (an "Unsealed tail: …" line follows it on PostgreSQL).
    const lines = verify.output().trim().split('\n');
    const verdict = lines.find((l) => l.startsWith('Audit trail ')) ?? lines.pop() ?? '';
    const audit = { ok: auditCode === 0, message: verdict };

    if (!audit.ok) problems.push('the restored audit trail did not verify');
    return {
      engine: 'postgres',
      replica: `file:${part('repository')}`,
      mode: sync ? 'sync' : 'async',
      startedAt,
      loadSeconds,
      acknowledged: {
        notes: writers.acks.filter((a) => a.kind === 'note').length,
        documents: writers.acks.filter((a) => a.kind === 'document').length,
      },
      missing,
      rpoSeconds,
      rtoSeconds,
      restoreSeconds,
      restoredTo: report.restoredTo,
      audit,
      files: files2,
      objectives: { rpoSeconds: options.rpoSeconds, rtoSeconds: options.rtoSeconds },
      passed: problems.length === 0,
      problems,
      postgres: { backupSeconds, restore: report, dataDirectory, receiver: streaming },
    };
  } finally {
    if (second) {
      second.child.kill('SIGTERM');
      await second.exited;
    }
    if (server && server.child.exitCode === null && server.child.signalCode === null)
      server.child.kill('SIGKILL');
    await receiver?.stop().catch(() => undefined);
    await restored?.stop('fast').catch(() => undefined);
    await cluster?.stop('immediate').catch(() => undefined);
    if (!keep) fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Every file the restored database references, from the blob replica into a fresh store. */
async function restoreFilesOf(
  databaseUrl: string,
  options: { from: string; to: string; masterKey: string },
): Promise<RestoreBlobsReport> {
  const db = await openDatabase(databaseUrl, { pgPoolSize: 2 });
  try {
    return await restoreBlobs({
      from: options.from,
      to: options.to,
      db,
      keyring: createKeyring(parseMasterKeys(options.masterKey)),
    });
  } finally {
    await db.close();
  }
}

async function receiverConnected(cluster: LocalCluster): Promise<boolean> {
  const out = await cluster.query(
    "select count(*) from pg_stat_replication where application_name = 'caretrail_receivewal'",
  );
  return Number(out.trim()) > 0;
}

async function presentKeys(
  databaseUrl: string,
): Promise<{ notes: Set<string>; documents: Set<string> }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const notes = await client.query<{ body: string }>('select body from notes');
    const documents = await client.query<{ title: string }>('select title from documents');
    return {
      notes: new Set(notes.rows.map((r) => r.body)),
      documents: new Set(documents.rows.map((r) => r.title)),
    };
  } finally {
    await client.end();
  }
}
