// What PostgreSQL must be set to for Caretrail's replication, checked against the running server:
// WAL archiving into the repository through pgBackRest, a segment switch at least every second
// (the asynchronous RPO), and for CARETRAIL_REPLICA_SYNC the WAL receiver as synchronous standby.
// A production server is never changed silently: setup prints the ALTER SYSTEM lines, and
// applies them only when asked (--apply).
import pg from 'pg';
import { PgReplicationError } from './errors.js';
import { WAL_SEGMENT_BYTES } from './wal-names.js';

/** application_name of the WAL receiver (pg_receivewal), as synchronous_standby_names names it. */
export const RECEIVER_NAME = 'caretrail_receivewal';
export const RECEIVER_SLOT = 'caretrail_receivewal';
/**
 * archive_timeout: asynchronous, the repository alone must stay within about a second of the
 * server; with the synchronous WAL receiver the spool holds the newest WAL, and forcing a 16 MB
 * segment every second (written and fsync'd by the server and the receiver, then compressed and
 * encrypted) would only slow every commit down, so a minute is enough for the repository.
 */
export function archiveTimeoutSeconds(sync: boolean): number {
  return sync ? 60 : 1;
}

export interface ServerFacts {
  version: string;
  dataDirectory: string;
  port: number;
  socketDirectory: string;
  walSegmentBytes: number;
  settings: Record<SettingName, string>;
  /** Settings changed with ALTER SYSTEM that wait for a restart. */
  pendingRestart: string[];
  receiverConnected: boolean;
}

const SETTING_NAMES = [
  'wal_level',
  'archive_mode',
  'archive_command',
  'archive_timeout',
  'synchronous_standby_names',
  'synchronous_commit',
] as const;
type SettingName = (typeof SETTING_NAMES)[number];

/** Opens a client with a short connect timeout and one clear error when it cannot. */
export async function connect(databaseUrl: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    const code = (err as { code?: string }).code;
    throw new PgReplicationError(
      `cannot connect to the database in CARETRAIL_DATABASE_URL${code ? ` (${code})` : ''}`,
    );
  }
  return client;
}

export async function readServerFacts(client: pg.Client): Promise<ServerFacts> {
  const superuser = await client.query<{ ok: boolean }>(
    `select rolsuper or pg_has_role(current_user, 'pg_read_all_settings', 'member') as ok
       from pg_roles where rolname = current_user`,
  );
  if (superuser.rows[0]?.ok !== true)
    throw new PgReplicationError(
      'the database user in CARETRAIL_DATABASE_URL can read no server settings: run this with a superuser URL (--database-url postgres://postgres@…)',
    );
  const { rows } = await client.query<{
    name: string;
    setting: string;
    unit: string | null;
    pending_restart: boolean;
  }>(
    `select name, setting, unit, pending_restart from pg_settings
      where name = any($1::text[])`,
    [
      [
        ...SETTING_NAMES,
        'data_directory',
        'port',
        'unix_socket_directories',
        'server_version_num',
        'wal_segment_size',
      ],
    ],
  );
  const get = (name: string) => rows.find((r) => r.name === name);
  const value = (name: string) => get(name)?.setting ?? '';
  const settings = Object.fromEntries(SETTING_NAMES.map((n) => [n, value(n)])) as Record<
    SettingName,
    string
  >;
  const receivers = await client.query<{ n: string }>(
    `select count(*) as n from pg_stat_replication where application_name = $1`,
    [RECEIVER_NAME],
  );
  const segment = get('wal_segment_size');
  return {
    version: String(Math.floor(Number(value('server_version_num')) / 10000)),
    dataDirectory: value('data_directory'),
    port: Number(value('port')),
    socketDirectory: (value('unix_socket_directories').split(',')[0] ?? '').trim(),
    walSegmentBytes: Number(segment?.setting ?? 0) * (segment?.unit === '8kB' ? 8192 : 1),
    settings,
    pendingRestart: rows.filter((r) => r.pending_restart).map((r) => r.name),
    receiverConnected: Number(receivers.rows[0]?.n ?? 0) > 0,
  };
}

export interface SettingChange {
  name: SettingName;
  current: string;
  wanted: string;
  /** Takes effect only after a restart (wal_level, archive_mode). */
  restart: boolean;
  sql: string;
  why: string;
}

const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** The archive_command that pushes WAL into the repository through this configuration file. */
export function archiveCommandFor(configFile: string): string {
  return `pgbackrest --config=${configFile} --stanza=caretrail archive-push %p`;
}

/** The settings to change, in the order to apply them; empty when the server is ready. */
export function settingChanges(
  facts: ServerFacts,
  options: { configFile: string; sync: boolean },
): SettingChange[] {
  const s = facts.settings;
  const changes: SettingChange[] = [];
  const want = (
    name: SettingName,
    wanted: string,
    restart: boolean,
    why: string,
    ok: boolean,
  ): void => {
    if (!ok)
      changes.push({
        name,
        current: s[name],
        wanted,
        restart,
        sql: `ALTER SYSTEM SET ${name} = ${quote(wanted)};`,
        why,
      });
  };
  want(
    'wal_level',
    'replica',
    true,
    'WAL must carry enough to rebuild the database elsewhere',
    s.wal_level === 'replica' || s.wal_level === 'logical',
  );
  want(
    'archive_mode',
    'on',
    true,
    'PostgreSQL hands every finished WAL segment to archive_command',
    s.archive_mode === 'on' || s.archive_mode === 'always',
  );
  const command = archiveCommandFor(options.configFile);
  want(
    'archive_command',
    command,
    false,
    'pgBackRest pushes each segment into the encrypted repository',
    s.archive_command === command,
  );
  const timeout = Number(s.archive_timeout);
  const wantedTimeout = archiveTimeoutSeconds(options.sync);
  want(
    'archive_timeout',
    `${wantedTimeout}s`,
    false,
    options.sync
      ? 'a segment reaches the repository at least every minute (the receiver holds the newest WAL)'
      : 'a segment is finished (and archived) at least every second while writes arrive: RPO about a second',
    timeout > 0 && timeout <= wantedTimeout,
  );
  if (options.sync) {
    const names = s.synchronous_standby_names;
    want(
      'synchronous_standby_names',
      RECEIVER_NAME,
      false,
      'a commit is acknowledged only once the WAL receiver has it on disk (RPO 0)',
      new RegExp(`(^|[\\s,(])"?${RECEIVER_NAME}"?([\\s,)]|$)`).test(names),
    );
    want(
      'synchronous_commit',
      'on',
      false,
      'commits wait for the synchronous standby to flush',
      s.synchronous_commit === 'on' || s.synchronous_commit === 'remote_apply',
    );
  }
  return changes;
}

/** Checks the server can be used at all (a clear error otherwise). */
export function checkServer(facts: ServerFacts): void {
  if (Number(facts.version) < 12)
    throw new PgReplicationError(`PostgreSQL ${facts.version} is too old: 12 or newer is needed`);
  if (facts.walSegmentBytes !== WAL_SEGMENT_BYTES)
    throw new PgReplicationError(
      `the server's WAL segments are ${facts.walSegmentBytes} bytes: Caretrail's checks support the default 16 MB only`,
    );
}
