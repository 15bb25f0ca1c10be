// Runs PostgreSQL's and pgBackRest's tools as the operating-system user that owns the cluster
// (usually postgres): directly when that is us, through runuser when we are root. Secrets travel
// in the environment or in 0600 files, never on a command line (visible in ps).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PgReplicationError } from './errors.js';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Run as this user (null: as ourselves). */
  user: string | null;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** The environment handed to the tools: ours without PGBACKREST_* (their options), plus `extra`. */
function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith('PGBACKREST_') && value !== undefined) env[key] = value;
  return { ...env, ...extra };
}

function commandFor(user: string | null, command: string, args: string[]): [string, string[]] {
  if (user === null) return [command, args];
  return ['runuser', ['-u', user, '--', command, ...args]];
}

/** Starts a long-running tool; its output is kept by the caller. */
export function spawnTool(command: string, args: string[], options: RunOptions): ChildProcess {
  const [file, argv] = commandFor(options.user, command, args);
  return spawn(file, argv, {
    env: toolEnv(options.env),
    // A folder every user may enter: the tools complain when they cannot enter ours.
    cwd: '/',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs a tool to its end and collects its output (never throws for a non-zero exit). */
export function runTool(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnTool(command, args, options);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer =
      options.timeoutMs !== undefined
        ? setTimeout(() => {
            child.kill('SIGTERM');
          }, options.timeoutMs)
        : undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new PgReplicationError(
          err.code === 'ENOENT'
            ? `${options.user === null ? command : 'runuser'} is not installed or not on the PATH`
            : `could not run ${path.basename(command)}: ${err.message}`,
        ),
      );
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The name of the user with this id. */
export function userName(uid: number): string {
  const r = spawnSync('id', ['-nu', String(uid)], { encoding: 'utf8' });
  const name = r.stdout.trim();
  if (r.status !== 0 || name === '') throw new PgReplicationError(`no user has the id ${uid}`);
  return name;
}

/**
 * Who the tools must run as to work on `file` (a data directory, the configuration file): null
 * when we own it; its owner when we are root; otherwise an error naming who should run us.
 */
export function runAsOwnerOf(file: string): string | null {
  let uid: number;
  try {
    uid = fs.statSync(file).uid;
  } catch {
    throw new PgReplicationError(`cannot read ${file}: run caretrail as root or as its owner`);
  }
  if (uid === process.getuid?.()) return null;
  if (process.getuid?.() === 0) return userName(uid);
  throw new PgReplicationError(
    `${file} belongs to ${userName(uid)}: run this command as that user or as root`,
  );
}

/** The user to run as for a new folder: `wanted` when we are root, else ourselves. */
export function runAsFor(wanted: string): string | null {
  return process.getuid?.() === 0 && wanted !== 'root' ? wanted : null;
}

/** Gives `p` to `user` (when we run as root on their behalf). */
export function chownTo(p: string, user: string | null): void {
  if (user === null) return;
  const r = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new PgReplicationError(`no user named ${user}`);
  fs.chownSync(p, Number(r.stdout.trim()), Number(g.stdout.trim()));
}

/** Makes `dir` (and missing parents) owned by `user`, with `mode`. */
export function makeDir(dir: string, user: string | null, mode: number): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    fs.mkdirSync(d, { mode });
    fs.chmodSync(d, mode);
    chownTo(d, user);
  }
}

/** Writes `text` to `file` atomically (temporary file, fsync, rename), mode 0600, owned by `user`. */
export function writePrivateFile(file: string, text: string, user: string | null): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, 0o600);
  chownTo(tmp, user);
  fs.renameSync(tmp, file);
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
