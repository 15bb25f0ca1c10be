// The WAL receiver for RPO 0 (CARETRAIL_REPLICA_SYNC=true): pg_receivewal streams the server's
// WAL into a spool folder as it is written and, with --synchronous, flushes it to disk and
// reports so at once; the server lists it in synchronous_standby_names, so no commit is
// acknowledged before its WAL is on the spool. Finished segments leave the spool once they are in
// the pgBackRest repository (archived by the server, or pushed by the receiver when the server
// has not after a grace period); the segment being written stays there in plain
// form until it is finished. A restore after losing the database machine takes the repository
// plus that last segment (pgRestore's `spool`). The spool belongs on another machine or disk
// than the database, with the same protection as a standby server's disk.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config.js';
import { configuredContext } from './backup.js';
import { pgBinDir } from './cluster.js';
import { PgReplicationError } from './errors.js';
import { pgbackrest } from './pgbackrest.js';
import { makeDir, runAsFor, runTool, spawnTool } from './run.js';
import { RECEIVER_NAME, RECEIVER_SLOT } from './server-settings.js';
import { checkPostgresUrl, repositoryPath } from './setup.js';

export interface PgReceiverOptions {
  /** Folder the WAL is streamed into (another disk or machine than the database). */
  spool: string;
  /** Flush and confirm every write (RPO 0); default: CARETRAIL_REPLICA_SYNC. */
  synchronous?: boolean;
  configFile?: string;
  /** How often the spool is looked at for finished segments. */
  pushIntervalMs?: number;
  /** A finished segment the server has not archived after this long is pushed by the receiver. */
  pushGraceMs?: number;
  log?: (line: string) => void;
}

export interface PgReceiver {
  readonly pid: number;
  /** Finished segments that left the spool (found in the repository, or pushed there). */
  pushed(): number;
  /** Stops streaming (what was received stays in the spool) and pushes what is finished. */
  stop(): Promise<void>;
  /** Settles when pg_receivewal ends by itself (it reconnects on its own while it can). */
  readonly exited: Promise<number | null>;
}

/** Whether a segment of this name is in the repository folder (by name: no pass needed). */
function archivedInRepository(repository: string, name: string): boolean {
  const root = path.join(repository, 'archive', 'caretrail');
  let ids: string[];
  try {
    ids = fs.readdirSync(root);
  } catch {
    return false;
  }
  return ids.some((id) => {
    try {
      return fs
        .readdirSync(path.join(root, id, name.slice(0, 16)))
        .some((f) => f.startsWith(`${name}-`));
    } catch {
      return false;
    }
  });
}

/** libpq's environment for the URL: no password on a command line. */
function connectionEnv(databaseUrl: string): Record<string, string> {
  const url = checkPostgresUrl(databaseUrl);
  const host = url.searchParams.get('host') ?? url.hostname.replace(/^\[|\]$/g, '');
  return {
    PGHOST: host === '' ? '/var/run/postgresql' : host,
    PGPORT: url.port === '' ? '5432' : url.port,
    PGUSER: decodeURIComponent(url.username || 'postgres'),
    ...(url.password !== '' ? { PGPASSWORD: decodeURIComponent(url.password) } : {}),
    PGDATABASE: decodeURIComponent(url.pathname.slice(1) || 'postgres'),
    PGAPPNAME: RECEIVER_NAME,
    PGCONNECT_TIMEOUT: '10',
  };
}

export async function pgReceiveWal(
  config: Config,
  options: PgReceiverOptions,
): Promise<PgReceiver> {
  const log = options.log ?? (() => undefined);
  const spool = path.resolve(options.spool);
  const user = runAsFor('postgres');
  makeDir(spool, user, 0o700);
  const ctx = configuredContext(config, options.configFile);
  const bin = path.join(pgBinDir(), 'pg_receivewal');
  const env = connectionEnv(config.databaseUrl);

  const slot = await runTool(
    bin,
    ['--create-slot', '--if-not-exists', `--slot=${RECEIVER_SLOT}`, '--no-password'],
    { user, env, timeoutMs: 30_000 },
  );
  if (slot.code !== 0)
    throw new PgReplicationError(
      `pg_receivewal could not create its replication slot: ${slot.stderr.trim().split('\n').pop() ?? ''} (the database user needs the REPLICATION attribute and pg_hba.conf a replication line)`,
    );

  const synchronous = options.synchronous ?? config.replicaSync;
  const child = spawnTool(
    bin,
    [
      '-D',
      spool,
      `--slot=${RECEIVER_SLOT}`,
      '--no-password',
      ...(synchronous ? ['--synchronous'] : []),
    ],
    { user, env },
  );
  const pid = child.pid;
  if (pid === undefined) throw new PgReplicationError('pg_receivewal did not start');
  child.stderr?.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (line.trim() !== '') log(line.trim());
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      resolve(code);
    });
  });

  let pushed = 0;
  let pushing: Promise<void> = Promise.resolve();
  const repository = repositoryPath(config.replicaUrl);
  const graceMs = options.pushGraceMs ?? 10_000;
  const push = async (all: boolean) => {
    let names: string[];
    try {
      names = fs
        .readdirSync(spool)
        .filter((n) => /^[0-9A-F]{24}$/.test(n))
        .sort();
    } catch {
      return;
    }
    for (const name of names) {
      const file = path.join(spool, name);
      try {
        // The server archives the same segment itself: usually it is there already, and
        // compressing and encrypting it a second time would only cost CPU.
        if (!archivedInRepository(repository, name)) {
          if (!all && Date.now() - fs.statSync(file).mtimeMs < graceMs) continue;
          await pgbackrest(ctx, 'archive-push', [file], 120_000);
        }
        fs.rmSync(file, { force: true });
        pushed++;
      } catch (err) {
        log(`could not push ${name}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
    }
  };
  const timer = setInterval(() => {
    pushing = pushing.then(() => push(false));
  }, options.pushIntervalMs ?? 1000);
  void exited.then(() => {
    clearInterval(timer);
  });

  return {
    pid,
    pushed: () => pushed,
    exited,
    async stop() {
      clearInterval(timer);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await pushing;
      await push(true);
    },
  };
}
