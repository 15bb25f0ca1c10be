// The PostgreSQL branches of `caretrail replicate setup|status|backup|verify|receive` and
// `caretrail restore`: flags in, the functions of this folder called, plain lines out. The
// exit code is 1 when something needs the operator (settings to change, a problem in status).
import fs from 'node:fs';
import path from 'node:path';
import { SIGNING_KEY_FILE, loadAuditSigner } from '../../audit-signing-key.js';
import { openBlobStore } from '../../blobs/index.js';
import { MASTER_KEY_FILE, createKeyring, parseMasterKeys } from '../../blobs/master-key.js';
import { createVault } from '../../blobs/vault.js';
import type { Config } from '../../config.js';
import { systemClock } from '../../domain/clock.js';
import { createLogger } from '../../log.js';
import { auditTrailSettingsOf, createAuditTrailService } from '../../services/audit-trail/index.js';
import { openDatabase } from '../../store/database.js';
import { filesAndAnchorsStatus, restoreFiles, restoreKeys } from '../cli.js';
import { pgBackup } from './backup.js';
import { PgReplicationError } from './errors.js';
import { pgRestore } from './restore.js';
import { pgReplicateSetup } from './setup.js';
import { pgReplicateStatus } from './status.js';
import { pgVerify } from './verify.js';
import { pgReceiveWal } from './wal-receiver.js';

const out = (line: string) => process.stdout.write(`${line}\n`);

/** The folders flags may point pgBackRest's files to (defaults otherwise). */
function fileOptions(flags: Record<string, string>): { configFile?: string; stateDir?: string } {
  return {
    ...(flags['pgbackrest-config'] !== undefined ? { configFile: flags['pgbackrest-config'] } : {}),
    ...(flags['pgbackrest-state'] !== undefined ? { stateDir: flags['pgbackrest-state'] } : {}),
  };
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

export async function pgReplicateCommand(
  config: Config,
  sub: string | undefined,
  flags: Record<string, string>,
): Promise<number> {
  switch (sub) {
    case 'setup': {
      const r = await pgReplicateSetup(config, {
        ...fileOptions(flags),
        apply: flags.apply === 'true',
      });
      out(
        `pgBackRest configuration: ${r.configFile} (stanza caretrail, repository ${r.repository}; cipher pass derived from master key ${r.keyId}; readable by the cluster's owner only)`,
      );
      if (r.applied.length > 0) {
        out('Applied:');
        for (const c of r.applied) out(`  ${c.sql}`);
      }
      const left = r.changes.filter((c) => !r.applied.includes(c));
      if (left.length > 0) {
        out(
          flags.apply === 'true'
            ? 'Still to do:'
            : 'PostgreSQL settings to change (run as a superuser, or run setup --apply):',
        );
        for (const c of left)
          out(`  ${c.sql.padEnd(60)} -- ${c.why}${c.restart ? ' (restart)' : ''}`);
        if (flags.apply !== 'true') out('  SELECT pg_reload_conf();');
      }
      if (r.waitingForReceiver)
        out(
          'synchronous_standby_names waits for the WAL receiver: start caretrail replicate receive --spool DIR, then run setup --apply again.',
        );
      if (r.restartNeeded)
        out(
          'Restart PostgreSQL (wal_level and archive_mode change only then), then run setup again.',
        );
      if (r.checked)
        out(
          'pgbackrest check passed: WAL reaches the repository. Next: caretrail replicate backup --type full.',
        );
      return r.checked && !r.waitingForReceiver ? 0 : 1;
    }
    case 'status': {
      const s = await pgReplicateStatus(config, fileOptions(flags));
      out(
        `Replica (PostgreSQL, pgBackRest): ${s.repository} (${s.synchronous ? 'synchronous' : 'asynchronous'})`,
      );
      out(
        `  last backup: ${s.lastBackup ? `${s.lastBackupAt ?? ''} (${s.lastBackup.type} ${s.lastBackup.label}, database ${mib(s.lastBackup.sizeBytes)}, ${mib(s.lastBackup.repositoryBytes)} in the repository, ${s.lastBackup.durationSeconds.toFixed(0)} s)` : 'none'}; ${String(s.backups)} kept`,
      );
      out(
        `  last archived WAL: ${s.lastArchivedWal ?? 'none'} at ${s.lastArchivedAt ?? '—'}; lag ${s.lagSeconds === null ? 'unknown' : `${s.lagSeconds.toFixed(1)} s`}`,
      );
      if (s.receiver)
        out(
          `  WAL receiver: ${s.receiver.connected ? `connected, ${s.receiver.syncState ?? '?'}` : 'NOT connected'}`,
        );
      out(
        `  restorable from ${s.earliestRestorableAt ?? '—'} to the latest archived WAL; retention ${String(s.retentionDays)} days`,
      );
      for (const e of s.errors) out(`  PROBLEM: ${e}`);
      const others = await filesAndAnchorsStatus(config);
      return s.errors.length === 0 ? others : 1;
    }
    case 'backup': {
      const type = flags.type ?? 'incr';
      if (type !== 'full' && type !== 'diff' && type !== 'incr')
        throw new PgReplicationError('--type must be full, diff or incr');
      const b = await pgBackup(config, { ...fileOptions(flags), type });
      out(
        `Backup ${b.label} (${b.type}): database ${mib(b.sizeBytes)}, ${mib(b.repositoryBytes)} in the repository, ${b.durationSeconds.toFixed(0)} s; ${String(b.backups)} backups kept`,
      );
      return 0;
    }
    case 'verify': {
      const v = await pgVerify(config, fileOptions(flags));
      for (const i of v.invalid) out(`DAMAGED: ${i.file}: ${i.reason}`);
      for (const m of v.missing) out(`MISSING: WAL segment ${m}`);
      out(v.ok ? 'The repository reads back intact.' : 'The repository is damaged: see above.');
      return v.ok ? 0 : 1;
    }
    case 'receive': {
      if (flags.spool === undefined)
        throw new PgReplicationError(
          'replicate receive needs --spool DIR (on another disk or machine than the database)',
        );
      const receiver = await pgReceiveWal(config, {
        ...fileOptions(flags),
        spool: flags.spool,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      out(
        `Receiving WAL into ${flags.spool} (pg_receivewal pid ${String(receiver.pid)}); stop with SIGTERM.`,
      );
      const stop = () => {
        void receiver.stop();
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      const code = await receiver.exited;
      await receiver.stop();
      return code === 0 || code === null ? 0 : 1;
    }
    default:
      throw new PgReplicationError(
        'Unknown replicate command; try: caretrail replicate setup [--apply] | status | backup [--type full|incr] | verify | receive --spool DIR',
      );
  }
}

/** `caretrail restore --to DIR [--from file:…] [--at ISO] [--force] [--spool DIR] [--pg-port N]`. */
export async function pgRestoreCommand(
  config: Config,
  flags: Record<string, string>,
): Promise<number> {
  if (flags.to === undefined)
    throw new PgReplicationError('restore needs --to DIR (a new data directory)');
  let port: number | undefined;
  if (flags['pg-port'] !== undefined) {
    port = Number(flags['pg-port']);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new PgReplicationError('--pg-port must be a port number');
  }
  const r = await pgRestore(config, {
    to: flags.to,
    ...(flags.from !== undefined ? { from: flags.from } : {}),
    ...(flags.at !== undefined ? { at: flags.at } : {}),
    ...(flags.spool !== undefined ? { spool: flags.spool } : {}),
    ...(flags['pg-conf-dir'] !== undefined ? { configFrom: flags['pg-conf-dir'] } : {}),
    ...(port !== undefined ? { port } : {}),
    force: flags.force === 'true',
    log: (line) => process.stderr.write(`${line}\n`),
  });
  out(`Restored PostgreSQL into ${r.dataDirectory} from backup ${r.backup}, target ${r.target}:`);
  out(`  restored to ${r.restoredTo ?? 'the end of the backup'} (the last transaction it holds)`);
  out(
    `  ${String(r.walFromRepository)} WAL segments from the repository${r.walFromSpool > 0 ? `, ${String(r.walFromSpool)} from the spool` : ''}; copy ${r.restoreSeconds.toFixed(1)} s, recovery ${r.recoverySeconds.toFixed(1)} s, ${r.durationSeconds.toFixed(1)} s in all`,
  );
  out(
    `  PostgreSQL runs on it, port ${String(r.port)}, promoted; archiving is off: run caretrail replicate setup --apply there to archive again.`,
  );
  const url = new URL(config.databaseUrl);
  url.port = String(r.port);
  const audit = await verifyAudit(config, url.toString());
  out(`  audit trail: ${audit.message}`);
  // The files, from the blob replica (PostgreSQL's data directory is no place for them).
  const blobs = await restoreFiles(
    config,
    flags,
    { databaseUrl: url.toString(), defaultTarget: null },
    () => restoreKeys(config, flags['key-dir'] ?? config.dataDir).keyring,
  );
  return audit.ok && (!blobs || blobs.missing + blobs.bad === 0) ? 0 : 1;
}

/**
 * `caretrail audit verify` on the restored database: every link and signed checkpoint. Needs the
 * signing key (CARETRAIL_AUDIT_SIGNING_KEY or the data folder's file); a new one is never made.
 */
async function verifyAudit(
  config: Config,
  databaseUrl: string,
): Promise<{ ok: boolean; message: string }> {
  const signingFile = path.join(config.dataDir, SIGNING_KEY_FILE);
  const keyFile = path.join(config.dataDir, MASTER_KEY_FILE);
  if (config.auditSigningKey === '' && !fs.existsSync(signingFile))
    return {
      ok: false,
      message: `NOT VERIFIED: no audit signing key (set CARETRAIL_AUDIT_SIGNING_KEY or put ${SIGNING_KEY_FILE} in the data folder), then run caretrail audit verify`,
    };
  if (config.masterKey === '' && !fs.existsSync(keyFile))
    return {
      ok: false,
      message:
        'NOT VERIFIED: no master key here (set CARETRAIL_MASTER_KEY), then run caretrail audit verify',
    };
  const keyring = createKeyring(
    parseMasterKeys(config.masterKey !== '' ? config.masterKey : fs.readFileSync(keyFile, 'utf8')),
  );
  const db = await openDatabase(databaseUrl, { pgPoolSize: 2 });
  try {
    const trail = createAuditTrailService(
      {
        db,
        clock: systemClock,
        log: createLogger('warn'),
        settings: config,
        vault: createVault(openBlobStore(config.blobUrl), keyring),
      },
      loadAuditSigner(config.dataDir, config.auditSigningKey || undefined),
      auditTrailSettingsOf(config),
    );
    const result = await trail.verifyChain();
    return result.ok
      ? {
          ok: true,
          message: `intact (${String(result.checked)} events; last signed checkpoint ${result.lastGoodCheckpoint ?? 'none yet'})`,
        }
      : {
          ok: false,
          message: `BROKEN at event ${String(result.firstBadSequence ?? '?')}: ${result.reason ?? ''}`,
        };
  } finally {
    await db.close();
  }
}
