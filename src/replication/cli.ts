// `caretrail replicate status` and `caretrail restore` on SQLite (PostgreSQL: postgres/).
import fs from 'node:fs';
import path from 'node:path';
import { loadAuditSigner, SIGNING_KEY_FILE } from '../audit-signing-key.js';
import {
  createKeyring,
  MASTER_KEY_FILE,
  parseMasterKeys,
  type Keyring,
} from '../blobs/master-key.js';
import { ConfigError, type Config } from '../config.js';
import { systemClock } from '../domain/clock.js';
import { createLogger } from '../log.js';
import { auditTrailSettingsOf, createAuditTrailService } from '../services/audit-trail/index.js';
import { openDatabase } from '../store/database.js';
import { createVault } from '../blobs/vault.js';
import { openBlobStore } from '../blobs/index.js';
import { openReplicaDestination } from './destination.js';
import { STATUS_FILE } from './index.js';
import { RestoreError, restoreSqlite, type RestoreReport } from './restore.js';
import { anchorShippingStatus } from './anchors/index.js';
import { blobReplicationStatus } from './blobs/index.js';
import { restoreBlobs, type RestoreBlobsReport } from './blobs/restore-blobs.js';
import { listSnapshots, type ReplicationStatus } from './sqlite-replicator.js';

const out = (line: string) => process.stdout.write(`${line}\n`);

/** The replica URL of a command: --from/--replica, else CARETRAIL_REPLICA_URL. */
function replicaUrlOf(config: Config, given: string | undefined): string {
  const url = given ?? config.replicaUrl;
  if (url === '')
    throw new ConfigError('No replica: set CARETRAIL_REPLICA_URL or pass --from file:/… | s3://…');
  if (!/^(file:|s3:\/\/)/.test(url))
    throw new ConfigError('The replica must be file:/path/to/folder or s3://bucket/prefix?…');
  return url.startsWith('file:') ? `file:${path.resolve(url.slice(5))}` : url;
}

/**
 * The keys a restore needs, never the replica's neighbours: CARETRAIL_MASTER_KEY (and
 * CARETRAIL_AUDIT_SIGNING_KEY), or `--key-dir`, a folder holding the escrowed copies of the data
 * folder's `master-keys` (and `audit-signing-key.pem`).
 */
export function restoreKeys(
  config: Config,
  keyDir: string | undefined,
): { keyring: Keyring; masterFile: string | null; signingFile: string | null } {
  if (config.masterKey !== '') {
    const signing = keyDir ? path.join(keyDir, SIGNING_KEY_FILE) : null;
    return {
      keyring: createKeyring(parseMasterKeys(config.masterKey)),
      masterFile: null,
      signingFile: signing && fs.existsSync(signing) ? signing : null,
    };
  }
  if (keyDir === undefined)
    throw new ConfigError(
      'A restore needs the master key the replica was sealed with: set CARETRAIL_MASTER_KEY, or pass --key-dir FOLDER holding the escrowed master-keys file (see docs/DISASTER-RECOVERY.md).',
    );
  const masterFile = path.join(keyDir, MASTER_KEY_FILE);
  let text: string;
  try {
    text = fs.readFileSync(masterFile, 'utf8');
  } catch {
    throw new ConfigError(`Cannot read ${masterFile} (the escrowed master-keys file).`);
  }
  const signing = path.join(keyDir, SIGNING_KEY_FILE);
  return {
    keyring: createKeyring(parseMasterKeys(text)),
    masterFile,
    signingFile: fs.existsSync(signing) ? signing : null,
  };
}

function parseAt(raw: string | undefined): Date | undefined {
  if (raw === undefined) return undefined;
  const at = new Date(raw);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(raw) || Number.isNaN(at.getTime()))
    throw new ConfigError('--at must be an ISO 8601 time, e.g. 2026-12-04T10:15:30Z.');
  return at;
}

export interface RestoreOutcome {
  database: RestoreReport;
  audit: { ok: boolean; checked: number; message: string };
  seconds: number;
}

/** `caretrail restore --from URL --to DIR [--at T] [--force] [--key-dir DIR]` (SQLite). */
export async function restoreCommand(
  config: Config,
  flags: Record<string, string>,
): Promise<number> {
  const started = Date.now();
  const url = replicaUrlOf(config, flags.from);
  if (flags.to === undefined)
    throw new ConfigError('restore needs --to FOLDER (a new data folder).');
  const to = path.resolve(flags.to);
  const at = parseAt(flags.at);
  const force = flags.force === 'true';
  if (!force && fs.existsSync(to) && fs.readdirSync(to).length > 0)
    throw new ConfigError(`${to} is not empty; restore into a new folder, or pass --force.`);
  const keys = restoreKeys(config, flags['key-dir']);
  const destination = openReplicaDestination(url);
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  let database: RestoreReport;
  try {
    database = await restoreSqlite({
      destination,
      keyring: keys.keyring,
      to: path.join(to, 'caretrail.db'),
      ...(at ? { at } : {}),
      force,
    });
  } catch (err) {
    if (err instanceof RestoreError) throw new ConfigError(`restore: ${err.message}`);
    throw err;
  }
  // The escrowed keys go beside the restored database, so `caretrail serve --data-dir` runs on it.
  for (const file of [keys.masterFile, keys.signingFile]) {
    if (file) fs.copyFileSync(file, path.join(to, path.basename(file)));
    if (file) fs.chmodSync(path.join(to, path.basename(file)), 0o600);
  }
  out(`Restored the database from ${destination.description} into ${to}:`);
  out(
    `  snapshot of ${database.snapshotAt} (generation ${database.generation}), then ${String(database.segments)} log segments holding ${String(database.commits)} transactions`,
  );
  out(`  restored to ${database.restoredTo}${at ? ` (asked for ${at.toISOString()})` : ''}`);
  if (database.stoppedAt)
    out(
      `  STOPPED EARLY at ${database.stoppedAt.segment}: ${database.stoppedAt.reason}. Everything before it is restored; nothing after it.`,
    );
  const audit = await verifyRestoredAudit(config, to, keys.signingFile !== null, keys.keyring);
  out(`  audit trail: ${audit.message}`);
  const blobs = await restoreFiles(
    config,
    flags,
    {
      databaseUrl: `sqlite:${path.join(to, 'caretrail.db')}`,
      defaultTarget: `file:${path.join(to, 'blobs')}`,
    },
    () => keys.keyring,
  );
  const seconds = (Date.now() - started) / 1000;
  fs.writeFileSync(
    path.join(to, 'restore-report.json'),
    JSON.stringify(
      {
        restoredFrom: destination.description,
        restoredAt: new Date().toISOString(),
        database,
        audit,
        blobs,
      },
      null,
      2,
    ),
  );
  out(`  took ${seconds.toFixed(1)} s. Start it with: caretrail serve --data-dir ${to}`);
  // Only an operator knows whether this copy replaces the primary (not a drill or an inspection).
  out(
    `  if it replaces the primary, first record the restore for the audit anchors: caretrail audit record-restore --replica ${url} --data-dir ${to}`,
  );
  return database.stoppedAt || !audit.ok || (blobs && blobs.missing + blobs.bad > 0) ? 1 : 0;
}

async function verifyRestoredAudit(
  config: Config,
  to: string,
  hasSigningFile: boolean,
  keyring: Keyring,
): Promise<RestoreOutcome['audit']> {
  if (config.auditSigningKey === '' && !hasSigningFile)
    return {
      ok: false,
      checked: 0,
      message:
        'NOT VERIFIED: no audit signing key (set CARETRAIL_AUDIT_SIGNING_KEY or put the escrowed audit-signing-key.pem in --key-dir)',
    };
  const db = await openDatabase(`sqlite:${path.join(to, 'caretrail.db')}`);
  try {
    const trail = createAuditTrailService(
      {
        db,
        clock: systemClock,
        log: createLogger('warn'),
        settings: config,
        vault: createVault(openBlobStore(`file:${path.join(to, 'blobs')}`), keyring),
      },
      loadAuditSigner(to, config.auditSigningKey || undefined),
      auditTrailSettingsOf(config),
    );
    const result = await trail.verifyChain();
    return result.ok
      ? {
          ok: true,
          checked: result.checked,
          message: `intact (${String(result.checked)} events; last signed checkpoint ${result.lastGoodCheckpoint ?? 'none yet'})`,
        }
      : {
          ok: false,
          checked: result.checked,
          message: `BROKEN at event ${String(result.firstBadSequence ?? '?')}: ${result.reason ?? ''}`,
        };
  } finally {
    await db.close();
  }
}

/** `caretrail replicate status` (SQLite): what the replica holds, and the server's last report. */
export async function replicateStatusCommand(
  config: Config,
  flags: Record<string, string>,
): Promise<number> {
  const url = replicaUrlOf(config, flags.from);
  const destination = openReplicaDestination(url);
  const keyring = restoreKeys(
    config,
    flags['key-dir'] ?? (config.masterKey === '' ? config.dataDir : undefined),
  ).keyring;
  out(`Replica: ${destination.description}`);
  const statusFile = path.join(config.dataDir, STATUS_FILE);
  let code = 0;
  if (fs.existsSync(statusFile)) {
    const s = JSON.parse(fs.readFileSync(statusFile, 'utf8')) as ReplicationStatus & {
      writtenAt: string;
    };
    const age = (Date.now() - Date.parse(s.writtenAt)) / 1000;
    const running = age < 5;
    out(
      `Server: ${running ? 'replicating' : `not running (last report ${s.writtenAt})`}, ${s.mode === 'sync' ? 'synchronous' : 'asynchronous'}`,
    );
    out(
      `  lag: ${s.lagSeconds.toFixed(1)} s (${String(s.pendingCommits)} transactions not yet shipped); last shipped ${s.lastShipAt ?? 'never'}`,
    );
    out(`  last error: ${s.lastError ? `${s.lastError} (${s.lastErrorAt ?? ''})` : 'none'}`);
    if (running && (s.lastError !== null || s.lagSeconds > 5)) code = 1;
  } else {
    out('Server: no replication report in this data folder (not replicating from here)');
  }
  const snapshots = await listSnapshots(destination, keyring);
  const last = snapshots.at(-1);
  out(
    `  last snapshot: ${last ? `${last.manifest.createdAt} (generation ${last.generation}, ${(last.manifest.bytes / 1048576).toFixed(1)} MiB)` : 'none'}`,
  );
  out(
    `  restorable from ${snapshots[0]?.manifest.createdAt ?? '—'} to the latest shipped transaction; retention ${String(config.replicaRetentionDays)} days, ${String(snapshots.length)} snapshots`,
  );
  return Math.max(code, await filesAndAnchorsStatus(config));
}

/**
 * The parts of `replicate status` both engines share, read from the database (the outbox and
 * the blob-replica table): the files' copies on CARETRAIL_BLOB_REPLICA_URL and the audit anchors
 * on the replica. 1 when either needs the operator (behind, failing, or given up on).
 */
export async function filesAndAnchorsStatus(config: Config): Promise<number> {
  const file = config.databaseUrl.startsWith('sqlite:')
    ? config.databaseUrl.slice('sqlite:'.length)
    : null;
  if (file !== null && !fs.existsSync(file)) {
    // Never create an empty database where none was (a standby asking about a replica).
    out(`Files and audit anchors: no database at ${file} to read their shipping from`);
    return 0;
  }
  const db = await openDatabase(config.databaseUrl, { pgPoolSize: 2 });
  try {
    const tables = await db.read.introspection.getTables();
    if (!tables.some((t) => t.name === 'outbox')) {
      out(
        'Files and audit anchors: the database holds no Caretrail schema yet (caretrail migrate)',
      );
      return 0;
    }
    const now = new Date();
    const enabled = config.blobReplicaUrl !== '';
    const files = await blobReplicationStatus(db.read, now, {
      enabled,
      replica: enabled ? (config.blobReplicaUrl.split('?')[0] ?? '') : null,
    });
    const anchors = await anchorShippingStatus(db.read);
    if (!enabled) {
      out('Files: no blob replica (CARETRAIL_BLOB_REPLICA_URL is empty): files are not copied');
    } else {
      out(`Files: replica ${files.replica ?? ''}`);
      out(
        `  ${String(files.pending)} copies waiting${files.pending > 0 ? ` (oldest ${String(files.oldestPendingSeconds)} s)` : ''}; last copied ${files.lastReplicatedAt ?? 'never'}; ${String(files.removalsPending)} purged files still to delete there`,
      );
      if (files.failed > 0)
        out(
          `  PROBLEM: ${String(files.failed)} files cannot be copied (missing or damaged in the file store): see the Backups page`,
        );
      out(
        `  last error: ${files.lastError ? `${files.lastError} (${files.lastErrorAt ?? ''})` : 'none'}`,
      );
    }
    out(
      `Audit anchors: newest shipped ${anchors.newest ? `${String(anchors.newest.seq)} (checkpoint of ${anchors.newest.createdAt}, shipped ${anchors.newest.shippedAt})` : 'none'}; ${String(anchors.pending)} waiting`,
    );
    if (anchors.failed > 0)
      out(`  PROBLEM: ${String(anchors.failed)} anchors were given up on after every retry`);
    if (anchors.lastError)
      out(
        `  last error: ${anchors.lastError.message} (${String(anchors.lastError.attempts)} attempts; next ${anchors.lastError.nextAttemptAt})`,
      );
    const filesNeedOperator = enabled && (files.behind || files.lastError !== null);
    const anchorsNeedOperator = anchors.failed > 0 || anchors.lastError !== null;
    return filesNeedOperator || anchorsNeedOperator ? 1 : 0;
  } finally {
    await db.close();
  }
}

/**
 * The files: from `--blobs-from` or CARETRAIL_BLOB_REPLICA_URL into `--blobs-to` (default the
 * restored data folder's `blobs`), each checked against the SHA-256 the restored database holds.
 */
export async function restoreFiles(
  config: Config,
  flags: Record<string, string>,
  restored: { databaseUrl: string; defaultTarget: string | null },
  keyring: () => Keyring,
): Promise<RestoreBlobsReport | null> {
  const from = flags['blobs-from'] ?? config.blobReplicaUrl;
  if (from === '') {
    out(
      '  files: not restored (no CARETRAIL_BLOB_REPLICA_URL or --blobs-from); point CARETRAIL_BLOB_URL at the surviving file store',
    );
    return null;
  }
  const target = flags['blobs-to'] ?? restored.defaultTarget;
  if (target === null) {
    out(
      `  files: not restored yet: pass --blobs-to file:FOLDER (or s3://…) to copy them from ${from.split('?')[0] ?? ''}`,
    );
    return null;
  }
  const db = await openDatabase(restored.databaseUrl, { pgPoolSize: 2 });
  try {
    const report = await restoreBlobs({ from, to: target, db, keyring: keyring() });
    out(
      `  files: ${String(report.verified)} copied and verified (SHA-256) into ${target.split('?')[0] ?? ''}${report.missing ? `; ${String(report.missing)} MISSING on the replica` : ''}${report.bad ? `; ${String(report.bad)} DAMAGED` : ''}`,
    );
    for (const p of [...report.missingBlobs, ...report.badBlobs].slice(0, 20))
      out(
        `    ${p.kind} ${'documentId' in p ? p.documentId : p.resultId} v${String(p.version)}: ${p.reason}`,
      );
    return report;
  } finally {
    await db.close();
  }
}
