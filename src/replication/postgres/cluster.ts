// A PostgreSQL cluster on this machine, driven through its own tools (initdb, pg_ctl, psql) as
// the user that owns it: the restored server a restore starts, and the private clusters of the
// drill and the tests.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PgReplicationError } from './errors.js';
import { chownTo, makeDir, runTool } from './run.js';

/** The folder of PostgreSQL's server binaries (Debian layout), for a major version or the newest. */
export function pgBinDir(version?: string): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'pg_ctl')))
    : [];
  const chosen = version ?? versions.sort((a, b) => Number(b) - Number(a))[0];
  if (chosen === undefined || !versions.includes(chosen)) {
    const pkg = version !== undefined ? `postgresql-${version}` : 'postgresql';
    throw new PgReplicationError(
      `PostgreSQL ${version ?? ''} server binaries are not installed (apt-get install ${pkg})`.replace(
        / +/g,
        ' ',
      ),
    );
  }
  return path.join(root, chosen, 'bin');
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** What postmaster.pid says about a running server (null: none, or a stale file). */
export function runningServer(
  dataDir: string,
): { pid: number; port: number; socketDir: string } | null {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return null;
  }
  return { pid, port: Number(lines[3]), socketDir: (lines[4] ?? '').trim() };
}

export interface LocalCluster {
  dataDir: string;
  port: number;
  socketDir: string;
  /** The OS user it runs as (null: ourselves). */
  user: string | null;
  bin: string;
  logFile: string;
  /** A URL over TCP on 127.0.0.1 (trust authentication in private clusters). */
  url(database?: string): string;
  start(): Promise<void>;
  /** `immediate` is a crash: no checkpoint, no goodbye to clients. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Runs SQL through psql over the socket; the unaligned, tuples-only output. */
  query(sql: string, database?: string): Promise<string>;
}

export function localCluster(options: {
  dataDir: string;
  port: number;
  socketDir: string;
  user: string | null;
  bin: string;
  logFile: string;
}): LocalCluster {
  const { dataDir, port, socketDir, user, bin, logFile } = options;
  const tool = async (name: string, args: string[], timeoutMs = 120_000) => {
    const r = await runTool(path.join(bin, name), args, { user, timeoutMs });
    if (r.code !== 0)
      throw new PgReplicationError(
        `${name} failed: ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(-1)[0] ?? ''}`,
      );
    return r.stdout;
  };
  return {
    dataDir,
    port,
    socketDir,
    user,
    bin,
    logFile,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async start() {
      await tool('pg_ctl', [
        '-D',
        dataDir,
        '-o',
        `-p ${port} -k ${socketDir}`,
        '-l',
        logFile,
        '-w',
        '-t',
        '600',
        'start',
      ]);
    },
    async stop(mode = 'fast') {
      if (!runningServer(dataDir)) return;
      await tool('pg_ctl', ['-D', dataDir, '-m', mode, '-w', 'stop']);
    },
    async query(sql, database = 'postgres') {
      return tool(
        'psql',
        [
          '-X',
          '-A',
          '-t',
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-h',
          socketDir,
          '-p',
          String(port),
        ].concat(['-U', 'postgres', '-d', database, '-c', sql]),
        60_000,
      );
    },
  };
}

/**
 * A new cluster in `dir` (data in dir/data, socket and log in dir), trust authentication on
 * 127.0.0.1 and the socket only: for drills and tests, never for patient data in production.
 */
export async function createPrivateCluster(options: {
  dir: string;
  port?: number;
  user?: string;
  settings?: Record<string, string>;
}): Promise<LocalCluster> {
  const user = process.getuid?.() === 0 ? (options.user ?? 'postgres') : null;
  const bin = pgBinDir();
  makeDir(options.dir, user, 0o755);
  const dataDir = path.join(options.dir, 'data');
  const r = await runTool(
    path.join(bin, 'initdb'),
    ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'],
    { user, timeoutMs: 120_000 },
  );
  if (r.code !== 0) throw new PgReplicationError(`initdb failed: ${r.stderr.trim()}`);
  const port = options.port ?? (await freePort());
  const settings = {
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${options.dir}'`,
    fsync: 'on',
    ...options.settings,
  };
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    `\n# caretrail private cluster\n${Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n')}\n`,
  );
  const logFile = path.join(options.dir, 'postgresql.log');
  fs.writeFileSync(logFile, '');
  chownTo(logFile, user);
  const cluster = localCluster({ dataDir, port, socketDir: options.dir, user, bin, logFile });
  await cluster.start();
  return cluster;
}
