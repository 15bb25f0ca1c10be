// `caretrail restore` on PostgreSQL: point-in-time restore from the pgBackRest repository alone
// (plus the master key, kept elsewhere) into a fresh data directory, then a PostgreSQL started on
// it and waited for until recovery has finished and it has been promoted. The restore is
// checked: `--at` must lie in the retention window and not in the future; a restore to the
// latest state must reach the newest WAL the repository (and the WAL receiver's spool) holds, and
// a missing or damaged segment that stops it early is named, never passed off as the latest.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../config.js';
import { repositoryKeys } from './cipher-pass.js';
import { localCluster, pgBinDir, runningServer } from './cluster.js';
import { PgReplicationError } from './errors.js';
import {
  pgbackrest,
  renderConfig,
  stanzaInfo,
  statePaths,
  type PgBackRestContext,
  type StanzaInfo,
} from './pgbackrest.js';
import { chownTo, makeDir, runAsFor, runTool, writePrivateFile } from './run.js';
import { repositoryPath } from './setup.js';
import {
  listArchivedWal,
  missingSegments,
  parseWalName,
  segNoOfLsn,
  walName,
} from './wal-names.js';

export interface PgRestoreOptions {
  /** The repository, file:/path (default: CARETRAIL_REPLICA_URL). */
  from?: string;
  /** The new data directory (created; must be empty unless `force`). */
  to: string;
  /** The moment to restore (ISO 8601); absent: the latest state the repository holds. */
  at?: string;
  /** Replace what is in `to` (never a running server's directory). */
  force?: boolean;
  /** Port of the restored server (default: the port in CARETRAIL_DATABASE_URL, else 5432). */
  port?: number;
  /** The WAL receiver's spool folder: its newest WAL goes in too (RPO 0 restores). */
  spool?: string;
  /**
   * Folder of the cluster's configuration when it is not in the data directory (Debian:
   * /etc/postgresql/15/main): postgresql.conf, pg_hba.conf and pg_ident.conf are copied in.
   */
  configFrom?: string;
  /** OS user that owns and runs the restored cluster (default: postgres when we are root). */
  user?: string;
  now?: Date;
  log?: (line: string) => void;
}

export interface PgRestoreReport {
  dataDirectory: string;
  port: number;
  /** The moment asked for, or "latest". */
  target: string;
  /** The backup it started from. */
  backup: string;
  /** The last transaction the restored database holds (its commit time). */
  restoredTo: string | null;
  /** WAL segments replayed from the repository, and taken from the spool. */
  walFromRepository: number;
  walFromSpool: number;
  /** Seconds: copying the backup, replaying WAL until promoted, both. */
  restoreSeconds: number;
  recoverySeconds: number;
  durationSeconds: number;
}

function parseMoment(at: string): Date {
  const t = Date.parse(at);
  if (!/^\d{4}-\d\d-\d\d/.test(at) || Number.isNaN(t))
    throw new PgReplicationError(
      `--at must be an ISO 8601 moment such as 2026-12-05T14:30:00Z (got ${JSON.stringify(at)})`,
    );
  return new Date(t);
}

/** pgBackRest's (and PostgreSQL's) spelling of a moment, to the microsecond, in UTC. */
function targetTime(d: Date): string {
  return `${d.toISOString().replace('T', ' ').replace('Z', '')}+00`;
}

/** "2026-12-05 12:03:44.547304+00" (PostgreSQL's log) as a Date. */
function logTime(text: string): Date | null {
  const m = /(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)(?: ?([+-]\d\d)(?::?(\d\d))?| UTC)?/.exec(
    text,
  );
  if (!m) return null;
  const zone = m[3] !== undefined ? `${m[3]}:${m[4] ?? '00'}` : 'Z';
  const t = Date.parse(`${m[1]}T${m[2]}${zone}`);
  return Number.isNaN(t) ? null : new Date(t);
}

/** Refuses a target that is not a fresh folder, unless `force` (never a running server's). */
function checkTarget(to: string, force: boolean): void {
  if (!fs.existsSync(to)) return;
  if (!fs.statSync(to).isDirectory()) throw new PgReplicationError(`${to} is not a folder`);
  const running = runningServer(to);
  if (running)
    throw new PgReplicationError(
      `${to} belongs to a running PostgreSQL (pid ${running.pid}): stop it first; a restore never replaces a live database`,
    );
  if (!force && fs.readdirSync(to).length > 0)
    throw new PgReplicationError(
      `${to} is not empty: restore into a new folder, or pass --force to replace what it holds`,
    );
}

/** An empty folder at `to`, owned by the cluster's user (what was there is removed). */
function prepareTarget(to: string, user: string | null): void {
  if (fs.existsSync(to)) {
    for (const entry of fs.readdirSync(to))
      fs.rmSync(path.join(to, entry), { recursive: true, force: true });
    fs.chmodSync(to, 0o700);
    chownTo(to, user);
  } else makeDir(to, user, 0o700);
}

/** A temporary pgBackRest configuration for the repository, under the first key that opens it. */
async function openRepository(
  config: Config,
  repository: string,
  user: string | null,
): Promise<{ ctx: PgBackRestContext; info: StanzaInfo; dir: string }> {
  const keys = repositoryKeys(config);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-restore-'));
  chownTo(dir, user);
  const state = statePaths(dir);
  for (const d of [state.lock, state.log, state.spool]) makeDir(d, user, 0o700);
  const configFile = path.join(dir, 'pgbackrest.conf');
  for (const key of keys) {
    writePrivateFile(
      configFile,
      renderConfig({
        repoPath: repository,
        cipherPass: key.pass,
        keyId: key.keyId,
        retentionDays: config.replicaRetentionDays,
        state,
        prefetchWal: true,
      }),
      user,
    );
    const ctx: PgBackRestContext = { configFile, user, secret: key.pass };
    try {
      const info = await stanzaInfo(ctx);
      if (info.statusCode === 1)
        throw new PgReplicationError(`${repository} holds no Caretrail pgBackRest repository`);
      return { ctx, info, dir };
    } catch (err) {
      if (!(err instanceof PgReplicationError) || !/does not open/.test(err.message)) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new PgReplicationError(
    `the repository does not open with any master key of this installation (${keys.map((k) => k.keyId).join(', ')}): restores need the key it was set up under`,
  );
}

/** Copies the spool's WAL into pg_wal (the partial segment under its full name). */
function addSpool(spool: string, to: string, user: string | null): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(spool);
  } catch {
    throw new PgReplicationError(`cannot read the WAL spool ${spool}`);
  }
  const added: string[] = [];
  for (const name of names.sort()) {
    const m = /^([0-9A-F]{24})(\.partial)?$/.exec(name);
    if (m?.[1] === undefined) continue;
    const target = path.join(to, 'pg_wal', m[1]);
    fs.copyFileSync(path.join(spool, name), target);
    chownTo(target, user);
    added.push(m[1]);
  }
  return added;
}

/**
 * Copies a configuration kept outside the data directory into it, without the lines that would
 * send PostgreSQL back to the old directory or files.
 */
function copyConfiguration(from: string, to: string, user: string | null): void {
  for (const name of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) {
    let text: string;
    try {
      text = fs.readFileSync(path.join(from, name), 'utf8');
    } catch {
      throw new PgReplicationError(`cannot read ${path.join(from, name)}`);
    }
    if (name === 'postgresql.conf')
      text = text.replace(
        /^([ \t]*(data_directory|hba_file|ident_file|external_pid_file|include_dir)[ \t]*=)/gm,
        '# (caretrail restore) $1',
      );
    const target = path.join(to, name);
    fs.writeFileSync(target, text, { mode: 0o600 });
    chownTo(target, user);
  }
}

/** The socket folder the restored server's own configuration names, when it exists here. */
function socketDirFor(to: string): string {
  let named: string | undefined;
  for (const file of ['postgresql.conf', 'postgresql.auto.conf']) {
    let text = '';
    try {
      text = fs.readFileSync(path.join(to, file), 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^\s*unix_socket_directories\s*=\s*'([^']*)'/gm))
      named = m[1]?.split(',')[0]?.trim();
  }
  if (named !== undefined && named !== '' && fs.existsSync(named)) return named;
  return fs.existsSync('/var/run/postgresql') ? '/var/run/postgresql' : to;
}

interface RecoveryOutcome {
  promoted: boolean;
  /** FATAL: the WAL ended before the recovery target. */
  targetNotReached: boolean;
  fatal: string | null;
  restoredTo: Date | null;
  redoDoneLsn: string | null;
  fromRepository: number;
  /** pgBackRest errors archive-get reported (a damaged segment names itself here). */
  archiveErrors: string[];
}

/** pgBackRest's error lines, each with its indented continuation lines (which name the file). */
function pgBackRestErrors(lines: string[]): string[] {
  const errors: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (!/ERROR: \[\d+\]/.test(line)) continue;
    let text = line.replace(/^.*?ERROR: \[(\d+)\]:\s*/, 'pgBackRest error $1: ').trim();
    while (/^\s+\S/.test(lines[i + 1] ?? '')) text += ` ${(lines[++i] ?? '').trim()}`;
    if (!errors.includes(text)) errors.push(text);
  }
  return errors;
}

function readRecoveryLog(logText: string): Omit<RecoveryOutcome, 'promoted'> {
  const lines = logText.split('\n');
  const lastMatch = (re: RegExp) => {
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = re.exec(lines[i] ?? '');
      if (m) return m;
    }
    return null;
  };
  const fatal = lastMatch(/FATAL:\s+(.*)$/);
  const committed = lastMatch(/last completed transaction was at log time (.*)$/);
  const redo = lastMatch(/redo done at ([0-9A-F]+\/[0-9A-F]+)/);
  return {
    targetNotReached: /recovery ended before configured recovery target was reached/.test(logText),
    fatal: fatal?.[1]?.trim() ?? null,
    restoredTo: committed?.[1] !== undefined ? logTime(committed[1]) : null,
    redoDoneLsn: redo?.[1] ?? null,
    fromRepository: new Set(
      [...logText.matchAll(/restored log file "([0-9A-F]{24})" from archive/g)].map((m) => m[1]),
    ).size,
    archiveErrors: pgBackRestErrors(lines).filter((e) => !/unable to find/.test(e)),
  };
}

export async function pgRestore(
  config: Config,
  options: PgRestoreOptions,
): Promise<PgRestoreReport> {
  const started = Date.now();
  const now = options.now ?? new Date();
  const log = options.log ?? (() => undefined);
  const repository = repositoryPath(options.from ?? config.replicaUrl);
  if (!fs.existsSync(path.join(repository, 'backup')))
    throw new PgReplicationError(`no pgBackRest repository at ${repository}`);
  if (!options.to) throw new PgReplicationError('restore needs --to DIR (a new data directory)');
  const to = path.resolve(options.to);
  const at = options.at !== undefined ? parseMoment(options.at) : null;
  if (at && at.getTime() > now.getTime())
    throw new PgReplicationError(
      `--at ${at.toISOString()} is in the future (now is ${now.toISOString()})`,
    );
  const windowStart = new Date(now.getTime() - config.replicaRetentionDays * 86_400_000);
  if (at && at < windowStart)
    throw new PgReplicationError(
      `--at ${at.toISOString()} is outside the retention window of ${config.replicaRetentionDays} days (earliest ${windowStart.toISOString()})`,
    );
  checkTarget(to, options.force === true);
  const user = runAsFor(options.user ?? 'postgres');
  const port = options.port ?? (Number(new URL(config.databaseUrl).port) || 5432);
  if (await portInUse(port))
    throw new PgReplicationError(
      `port ${port} is in use: stop the server there or restore with --port`,
    );

  // Before touching anything: the repository opens, holds a backup, and reaches the moment.
  const { ctx, info, dir } = await openRepository(config, repository, user);
  try {
    const oldest = info.backups[0];
    if (!oldest) throw new PgReplicationError('the repository holds no backup yet');
    // Backup times are whole seconds; the backup is consistent within the second after.
    const earliest = new Date(Math.max(oldest.stoppedAt.getTime() + 1000, windowStart.getTime()));
    if (at && at < earliest)
      throw new PgReplicationError(
        `--at ${at.toISOString()} is before the earliest restorable moment, ${earliest.toISOString()}`,
      );
    const archived = listArchivedWal(repository);
    const newestArchived = archived[archived.length - 1];
    const version = info.pgVersion ?? '15';
    const bin = pgBinDir(version);
    const spoolNewest = options.spool !== undefined ? newestInSpool(options.spool) : null;
    // Every commit in the repository precedes its segment's arrival: a moment after the newest
    // arrival (and no spool) is the latest state, and asking PostgreSQL for it would fail.
    let latest =
      at === null ||
      (spoolNewest === null && newestArchived !== undefined && at >= newestArchived.archivedAt);
    const gapBefore = (time: Date | null) => {
      const base = pickedBackup(info, time);
      return missingSegments(archived, base?.walStart ?? null)[0];
    };
    if (latest) {
      const gap = gapBefore(null);
      if (gap !== undefined)
        throw new PgReplicationError(
          `WAL segment ${gap} is missing from the repository: the latest state cannot be reached (restore with --at before it was written, or put it back)`,
        );
    }

    const attempt = async (time: Date | null) => {
      checkTarget(to, true);
      prepareTarget(to, user);
      const restoreStarted = Date.now();
      log(`restoring ${time ? `to ${time.toISOString()}` : 'the latest state'} into ${to}`);
      await pgbackrest(ctx, 'restore', [
        `--pg1-path=${to}`,
        '--archive-mode=off',
        ...(time ? ['--type=time', `--target=${targetTime(time)}`, '--target-action=promote'] : []),
      ]);
      if (options.configFrom !== undefined) copyConfiguration(options.configFrom, to, user);
      if (!fs.existsSync(path.join(to, 'postgresql.conf')))
        throw new PgReplicationError(
          `the backup holds no postgresql.conf (Debian keeps it in /etc/postgresql/${version}/main): restore again with --force and --pg-conf-dir pointing to the cluster's configuration folder`,
        );
      const fromSpool = options.spool !== undefined ? addSpool(options.spool, to, user) : [];
      const restoreSeconds = (Date.now() - restoreStarted) / 1000;
      const recoveryStarted = Date.now();
      const outcome = await startAndAwaitPromotion({ to, port, bin, user, log });
      return {
        outcome,
        fromSpool,
        restoreSeconds,
        recoverySeconds: (Date.now() - recoveryStarted) / 1000,
      };
    };

    let run = await attempt(latest ? null : at);
    if (
      !run.outcome.promoted &&
      run.outcome.targetNotReached &&
      run.outcome.archiveErrors.length === 0
    ) {
      const gap = gapBefore(null);
      if (gap !== undefined)
        throw new PgReplicationError(
          `WAL segment ${gap} is missing from the repository: the moment asked for cannot be reached`,
        );
      // The WAL ended, complete, before any commit after the moment: that is the latest state.
      log('no transaction after that moment is in the repository: restoring the latest state');
      latest = true;
      run = await attempt(null);
    }
    const { outcome } = run;
    if (!outcome.promoted) {
      const why =
        outcome.archiveErrors[0] ??
        (outcome.targetNotReached
          ? 'the WAL ended before the moment asked for'
          : (outcome.fatal ?? 'PostgreSQL stopped during recovery'));
      throw new PgReplicationError(`the restored server did not finish recovery: ${why}`);
    }
    // The latest state must reach the newest WAL there is, or something stopped it early.
    if (latest) {
      const newest = Math.max(
        newestArchived?.segNo ?? 0,
        spoolNewest !== null ? (parseWalName(spoolNewest)?.segNo ?? 0) : 0,
      );
      const reached = outcome.redoDoneLsn !== null ? segNoOfLsn(outcome.redoDoneLsn) : -1;
      if (reached < newest) {
        await stopRestored(to, bin, user);
        const timeline = newestArchived?.timeline ?? 1;
        const next = walName(timeline, reached + 1);
        const when = outcome.restoredTo?.toISOString() ?? null;
        throw new PgReplicationError(
          `recovery stopped early, before WAL segment ${next}${outcome.archiveErrors[0] !== undefined ? ` (${outcome.archiveErrors[0]})` : ' (damaged or unreadable)'}; the restored server in ${to} was stopped${when !== null ? `: restore with --at ${when} to accept the state before it` : ''}`,
        );
      }
    }
    const backup = pickedBackup(info, latest ? null : at);
    return {
      dataDirectory: to,
      port,
      target:
        at === null
          ? 'latest'
          : latest
            ? `${at.toISOString()} (the latest state)`
            : at.toISOString(),
      backup: backup?.label ?? '',
      restoredTo: outcome.restoredTo?.toISOString() ?? backup?.stoppedAt.toISOString() ?? null,
      walFromRepository: outcome.fromRepository,
      walFromSpool: run.fromSpool.length,
      restoreSeconds: run.restoreSeconds,
      recoverySeconds: run.recoverySeconds,
      durationSeconds: (Date.now() - started) / 1000,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function pickedBackup(info: StanzaInfo, at: Date | null) {
  const candidates = at ? info.backups.filter((b) => b.stoppedAt < at) : info.backups;
  return candidates[candidates.length - 1];
}

function newestInSpool(spool: string): string | null {
  let names: string[];
  try {
    names = fs.readdirSync(spool);
  } catch {
    throw new PgReplicationError(`cannot read the WAL spool ${spool}`);
  }
  const segments = names
    .map((n) => /^([0-9A-F]{24})(\.partial)?$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .sort();
  return segments[segments.length - 1] ?? null;
}

/** Whether something accepts connections on the port (an old server still running). */
function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      resolve(false);
    });
  });
}

async function stopRestored(to: string, bin: string, user: string | null): Promise<void> {
  if (!runningServer(to)) return;
  await runTool(path.join(bin, 'pg_ctl'), ['-D', to, '-m', 'fast', '-w', 'stop'], {
    user,
    timeoutMs: 120_000,
  });
}

/** Starts PostgreSQL on the restored directory and waits until it has been promoted. */
async function startAndAwaitPromotion(options: {
  to: string;
  port: number;
  bin: string;
  user: string | null;
  log: (line: string) => void;
}): Promise<RecoveryOutcome> {
  const { to, port, bin, user } = options;
  const logFile = path.join(to, 'caretrail-restore.log');
  fs.writeFileSync(logFile, '');
  chownTo(logFile, user);
  const socketDir = socketDirFor(to);
  const cluster = localCluster({ dataDir: to, port, socketDir, user, bin, logFile });
  const readLog = () => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  try {
    await cluster.start();
  } catch {
    // pg_ctl gives up when the server stops before it is ready: the log says why.
    return { promoted: false, ...readRecoveryLog(readLog()) };
  }
  options.log(`PostgreSQL started on port ${port}; replaying WAL`);
  for (;;) {
    if (!runningServer(to)) return { promoted: false, ...readRecoveryLog(readLog()) };
    try {
      if ((await cluster.query('select pg_is_in_recovery()')).trim() === 'f')
        return { promoted: true, ...readRecoveryLog(readLog()) };
    } catch {
      // Not accepting connections yet, or shutting down: look again.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
