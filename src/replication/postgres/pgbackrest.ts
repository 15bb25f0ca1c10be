// pgBackRest as Caretrail uses it: one stanza ("caretrail"), one folder repository (repo1),
// encrypted with a passphrase derived from the master key (cipher-pass.ts), retention by time.
// This module writes and reads its configuration file, runs its commands and reads their JSON.
import fs from 'node:fs';
import path from 'node:path';
import { PgReplicationError } from './errors.js';
import { runTool } from './run.js';

export const STANZA = 'caretrail';
export const PGBACKREST = 'pgbackrest';

/** Where the CLI keeps pgBackRest's configuration on the database machine. */
export const DEFAULT_CONFIG_FILE = '/etc/pgbackrest/caretrail.conf';

export interface StatePaths {
  lock: string;
  log: string;
  spool: string;
}

/** pgBackRest's working folders: inside `stateDir`, or its own defaults (Debian creates them). */
export function statePaths(stateDir?: string): StatePaths {
  if (stateDir === undefined)
    return { lock: '/tmp/pgbackrest', log: '/var/log/pgbackrest', spool: '/var/spool/pgbackrest' };
  return {
    lock: path.join(stateDir, 'lock'),
    log: path.join(stateDir, 'log'),
    spool: path.join(stateDir, 'spool'),
  };
}

export interface RepositoryConfig {
  repoPath: string;
  cipherPass: string;
  /** Id of the master key the pass is derived from (a comment, for `status`). */
  keyId: string;
  retentionDays: number;
  /** pgBackRest's lock, log and spool folders. */
  state: StatePaths;
  /** Fetch WAL ahead in parallel during recovery (restores: fewer, faster archive-gets). */
  prefetchWal?: boolean;
  pg?: {
    path: string;
    port: number;
    socketPath: string;
    user: string;
    database: string;
  };
}

/** The configuration file's text. */
export function renderConfig(c: RepositoryConfig): string {
  const lines = [
    '# Written by `caretrail replicate setup`: edits are overwritten the next time it runs.',
    '# The cipher pass is derived from the Caretrail master key named below; this file stays on',
    '# the database machine (mode 0600) and never goes into the repository.',
    `# caretrail-master-key-id=${c.keyId}`,
    '[global]',
    `repo1-path=${c.repoPath}`,
    'repo1-cipher-type=aes-256-cbc',
    `repo1-cipher-pass=${c.cipherPass}`,
    // Full backups are kept for the retention window (and the newest one older than it, so that
    // the whole window stays restorable); WAL is kept as long as a backup needs it.
    'repo1-retention-full-type=time',
    `repo1-retention-full=${c.retentionDays}`,
    'compress-type=zst',
    'start-fast=y',
    'process-max=2',
    `lock-path=${c.state.lock}`,
    `log-path=${c.state.log}`,
    `spool-path=${c.state.spool}`,
    'log-level-console=warn',
    'log-level-file=info',
  ];
  if (c.prefetchWal === true) lines.push('archive-async=y', 'archive-get-queue-max=256MiB');
  if (c.pg) {
    lines.push(
      '',
      `[${STANZA}]`,
      `pg1-path=${c.pg.path}`,
      `pg1-port=${c.pg.port}`,
      `pg1-socket-path=${c.pg.socketPath}`,
      `pg1-user=${c.pg.user}`,
      `pg1-database=${c.pg.database}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The `key=value` options of a configuration file (all sections) and the key id comment. */
export function readConfigFile(file: string): { options: Map<string, string>; keyId: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PgReplicationError(
      code === 'ENOENT'
        ? `${file} does not exist: run caretrail replicate setup first`
        : `cannot read ${file}: run caretrail as root or as its owner`,
    );
  }
  const options = new Map<string, string>();
  let keyId = '';
  for (const line of text.split('\n')) {
    const id = /^#\s*caretrail-master-key-id=(\S+)/.exec(line);
    if (id?.[1] !== undefined) keyId = id[1];
    const kv = /^([a-z0-9-]+)=(.*)$/.exec(line.trim());
    if (kv?.[1] !== undefined && kv[2] !== undefined) options.set(kv[1], kv[2]);
  }
  return { options, keyId };
}

export interface PgBackRestContext {
  configFile: string;
  /** OS user to run as (null: ourselves). */
  user: string | null;
  /** The repository pass, scrubbed from anything we show. */
  secret: string;
}

/** The first `ERROR: [nnn]: …` line of pgBackRest's output, without the secret. */
export function errorLine(output: string, secret: string): string {
  const lines = output.split('\n');
  const at = lines.findIndex((l) => /ERROR: \[\d+\]/.test(l));
  let text = (lines[at] ?? lines.find((l) => l.trim() !== '') ?? 'no output').replace(
    /^.*?ERROR: \[(\d+)\]:\s*/,
    'pgBackRest error $1: ',
  );
  // Continuation lines (indented) carry the detail, such as the file concerned.
  for (let i = at + 1; at >= 0 && /^\s+\S/.test(lines[i] ?? ''); i++)
    text += ` ${(lines[i] ?? '').trim()}`;
  if (secret !== '') text = text.split(secret).join('<redacted>');
  return text.trim().slice(0, 500);
}

/**
 * Runs `pgbackrest <command>` for the caretrail stanza and returns its standard output; a
 * failure becomes a PgReplicationError naming the command and pgBackRest's own error line.
 */
export async function pgbackrest(
  ctx: PgBackRestContext,
  command: string,
  args: string[] = [],
  timeoutMs?: number,
): Promise<string> {
  const result = await runTool(
    PGBACKREST,
    [`--config=${ctx.configFile}`, `--stanza=${STANZA}`, ...args, command],
    { user: ctx.user, ...(timeoutMs !== undefined ? { timeoutMs } : {}) },
  );
  if (result.code !== 0)
    throw new PgReplicationError(
      `pgbackrest ${command} failed: ${errorLine(`${result.stderr}\n${result.stdout}`, ctx.secret)}`,
    );
  return result.stdout;
}

export interface BackupInfo {
  label: string;
  type: 'full' | 'diff' | 'incr';
  startedAt: Date;
  stoppedAt: Date;
  /** Size of the database it holds. */
  sizeBytes: number;
  /** What it takes in the repository (compressed, and only the changes for diff/incr). */
  repositoryBytes: number;
  /** The first and last WAL segments it needs. */
  walStart: string;
  walStop: string;
}

export interface StanzaInfo {
  /** pgBackRest's status: 0 ok, 1 no stanza, 2 no backup yet, 99 other (e.g. a wrong pass). */
  statusCode: number;
  statusMessage: string;
  /** The repository's own status message when it failed (a wrong pass shows here). */
  repositoryMessage: string;
  backups: BackupInfo[];
  /** PostgreSQL major version of the stanza's current database ("15"). */
  pgVersion: string | null;
  archive: { id: string; min: string | null; max: string | null }[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

function field(v: unknown, ...keys: string[]): unknown {
  let at = v;
  for (const key of keys) at = isRecord(at) ? at[key] : undefined;
  return at;
}

/** Reads `pgbackrest info --output=json` for our stanza. */
export function parseInfo(json: string): StanzaInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new PgReplicationError('pgbackrest info did not answer in JSON');
  }
  const stanza = Array.isArray(parsed)
    ? (parsed as unknown[]).find((s) => field(s, 'name') === STANZA)
    : undefined;
  if (stanza === undefined)
    throw new PgReplicationError('pgbackrest info named no caretrail stanza');
  const repo = field(stanza, 'repo');
  const repoStatus = Array.isArray(repo) ? field(repo[0], 'status', 'message') : undefined;
  const backups = (
    Array.isArray(field(stanza, 'backup')) ? (field(stanza, 'backup') as unknown[]) : []
  )
    .filter((b) => field(b, 'error') !== true)
    .map((b): BackupInfo => {
      const type = field(b, 'type');
      return {
        label: String(field(b, 'label')),
        type: type === 'diff' || type === 'incr' ? type : 'full',
        startedAt: new Date(Number(field(b, 'timestamp', 'start')) * 1000),
        stoppedAt: new Date(Number(field(b, 'timestamp', 'stop')) * 1000),
        sizeBytes: Number(field(b, 'info', 'size')),
        repositoryBytes: Number(field(b, 'info', 'repository', 'size')),
        walStart: String(field(b, 'archive', 'start')),
        walStop: String(field(b, 'archive', 'stop')),
      };
    })
    .sort((a, b) => a.stoppedAt.getTime() - b.stoppedAt.getTime());
  const dbs = field(stanza, 'db');
  const lastDb = Array.isArray(dbs) ? (dbs as unknown[])[dbs.length - 1] : undefined;
  const version = field(lastDb, 'version');
  const archive = Array.isArray(field(stanza, 'archive'))
    ? (field(stanza, 'archive') as unknown[]).map((a) => {
        const min = field(a, 'min');
        const max = field(a, 'max');
        return {
          id: String(field(a, 'id')),
          min: typeof min === 'string' ? min : null,
          max: typeof max === 'string' ? max : null,
        };
      })
    : [];
  const statusMessage = field(stanza, 'status', 'message');
  return {
    statusCode: Number(field(stanza, 'status', 'code')),
    statusMessage: typeof statusMessage === 'string' ? statusMessage : '',
    repositoryMessage: typeof repoStatus === 'string' ? repoStatus : '',
    backups,
    pgVersion: typeof version === 'string' ? version : null,
    archive,
  };
}

const WRONG_KEY = /unable to load info file|FormatError|cipher/i;

/** `pgbackrest info` for the stanza, with a clear error when the repository does not open. */
export async function stanzaInfo(ctx: PgBackRestContext): Promise<StanzaInfo> {
  const out = await pgbackrest(ctx, 'info', ['--output=json']);
  let info: StanzaInfo;
  try {
    info = parseInfo(out);
  } catch (err) {
    // A wrong pass decrypts the info file into bytes that may not even survive as JSON.
    if (WRONG_KEY.test(out)) throw wrongKey();
    throw err;
  }
  if (info.statusCode === 99 && WRONG_KEY.test(info.repositoryMessage)) throw wrongKey();
  return info;
}

function wrongKey(): PgReplicationError {
  return new PgReplicationError(
    "the repository does not open with this installation's master key (another key, or its files were altered)",
  );
}
