#!/usr/bin/env node
// `caretrail <command>`: serve, migrate, admin create, audit verify|export|record-restore, keys
// rotate.
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type { AuditAction, AuditOutcome } from '../domain/audit.js';
import { formatAuditRows } from '../services/audit-format.js';
import { CONFIG_SETTINGS, ConfigError, loadConfig, type Config } from '../config.js';
import { isAppError } from '../domain/errors.js';
import { createLogger } from '../log.js';
// The server (Fastify, routes, jobs) is loaded only by the commands that need it: the audit
// commands open the database and the audit trail, nothing else.
import type * as ServerModule from '../server.js';
import { openDatabase, type Database } from '../store/database.js';
import { sealPending } from '../audit-sealing/index.js';
import { systemContext } from '../services/context.js';
import path from 'node:path';
import { openBlobStore } from '../blobs/index.js';
import {
  createKeyring,
  loadKeyring,
  MASTER_KEY_FILE,
  newMasterKey,
  parseMasterKeys,
  writeKeyFile,
} from '../blobs/master-key.js';
import { createVault } from '../blobs/vault.js';
import type { RewrapCounts } from '../services/key-rotation.js';
import { loadAuditSigner, type AuditSigner } from '../audit-signing-key.js';
import { systemClock } from '../domain/clock.js';
import {
  auditTrailSettingsOf,
  createAuditTrailService,
  type AuditTrailService,
} from '../services/audit-trail/index.js';
import type { ServiceDeps } from '../services/deps.js';
import {
  checkAnchors,
  describeAnchorCheck,
  recordRestorePoint,
} from '../replication/anchors/index.js';
import {
  openReplicaDestination,
  ReplicaUnavailableError,
  type ReplicaDestination,
} from '../replication/destination.js';

const USAGE = `Usage: caretrail <command> [options]

Commands:
  serve                      start the server (migrates the database first)
  migrate                    bring the database schema up to date
  admin create --org NAME --email EMAIL --password-file FILE [--name NAME]
                             create an organization (if missing) and an admin in it
  audit verify [--replica URL]
                             recompute the audit chain and its signed checkpoints; with
                             --replica, also compare the anchors shipped there (file:/folder or
                             s3://bucket/prefix?…) with this database; exit 0 when intact,
                             1 when tampered, rolled back or truncated (names what differs)
  audit record-restore --replica URL [--at TIME]
                             before serving a database restored to an earlier moment: record the
                             restore on the replica, so that anchors of the abandoned history are
                             reported as after the restore point (--at: the moment restored to;
                             default: restore-report.json's, else the newest event's)
  audit export --format csv|fhir [--from T] [--to T] [--patient ID] [--actor ID]
               [--action C|R|U|D|E] [--outcome success|failure|denied|error]
                             stream audit events to stdout (CSV, or FHIR AuditEvent NDJSON)
  replicate status           the off-site replica: lag, last snapshot, retention (exit 1 when
                             the server's replication is failing or behind)
  restore --to DIR [--from URL] [--at TIME] [--key-dir DIR] [--force]
          [--blobs-from URL] [--blobs-to URL]
                             rebuild a data folder from the replica (latest, or as it was at
                             TIME), verify its audit trail; keys from CARETRAIL_MASTER_KEY or the
                             escrowed key files in --key-dir
  replicate setup|status|backup|verify|receive  (PostgreSQL: pgBackRest; see docs/DISASTER-RECOVERY.md ("PostgreSQL"))
             [--apply] [--type full|incr] [--spool DIR] [--pgbackrest-config FILE]
  restore --to DIR [--at TIME] [--force] [--spool DIR] [--pg-port N] [--pg-conf-dir DIR]
                             (PostgreSQL: a new data directory, started and promoted)
  dr drill [--replica URL] [--seconds N] [--rpo 1s] [--rto 60s] [--sync]
                             rehearse losing the server: write, SIGKILL, restore from the replica
                             alone, and measure RPO and RTO (exit 1 when over the objectives)
  keys rotate                re-wrap every file data key under a new master key (file bodies
                             are not re-encrypted); with CARETRAIL_MASTER_KEY, under its first key

Every setting can be given as CARETRAIL_* variable or --flag (see README.md).`;

const COMMAND_FLAGS = new Set([
  'org',
  'email',
  'password-file',
  'name',
  'format',
  'from',
  'to',
  'patient',
  'actor',
  'action',
  'outcome',
  'at',
  'key-dir',
  'replica',
  'seconds',
  'rpo',
  'rto',
  'dir',
  'type',
  'spool',
  'pg-port',
  'pg-conf-dir',
  'pgbackrest-config',
  'pgbackrest-state',
  'blobs-from',
  'blobs-to',
]);
/** Command flags without a value. */
const BOOLEAN_FLAGS = new Set(['force', 'sync', 'apply']);

function splitFlags(args: string[]): {
  positionals: string[];
  settings: Record<string, string>;
  command: Record<string, string>;
  help: boolean;
} {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const flag of [...CONFIG_SETTINGS.map((s) => s.flag), ...COMMAND_FLAGS])
    options[flag] = { type: 'string' };
  for (const flag of BOOLEAN_FLAGS) options[flag] = { type: 'boolean' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new ConfigError(
      err instanceof Error ? (err.message.split('\n')[0] ?? 'Bad option.') : 'Bad option.',
    );
  }
  const settings: Record<string, string> = {};
  const command: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed.values)) {
    if (typeof value === 'string') (COMMAND_FLAGS.has(key) ? command : settings)[key] = value;
    else if (BOOLEAN_FLAGS.has(key) && value === true) command[key] = 'true';
  }
  return { positionals: parsed.positionals, settings, command, help: parsed.values.help === true };
}

async function serve(config: Config): Promise<void> {
  const log = createLogger(config.logLevel);
  const { createRuntime } = await loadServer();
  const runtime = await createRuntime(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down: finishing in-flight requests');
    const timer = setTimeout(() => {
      log.error('shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    timer.unref();
    runtime
      .close()
      .then(() => {
        log.info('stopped cleanly');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'error while shutting down');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.on('SIGINT', () => {
    stop('SIGINT');
  });
  // Certificate renewal: replace the files, then `kill -HUP`; listeners and open connections stay.
  const tls = runtime.tls;
  if (tls)
    process.on('SIGHUP', () => {
      log.info({ signal: 'SIGHUP' }, 'reloading the TLS certificate and key');
      tls.reload();
    });
  const address = await runtime.app.listen({ host: config.host, port: config.port });
  log.info({ address, engine: runtime.db.engine }, 'Caretrail is listening');
  if (config.httpRedirectPort !== null) await runtime.listenRedirect();
  if (config.mllpPort !== null) await runtime.listenMllp();
  runtime.startJobs();
  // Verify the audit trail in the background: a broken chain is reported loudly, but the server
  // keeps serving (and /readyz stays up) so the clinic is not locked out of its records.
  runtime.services.auditTrail.verifyChain().then(
    (result) => {
      if (result.ok)
        log.info(
          { checked: result.checked, lastGoodCheckpoint: result.lastGoodCheckpoint },
          'audit trail verified',
        );
      else
        log.fatal(
          {
            firstBadSequence: result.firstBadSequence,
            reason: result.reason,
            checked: result.checked,
          },
          'AUDIT TRAIL BROKEN: it was tampered with or damaged; run "caretrail audit verify" and investigate',
        );
    },
    (err: unknown) => {
      log.error({ err }, 'could not verify the audit trail at start-up');
    },
  );
  const link = await runtime.services.setup.issueSetupLinkIfNeeded();
  if (link) {
    const url = new URL(link);
    const port = runtime.app.server.address();
    if (config.port === 0 && port && typeof port === 'object') url.port = String(port.port);
    process.stdout.write(
      `\nNo users yet. Open this one-time setup link to create the first admin (valid 24 h):\n  ${url.toString()}\n\n`,
    );
  }
}

async function migrate(config: Config): Promise<void> {
  const db = await openDatabase(config.databaseUrl, { pgPoolSize: 1 });
  try {
    const applied = await db.migrate();
    process.stdout.write(
      applied.length ? `Applied: ${applied.join(', ')}\n` : 'The database schema is up to date.\n',
    );
  } finally {
    await db.close();
  }
}

async function adminCreate(config: Config, flags: Record<string, string>): Promise<void> {
  const org = flags.org;
  const email = flags.email;
  const passwordFile = flags['password-file'];
  if (!org || !email || !passwordFile) {
    throw new ConfigError('admin create needs --org NAME --email EMAIL --password-file FILE.');
  }
  let password: string;
  try {
    password = fs.readFileSync(passwordFile, 'utf8').replace(/\r?\n$/, '');
  } catch {
    throw new ConfigError(`Cannot read the password file ${passwordFile}.`);
  }
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const db = await openDatabase(config.databaseUrl, { pgPoolSize: 2 });
  try {
    await db.migrate();
    const { servicesFor } = await loadServer();
    const services = servicesFor(config, db, log);
    const user = await services.setup.createAdmin(
      systemContext(`cli-${process.pid}`, 'caretrail-cli'),
      { organizationName: org, email, name: flags.name ?? email, password },
    );
    process.stdout.write(
      `Created admin ${user.email} (${user.id}) in organization ${user.organizationId}.\n`,
    );
  } finally {
    await closeSealed(db, config);
  }
}

/**
 * Closes a command's database after sealing the audit events it queued (PostgreSQL): a command
 * has no sealer job, and its events must be in the chain before it reports success.
 */
async function closeSealed(db: Database, config: Config): Promise<void> {
  try {
    await sealPending({ db, settings: config }, true);
  } catch {
    process.stderr.write(
      'caretrail: the audit events of this command could not be sealed now; a running server seals them.\n',
    );
  } finally {
    await db.close();
  }
}

const loadServer = (): Promise<typeof ServerModule> => import('../server.js');

interface AuditTools {
  deps: ServiceDeps;
  signer: AuditSigner;
}

/**
 * Runs an audit command on the database and the audit trail alone: no HTTP listener, no outbox
 * relay, no start-up verification.
 */
async function withAuditTrail<T>(
  config: Config,
  run: (auditTrail: AuditTrailService, tools: AuditTools) => Promise<T>,
): Promise<T> {
  const db = await openDatabase(config.databaseUrl, { pgPoolSize: 2 });
  try {
    await db.migrate();
    const vault = createVault(
      openBlobStore(config.blobUrl),
      loadKeyring(config.dataDir, config.masterKey || undefined),
    );
    const deps: ServiceDeps = {
      db,
      clock: systemClock,
      log: createLogger('warn'),
      settings: config,
      vault,
    };
    const signer = loadAuditSigner(config.dataDir, config.auditSigningKey || undefined);
    const auditTrail = createAuditTrailService(deps, signer, auditTrailSettingsOf(config));
    return await run(auditTrail, { deps, signer });
  } finally {
    await closeSealed(db, config);
  }
}

/** The replica named by --replica; a URL that cannot name one is bad usage (exit 2). */
function replicaOf(flags: Record<string, string>): {
  url: string;
  destination: ReplicaDestination;
} {
  const url = flags.replica;
  if (url === undefined || url === '')
    throw new ConfigError(
      '--replica needs the replica URL: file:/path/to/folder or s3://bucket/prefix?…',
    );
  let destination: ReplicaDestination;
  try {
    destination = openReplicaDestination(url);
  } catch {
    throw new ConfigError(
      '--replica must be file:/path/to/folder or s3://bucket/prefix?region=…&endpoint=…',
    );
  }
  if (url.startsWith('file:')) {
    const folder = path.resolve(url.slice('file:'.length));
    if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory())
      throw new ConfigError(`--replica: there is no folder ${folder}.`);
  }
  return { url, destination };
}

async function auditVerify(config: Config, flags: Record<string, string>): Promise<number> {
  const replica = flags.replica !== undefined ? replicaOf(flags) : null;
  return withAuditTrail(config, async (auditTrail, { deps, signer }) => {
    const result = await auditTrail.verifyChain();
    if (result.ok) {
      process.stdout.write(
        `Audit trail intact: ${result.checked} events checked; last signed checkpoint at ${result.lastGoodCheckpoint ?? 'none yet'}.\n`,
      );
    } else {
      process.stdout.write(
        `Audit trail BROKEN: first bad event ${result.firstBadSequence ?? '?'}: ${result.reason ?? ''} (${result.checked} events checked).\n`,
      );
    }
    if (result.unsealed)
      process.stdout.write(
        result.unsealed.count === 0
          ? 'Unsealed tail: none (every committed event is in the chain).\n'
          : `Unsealed tail: ${result.unsealed.count} events committed and waiting to be sealed (oldest ${result.unsealed.oldestAt ?? '?'}); not covered by this check yet.\n`,
      );
    if (!replica) return result.ok ? 0 : 1;
    let check;
    try {
      check = await checkAnchors({
        db: deps.db.read,
        destination: replica.destination,
        keyring: deps.vault.keyring,
        verifySignature: (c) => signer.verify(c),
      });
    } catch (err) {
      if (!(err instanceof ReplicaUnavailableError)) throw err;
      process.stdout.write(`Replica anchors NOT CHECKED: ${err.message}.\n`);
      return 1;
    }
    const report = describeAnchorCheck(check, replica.url);
    process.stdout.write(`${report.lines.join('\n')}\n`);
    return result.ok && report.ok ? 0 : 1;
  });
}

/** The moment `caretrail restore` reached, from the report it wrote in the data folder. */
function restoredToOf(dataDir: string): string | undefined {
  let report: unknown;
  try {
    report = JSON.parse(fs.readFileSync(path.join(dataDir, 'restore-report.json'), 'utf8'));
  } catch {
    return undefined;
  }
  const at = (report as { database?: { restoredTo?: unknown } } | null)?.database?.restoredTo;
  return typeof at === 'string' && !Number.isNaN(Date.parse(at)) ? at : undefined;
}

async function auditRecordRestore(config: Config, flags: Record<string, string>): Promise<number> {
  const replica = replicaOf(flags);
  if (flags.at !== undefined && Number.isNaN(Date.parse(flags.at)))
    throw new ConfigError('--at must be an ISO 8601 time, e.g. 2026-01-31T09:30:00Z.');
  // `caretrail restore` leaves the moment it reached in the restored data folder.
  const at = flags.at ?? restoredToOf(config.dataDir);
  return withAuditTrail(config, async (auditTrail, { deps }) => {
    const result = await auditTrail.verifyChain();
    if (!result.ok) {
      process.stdout.write(
        `Audit trail BROKEN: first bad event ${result.firstBadSequence ?? '?'}: ${result.reason ?? ''}. A restore point is recorded only for an intact audit trail.\n`,
      );
      return 1;
    }
    const point = await recordRestorePoint({
      deps,
      ctx: systemContext(`cli-${process.pid}`, 'caretrail-cli'),
      destination: replica.destination,
      keyring: deps.vault.keyring,
      ...(at !== undefined ? { restoredTo: at } : {}),
    });
    process.stdout.write(
      `Restore point recorded at ${replica.destination.description}: the database was restored to ${point.restoredTo} (audit log at ${point.seq}). Anchors signed after that moment and before now are reported as after the restore point.\n`,
    );
    return 0;
  });
}

const FORMATS = ['csv', 'fhir'] as const;

async function auditExport(config: Config, flags: Record<string, string>): Promise<void> {
  const format = flags.format ?? 'csv';
  if (!(FORMATS as readonly string[]).includes(format))
    throw new ConfigError('--format must be csv or fhir.');
  const action = flags.action;
  if (action !== undefined && !['C', 'R', 'U', 'D', 'E'].includes(action))
    throw new ConfigError('--action must be C, R, U, D or E.');
  const outcome = flags.outcome;
  if (outcome !== undefined && !['success', 'failure', 'denied', 'error'].includes(outcome)) {
    throw new ConfigError('--outcome must be success, failure, denied or error.');
  }
  await withAuditTrail(config, async (auditTrail) => {
    const ctx = systemContext(`cli-${process.pid}`, 'caretrail-cli');
    const query = {
      ...(flags.from !== undefined ? { from: flags.from } : {}),
      ...(flags.to !== undefined ? { to: flags.to } : {}),
      ...(flags.patient !== undefined ? { patientId: flags.patient } : {}),
      ...(flags.actor !== undefined ? { actorId: flags.actor } : {}),
      ...(action !== undefined ? { action: action as AuditAction } : {}),
      ...(outcome !== undefined ? { outcome: outcome as AuditOutcome } : {}),
    };
    const text =
      format === 'csv'
        ? await auditTrail.exportCsv(ctx, query)
        : formatAuditRows(await auditTrail.exportEvents(ctx, query), 'fhir');
    await pipeline(text, process.stdout);
  });
}

/**
 * Master key rotation. With the key file: a new key is added in front (running servers pick it
 * up before their next upload), every data key is re-wrapped under it, then the old keys leave
 * the file. With CARETRAIL_MASTER_KEY the operator lists the new key first and the old ones
 * after it; this re-wraps under the first, and the others can then be dropped.
 */
async function keysRotate(config: Config): Promise<void> {
  const db = await openDatabase(config.databaseUrl, { pgPoolSize: 2 });
  try {
    await db.migrate();
    const { rewrapAll } = await import('../services/key-rotation.js');
    const store = openBlobStore(config.blobUrl);
    const report = (counts: RewrapCounts, id: string) =>
      `Re-wrapped ${counts.contents} file keys, ${counts.thumbnails} thumbnail keys and ${counts.secrets} secrets (webhook signing, integration keys, queued invitations, TOTP) under master key ${id}.`;
    if (config.masterKey !== '') {
      const keyring = createKeyring(parseMasterKeys(config.masterKey));
      const counts = await rewrapAll(db, createVault(store, keyring));
      process.stdout.write(`${report(counts, keyring.activeId)}\n`);
      process.stdout.write(
        keyring.ids.length > 1
          ? 'Every data key is now under the first key of CARETRAIL_MASTER_KEY: once all instances run with it first, remove the other keys.\n'
          : 'To rotate, put a new key (base64 of 32 random bytes) first in CARETRAIL_MASTER_KEY, the current one after it, restart the instances, then run this again.\n',
      );
      return;
    }
    const file = path.join(config.dataDir, MASTER_KEY_FILE);
    const oldId = loadKeyring(config.dataDir, undefined).activeId;
    const oldKeys = parseMasterKeys(fs.readFileSync(file, 'utf8'));
    const fresh = newMasterKey();
    writeKeyFile(file, [fresh, ...oldKeys]);
    const keyring = createKeyring([fresh, ...oldKeys], file);
    const vault = createVault(store, keyring);
    const counts = await rewrapAll(db, vault);
    writeKeyFile(file, [fresh]);
    // Data keys wrapped by an instance that had not yet seen the new key: this keyring still
    // holds the old keys in memory, so it can move them too.
    const late = await rewrapAll(db, vault);
    const total: RewrapCounts = {
      contents: counts.contents + late.contents,
      thumbnails: counts.thumbnails + late.thumbnails,
      secrets: counts.secrets + late.secrets,
    };
    process.stdout.write(
      `${report(total, keyring.activeId)}\nThe key file ${file} now holds only the new key (the old one, ${oldId}, was removed).\n`,
    );
  } finally {
    await db.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const { positionals, settings, command, help } = splitFlags(argv);
  const [name, sub] = positionals;
  if (name === undefined || name === 'help' || help) {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const config = loadConfig(process.env, settings);
  switch (name) {
    case 'serve':
      await serve(config);
      return -1;
    case 'migrate':
      await migrate(config);
      return 0;
    case 'admin':
      if (sub !== 'create')
        throw new ConfigError(
          'Unknown admin command; try: caretrail admin create --org … --email … --password-file …',
        );
      await adminCreate(config, command);
      return 0;
    case 'audit':
      if (sub === 'verify') return auditVerify(config, command);
      if (sub === 'record-restore') return auditRecordRestore(config, command);
      if (sub === 'export') {
        await auditExport(config, command);
        return 0;
      }
      throw new ConfigError(
        'Unknown audit command; try: caretrail audit verify [--replica URL] | caretrail audit export --format csv | caretrail audit record-restore --replica URL',
      );
    case 'replicate': {
      if (config.databaseUrl.startsWith('postgres')) {
        const { pgReplicateCommand } = await import('../replication/postgres/cli.js');
        return pgReplicateCommand(config, sub, command);
      }
      const { replicateStatusCommand } = await import('../replication/cli.js');
      if (sub === 'status') return replicateStatusCommand(config, command);
      throw new ConfigError('Unknown replicate command; try: caretrail replicate status');
    }
    case 'restore': {
      if (config.databaseUrl.startsWith('postgres')) {
        const { pgRestoreCommand } = await import('../replication/postgres/cli.js');
        return pgRestoreCommand(config, command);
      }
      const { restoreCommand } = await import('../replication/cli.js');
      return restoreCommand(config, command);
    }
    case 'dr': {
      if (sub !== 'drill') throw new ConfigError('Unknown dr command; try: caretrail dr drill');
      const { drillCommand } = await import('../replication/drill.js');
      return drillCommand(config, command);
    }
    case 'keys':
      if (sub !== 'rotate')
        throw new ConfigError('Unknown keys command; try: caretrail keys rotate');
      await keysRotate(config);
      return 0;
    default:
      throw new ConfigError(`Unknown command "${name}". Try: caretrail help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`caretrail: ${err.message}\n`);
    else if (isAppError(err)) process.stderr.write(`caretrail: ${err.message}\n`);
    else process.stderr.write(`caretrail: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof ConfigError ? 2 : 1;
  },
);
