// Configuration: read once at boot from CARETRAIL_* variables and --flags, validated, frozen.
import fs from 'node:fs';
import path from 'node:path';
import { defaultCipherThreads } from './blobs/cipher-pool.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly httpRedirectPort: number | null;
  readonly dataDir: string;
  readonly databaseUrl: string;
  readonly publicUrl: string;
  readonly logLevel: LogLevel;
  readonly sessionTtlMinutes: number;
  readonly bodyLimitBytes: number;
  readonly loginMaxFailures: number;
  readonly loginIpMaxFailures: number;
  readonly loginLockoutMinutes: number;
  readonly trustProxy: boolean;
  readonly pgPoolSize: number;
  readonly sqliteMaxBatch: number;
  readonly shutdownTimeoutMs: number;
  readonly requestTimeoutSeconds: number;
  readonly maxConnections: number;
  readonly auditSigningKey: string;
  readonly auditCheckpointEvents: number;
  readonly auditCheckpointSeconds: number;
  readonly auditAppend: 'sealer' | 'head-lock';
  readonly alertDistinctPatients: number;
  readonly alertWindowMinutes: number;
  readonly blobUrl: string;
  readonly cipherThreads: number;
  readonly masterKey: string;
  readonly maxUploadBytes: number;
  readonly uploadStallSeconds: number;
  readonly archiveAfterDays: number;
  readonly lifecycleIntervalMinutes: number;
  readonly smtpUrl: string;
  readonly mailFrom: string;
  readonly deliveryMaxAttempts: number;
  readonly deliveryBackoffMs: number;
  readonly webhookTimeoutMs: number;
  readonly webhookAllowPrivate: boolean;
  readonly previewMaxBytes: number;
  readonly sessionIdleMinutes: number;
  readonly invitationTtlHours: number;
  readonly breakGlassMinutes: number;
  readonly ownerReleaseDelayHours: number;
  readonly resultMaxBytes: number;
  readonly mllpPort: number | null;
  readonly mllpHost: string;
  readonly mllpKeyId: string;
  readonly mllpIdleSeconds: number;
  readonly mllpTls: boolean;
  readonly mllpTlsCa: string;
  readonly resultFallbackMatch: boolean;
  readonly replicaUrl: string;
  readonly replicaSync: boolean;
  readonly replicaRetentionDays: number;
  readonly replicaSnapshotHours: number;
  readonly blobReplicaUrl: string;
}

export class ConfigError extends Error {}

interface Setting<K extends keyof Config> {
  key: K;
  env: string;
  flag: string;
  description: string;
  parse: (raw: string) => Config[K];
  /** Default given the other settings read so far (data dir, host, port). */
  fallback: (partial: Partial<Config>) => Config[K];
}

const LOG_LEVELS: readonly LogLevel[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

function integer(min: number, max: number, what: string): (raw: string) => number {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${what} between ${min} and ${max}`);
    const n = Number(raw);
    if (n < min || n > max) throw new ConfigError(`${what} between ${min} and ${max}`);
    return n;
  };
}

/**
 * Connections the server may hold without running out of file descriptors for its database,
 * blobs and logs: the soft open-file limit less 512 (a quarter of it when small), 10,000 when the
 * limit cannot be read (not Linux).
 */
function defaultMaxConnections(): number {
  let limits = '';
  try {
    limits = fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return 10_000;
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1];
  if (soft === undefined || soft === 'unlimited') return 10_000;
  const n = Number(soft);
  return Math.max(16, n >= 2048 ? n - 512 : Math.floor((n * 3) / 4));
}

function hostName(raw: string): string {
  if (!/^[A-Za-z0-9.:[\]-]+$/.test(raw)) throw new ConfigError('a host name or IP address');
  return raw;
}

function filePath(raw: string): string {
  if (raw.trim() === '') throw new ConfigError('a file path');
  return path.resolve(raw.trim());
}

function bool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError('true or false');
}

function databaseUrl(raw: string): string {
  const v = raw.trim();
  if (/^sqlite:.+/.test(v)) return v;
  if (/^postgres(ql)?:\/\/.+/.test(v)) {
    try {
      new URL(v);
      return v;
    } catch {
      throw new ConfigError('a valid postgres:// URL');
    }
  }
  throw new ConfigError('sqlite:PATH or postgres://USER@HOST:PORT/DATABASE');
}

function httpUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return raw.replace(/\/+$/, '');
  } catch {
    // fall through to the error below
  }
  throw new ConfigError('an http:// or https:// URL');
}

function blobUrl(raw: string): string {
  const v = raw.trim();
  if (/^file:.+/.test(v)) return v;
  if (/^s3:\/\/[^/?]+/.test(v)) {
    try {
      new URL(v);
      return v;
    } catch {
      throw new ConfigError('a valid s3:// URL');
    }
  }
  throw new ConfigError('file:PATH or s3://bucket?region=…&endpoint=…');
}

function replicaUrl(raw: string): string {
  const v = raw.trim();
  if (/^file:.+/.test(v)) return `file:${path.resolve(v.slice('file:'.length))}`;
  if (/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/|\?|$)/.test(v)) return v;
  throw new ConfigError('file:/path/to/folder or s3://bucket/prefix?region=…&endpoint=…');
}

function smtpUrl(raw: string): string {
  try {
    const u = new URL(raw.trim());
    if (u.protocol === 'smtp:' || u.protocol === 'smtps:') return raw.trim();
  } catch {
    // fall through to the error below
  }
  throw new ConfigError('an smtp:// or smtps:// URL');
}

// Order matters: later fallbacks read earlier values.
const SETTINGS = [
  {
    key: 'host',
    env: 'CARETRAIL_HOST',
    flag: 'host',
    description: 'Address the HTTP server listens on.',
    parse: hostName,
    fallback: () => '127.0.0.1',
  },
  {
    key: 'port',
    env: 'CARETRAIL_PORT',
    flag: 'port',
    description: 'HTTP port (0 picks a free one).',
    parse: integer(0, 65535, 'an integer'),
    fallback: () => 8080,
  },
  {
    key: 'tlsCert',
    env: 'CARETRAIL_TLS_CERT',
    flag: 'tls-cert',
    description: 'PEM certificate chain: serve HTTPS (with CARETRAIL_TLS_KEY); re-read on SIGHUP.',
    parse: filePath,
    fallback: () => '',
  },
  {
    key: 'tlsKey',
    env: 'CARETRAIL_TLS_KEY',
    flag: 'tls-key',
    description: 'PEM private key of the certificate; re-read on SIGHUP.',
    parse: filePath,
    fallback: () => '',
  },
  {
    key: 'dataDir',
    env: 'CARETRAIL_DATA_DIR',
    flag: 'data-dir',
    description: 'Folder for the embedded SQLite database (created if missing).',
    parse: (raw: string) => {
      if (raw.trim() === '') throw new ConfigError('a folder path');
      return path.resolve(raw);
    },
    fallback: () => path.resolve('data'),
  },
  {
    key: 'databaseUrl',
    env: 'CARETRAIL_DATABASE_URL',
    flag: 'database-url',
    description: 'sqlite:PATH (default: the data folder) or postgres://…',
    parse: databaseUrl,
    fallback: (p: Partial<Config>) => `sqlite:${path.join(p.dataDir ?? 'data', 'caretrail.db')}`,
  },
  {
    key: 'publicUrl',
    env: 'CARETRAIL_PUBLIC_URL',
    flag: 'public-url',
    description: 'Base URL people use to reach the server (setup link).',
    parse: httpUrl,
    fallback: (p: Partial<Config>) => {
      const host = p.host === '0.0.0.0' || p.host === '::' ? '127.0.0.1' : (p.host ?? '127.0.0.1');
      const scheme = p.tlsCert ? 'https' : 'http';
      return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${p.port ?? 8080}`;
    },
  },
  {
    key: 'httpRedirectPort',
    env: 'CARETRAIL_HTTP_REDIRECT_PORT',
    flag: 'http-redirect-port',
    description:
      'Plain-HTTP port that only redirects to the https public URL (unset: none; 0 picks a free one).',
    parse: integer(0, 65535, 'an integer'),
    fallback: () => null,
  },
  {
    key: 'logLevel',
    env: 'CARETRAIL_LOG_LEVEL',
    flag: 'log-level',
    description: 'fatal, error, warn, info, debug, trace or silent.',
    parse: (raw: string) => {
      const level = LOG_LEVELS.find((l) => l === raw.trim().toLowerCase());
      if (!level) throw new ConfigError(LOG_LEVELS.join(', '));
      return level;
    },
    fallback: (): LogLevel => 'info',
  },
  {
    key: 'sessionTtlMinutes',
    env: 'CARETRAIL_SESSION_TTL_MINUTES',
    flag: 'session-ttl-minutes',
    description: 'Lifetime of a login token.',
    parse: integer(1, 43200, 'an integer number of minutes'),
    fallback: () => 720,
  },
  {
    key: 'bodyLimitBytes',
    env: 'CARETRAIL_BODY_LIMIT_BYTES',
    flag: 'body-limit-bytes',
    description: 'Largest JSON request body accepted (413 above it).',
    parse: integer(1024, 104857600, 'an integer number of bytes'),
    fallback: () => 1048576,
  },
  {
    key: 'loginMaxFailures',
    env: 'CARETRAIL_LOGIN_MAX_FAILURES',
    flag: 'login-max-failures',
    description: 'Failed logins per account before a temporary lockout.',
    parse: integer(1, 1000, 'an integer'),
    fallback: () => 5,
  },
  {
    key: 'loginIpMaxFailures',
    env: 'CARETRAIL_LOGIN_IP_MAX_FAILURES',
    flag: 'login-ip-max-failures',
    description: 'Failed logins per client address before a temporary lockout.',
    parse: integer(1, 100000, 'an integer'),
    fallback: () => 20,
  },
  {
    key: 'loginLockoutMinutes',
    env: 'CARETRAIL_LOGIN_LOCKOUT_MINUTES',
    flag: 'login-lockout-minutes',
    description: 'Failure counting window and lockout length.',
    parse: integer(1, 1440, 'an integer number of minutes'),
    fallback: () => 15,
  },
  {
    key: 'trustProxy',
    env: 'CARETRAIL_TRUST_PROXY',
    flag: 'trust-proxy',
    description: 'Take the client address from X-Forwarded-For (only behind a proxy you run).',
    parse: bool,
    fallback: () => false,
  },
  {
    key: 'pgPoolSize',
    env: 'CARETRAIL_PG_POOL_SIZE',
    flag: 'pg-pool-size',
    description: 'PostgreSQL connections per instance.',
    parse: integer(1, 200, 'an integer'),
    fallback: () => 10,
  },
  {
    key: 'sqliteMaxBatch',
    env: 'CARETRAIL_SQLITE_MAX_BATCH',
    flag: 'sqlite-max-batch',
    description:
      'Most requests committed together in one SQLite transaction (1 turns group commit off).',
    parse: integer(1, 100000, 'an integer'),
    fallback: () => 1000,
  },
  {
    key: 'shutdownTimeoutMs',
    env: 'CARETRAIL_SHUTDOWN_TIMEOUT_MS',
    flag: 'shutdown-timeout-ms',
    description: 'How long SIGTERM waits for in-flight requests.',
    parse: integer(0, 600000, 'an integer number of milliseconds'),
    fallback: () => 10000,
  },
  {
    key: 'requestTimeoutSeconds',
    env: 'CARETRAIL_REQUEST_TIMEOUT_SECONDS',
    flag: 'request-timeout-seconds',
    description:
      'Longest a whole request (headers and body, e.g. an upload) may take to arrive; then 408 and the connection closes.',
    parse: integer(15, 86400, 'an integer number of seconds'),
    fallback: () => 3600,
  },
  {
    key: 'maxConnections',
    env: 'CARETRAIL_MAX_CONNECTIONS',
    flag: 'max-connections',
    description:
      'Most client connections open at once (more are closed on arrival); default: the open-file limit (ulimit -n) less 512 for the database and files.',
    parse: integer(16, 1_000_000, 'an integer'),
    fallback: () => defaultMaxConnections(),
  },
  {
    key: 'auditSigningKey',
    env: 'CARETRAIL_AUDIT_SIGNING_KEY',
    flag: 'audit-signing-key',
    description:
      'Ed25519 private key (PKCS#8 PEM or base64 DER) that signs audit checkpoints; default: audit-signing-key.pem in the data folder, created with mode 0600.',
    parse: (raw: string) => raw,
    fallback: () => '',
  },
  {
    key: 'auditCheckpointEvents',
    env: 'CARETRAIL_AUDIT_CHECKPOINT_EVENTS',
    flag: 'audit-checkpoint-events',
    description: 'Sign a checkpoint at least every this many audit events.',
    parse: integer(1, 10000, 'an integer'),
    fallback: () => 10000,
  },
  {
    key: 'auditCheckpointSeconds',
    env: 'CARETRAIL_AUDIT_CHECKPOINT_SECONDS',
    flag: 'audit-checkpoint-seconds',
    description: 'Sign a checkpoint at least this often while events arrive.',
    parse: integer(1, 60, 'an integer number of seconds'),
    fallback: () => 60,
  },
  {
    key: 'auditAppend',
    env: 'CARETRAIL_AUDIT_APPEND',
    flag: 'audit-append',
    description:
      'PostgreSQL: "sealer" (units of work queue their audit events without a lock; one sealer chains them within a second) or "head-lock" (each locks the chain head, as before: the benchmark baseline). SQLite always appends at the head (one writer).',
    parse: (raw: string) => {
      if (raw !== 'sealer' && raw !== 'head-lock') throw new ConfigError('sealer or head-lock');
      return raw;
    },
    fallback: () => 'sealer',
  },
  {
    key: 'alertDistinctPatients',
    env: 'CARETRAIL_ALERT_DISTINCT_PATIENTS',
    flag: 'alert-distinct-patients',
    description: 'Unusual access: alert when one user reads more than this many distinct patients…',
    parse: integer(1, 100000, 'an integer'),
    fallback: () => 50,
  },
  {
    key: 'alertWindowMinutes',
    env: 'CARETRAIL_ALERT_WINDOW_MINUTES',
    flag: 'alert-window-minutes',
    description: '…within this many minutes.',
    parse: integer(1, 1440, 'an integer number of minutes'),
    fallback: () => 10,
  },
  {
    key: 'blobUrl',
    env: 'CARETRAIL_BLOB_URL',
    flag: 'blob-url',
    description:
      'File store: file:PATH (default: blobs in the data folder) or s3://bucket[/prefix]?region=&endpoint=&forcePathStyle=&archiveClass= (credentials from the usual AWS_* variables).',
    parse: blobUrl,
    fallback: (p: Partial<Config>) => `file:${path.join(p.dataDir ?? 'data', 'blobs')}`,
  },
  {
    key: 'cipherThreads',
    env: 'CARETRAIL_CIPHER_THREADS',
    flag: 'cipher-threads',
    description:
      'Worker threads that encrypt, decrypt and hash file contents (default: cores − 1, 1–4; 0: on the event loop thread).',
    parse: integer(0, 64, 'an integer number of threads'),
    fallback: () => defaultCipherThreads(),
  },
  {
    key: 'masterKey',
    env: 'CARETRAIL_MASTER_KEY',
    flag: 'master-key',
    description:
      'Master key(s) wrapping the file data keys: base64 of 32 bytes, comma-separated during a rotation (first is active); default: master-keys in the data folder, created with mode 0600.',
    parse: (raw: string) => raw,
    fallback: () => '',
  },
  {
    key: 'maxUploadBytes',
    env: 'CARETRAIL_MAX_UPLOAD_BYTES',
    flag: 'max-upload-bytes',
    description: 'Largest file accepted by an upload (413 above it).',
    parse: integer(1, 5 * 1024 ** 3, 'an integer number of bytes'),
    fallback: () => 1024 ** 3,
  },
  {
    key: 'uploadStallSeconds',
    env: 'CARETRAIL_UPLOAD_STALL_SECONDS',
    flag: 'upload-stall-seconds',
    description: 'An upload whose client sends no bytes for this long is ended (408).',
    parse: integer(1, 3600, 'an integer number of seconds'),
    fallback: () => 30,
  },
  {
    key: 'archiveAfterDays',
    env: 'CARETRAIL_ARCHIVE_AFTER_DAYS',
    flag: 'archive-after-days',
    description: 'Move files not read for this many days to the archive tier (0: never).',
    parse: integer(0, 36500, 'an integer number of days'),
    fallback: () => 182,
  },
  {
    key: 'lifecycleIntervalMinutes',
    env: 'CARETRAIL_LIFECYCLE_INTERVAL_MINUTES',
    flag: 'lifecycle-interval-minutes',
    description: 'How often the archive job looks for files to move.',
    parse: integer(1, 10080, 'an integer number of minutes'),
    fallback: () => 60,
  },
  {
    key: 'smtpUrl',
    env: 'CARETRAIL_SMTP_URL',
    flag: 'smtp-url',
    description:
      'Mail server for notifications, smtp://user:pass@host:port or smtps://… (empty: email deliveries wait, marked as not configured).',
    parse: smtpUrl,
    fallback: () => '',
  },
  {
    key: 'mailFrom',
    env: 'CARETRAIL_MAIL_FROM',
    flag: 'mail-from',
    description: 'Sender address of notification emails.',
    parse: (raw: string) => {
      if (!/^[^\s@]+@[^\s@]+$/.test(raw.trim())) throw new ConfigError('an email address');
      return raw.trim();
    },
    fallback: () => 'caretrail@localhost',
  },
  {
    key: 'deliveryMaxAttempts',
    env: 'CARETRAIL_DELIVERY_MAX_ATTEMPTS',
    flag: 'delivery-max-attempts',
    description: 'Attempts per notification or job before it is dead-lettered.',
    parse: integer(1, 100, 'an integer'),
    fallback: () => 12,
  },
  {
    key: 'deliveryBackoffMs',
    env: 'CARETRAIL_DELIVERY_BACKOFF_MS',
    flag: 'delivery-backoff-ms',
    description: 'First retry delay; each retry doubles it (with random jitter), up to one hour.',
    parse: integer(1, 3600000, 'an integer number of milliseconds'),
    fallback: () => 5000,
  },
  {
    key: 'webhookTimeoutMs',
    env: 'CARETRAIL_WEBHOOK_TIMEOUT_MS',
    flag: 'webhook-timeout-ms',
    description: 'How long a webhook receiver may take to answer before the attempt fails.',
    parse: integer(100, 120000, 'an integer number of milliseconds'),
    fallback: () => 10000,
  },
  {
    key: 'webhookAllowPrivate',
    env: 'CARETRAIL_WEBHOOK_ALLOW_PRIVATE',
    flag: 'webhook-allow-private',
    description:
      'Allow webhook receivers on loopback, private and link-local addresses (your own network).',
    parse: bool,
    fallback: () => false,
  },
  {
    key: 'previewMaxBytes',
    env: 'CARETRAIL_PREVIEW_MAX_BYTES',
    flag: 'preview-max-bytes',
    description: 'Largest file the preview job decodes (bigger ones get no thumbnail).',
    parse: integer(1024, 2 * 1024 ** 3, 'an integer number of bytes'),
    fallback: () => 256 * 1024 ** 2,
  },
  {
    key: 'sessionIdleMinutes',
    env: 'CARETRAIL_SESSION_IDLE_MINUTES',
    flag: 'session-idle-minutes',
    description: 'Automatic logoff: a session unused for this long ends.',
    parse: integer(2, 43200, 'an integer number of minutes'),
    fallback: () => 30,
  },
  {
    key: 'invitationTtlHours',
    env: 'CARETRAIL_INVITATION_TTL_HOURS',
    flag: 'invitation-ttl-hours',
    description: 'How long an invitation link (for people without an account) can be used.',
    parse: integer(1, 720, 'an integer number of hours'),
    fallback: () => 72,
  },
  {
    key: 'breakGlassMinutes',
    env: 'CARETRAIL_BREAK_GLASS_MINUTES',
    flag: 'break-glass-minutes',
    description: 'How long break-glass access to a patient lasts.',
    parse: integer(1, 1440, 'an integer number of minutes'),
    fallback: () => 60,
  },
  {
    key: 'ownerReleaseDelayHours',
    env: 'CARETRAIL_OWNER_RELEASE_DELAY_HOURS',
    flag: 'owner-release-delay-hours',
    description:
      'Delay before a released note becomes visible to the owner, when the release names no time.',
    parse: integer(0, 720, 'an integer number of hours'),
    fallback: () => 0,
  },
  {
    key: 'resultMaxBytes',
    env: 'CARETRAIL_RESULT_MAX_BYTES',
    flag: 'result-max-bytes',
    description:
      'Largest device result taken (JSON webhook, HL7 v2 over HTTP or MLLP; AE over HL7).',
    parse: integer(4096, 512 * 1024 ** 2, 'an integer number of bytes'),
    fallback: () => 20 * 1024 ** 2,
  },
  {
    key: 'mllpPort',
    env: 'CARETRAIL_MLLP_PORT',
    flag: 'mllp-port',
    description: 'TCP port of the HL7 v2 MLLP listener (unset: no listener; 0 picks a free one).',
    parse: integer(0, 65535, 'an integer'),
    fallback: () => null,
  },
  {
    key: 'mllpHost',
    env: 'CARETRAIL_MLLP_HOST',
    flag: 'mllp-host',
    description: 'Address the MLLP listener listens on (default: the HTTP address).',
    parse: hostName,
    fallback: (partial: Partial<Config>) => partial.host ?? '127.0.0.1',
  },
  {
    key: 'mllpKeyId',
    env: 'CARETRAIL_MLLP_KEY_ID',
    flag: 'mllp-key-id',
    description:
      'Id (not the secret) of the integration key MLLP messages are stored as; needed with the port.',
    parse: (raw: string) => {
      if (!/^[A-Za-z0-9-]{1,100}$/.test(raw.trim())) throw new ConfigError('an integration key id');
      return raw.trim();
    },
    fallback: () => '',
  },
  {
    key: 'mllpIdleSeconds',
    env: 'CARETRAIL_MLLP_IDLE_SECONDS',
    flag: 'mllp-idle-seconds',
    description: 'An MLLP connection that sends nothing for this long is closed.',
    parse: integer(1, 86400, 'an integer number of seconds'),
    fallback: () => 300,
  },
  {
    key: 'mllpTls',
    env: 'CARETRAIL_MLLP_TLS',
    flag: 'mllp-tls',
    description: 'MLLP over TLS, with the HTTPS certificate and key.',
    parse: bool,
    fallback: () => false,
  },
  {
    key: 'mllpTlsCa',
    env: 'CARETRAIL_MLLP_TLS_CA',
    flag: 'mllp-tls-ca',
    description:
      'PEM CA certificate(s): MLLP over TLS then requires a client certificate they signed.',
    parse: filePath,
    fallback: () => '',
  },
  {
    key: 'resultFallbackMatch',
    env: 'CARETRAIL_RESULT_FALLBACK_MATCH',
    flag: 'result-fallback-match',
    description:
      'Match results without a known identifier by name + species + owner surname + birth date.',
    parse: bool,
    fallback: () => true,
  },
  // Disaster recovery (src/replication/).
  {
    key: 'replicaUrl',
    env: 'CARETRAIL_REPLICA_URL',
    flag: 'replica-url',
    description:
      'Off-site replica of the database: file:/other/disk/folder or s3://bucket/prefix?region=&endpoint= (SQLite: shipped by the server; PostgreSQL: the pgBackRest repository, a folder). Empty: no replication.',
    parse: replicaUrl,
    fallback: () => '',
  },
  {
    key: 'replicaSync',
    env: 'CARETRAIL_REPLICA_SYNC',
    flag: 'replica-sync',
    description:
      'Acknowledge a write only once it is durable on the replica (RPO 0; writes answer 503 while the replica cannot be reached).',
    parse: bool,
    fallback: () => false,
  },
  {
    key: 'replicaRetentionDays',
    env: 'CARETRAIL_REPLICA_RETENTION_DAYS',
    flag: 'replica-retention-days',
    description: 'Days of history kept on the replica for point-in-time restore.',
    parse: integer(1, 3650, 'a number of days'),
    fallback: () => 35,
  },
  {
    key: 'replicaSnapshotHours',
    env: 'CARETRAIL_REPLICA_SNAPSHOT_HOURS',
    flag: 'replica-snapshot-hours',
    description: 'Hours between full snapshots on the replica (each starts a new generation).',
    parse: integer(1, 24 * 30, 'a number of hours'),
    fallback: () => 24,
  },
  {
    key: 'blobReplicaUrl',
    env: 'CARETRAIL_BLOB_REPLICA_URL',
    flag: 'blob-replica-url',
    description:
      'Second file store every stored file version is copied to (file:PATH or s3://…, like CARETRAIL_BLOB_URL). Empty: none.',
    parse: blobUrl,
    fallback: () => '',
  },
] as const satisfies readonly Setting<keyof Config>[];

export const CONFIG_SETTINGS: readonly Pick<
  Setting<keyof Config>,
  'env' | 'flag' | 'description'
>[] = SETTINGS;

/** Values never echoed back in an error (they may hold credentials). */
const SECRET_ENVS = new Set([
  'CARETRAIL_DATABASE_URL',
  'CARETRAIL_AUDIT_SIGNING_KEY',
  'CARETRAIL_MASTER_KEY',
  'CARETRAIL_SMTP_URL',
  'CARETRAIL_BLOB_URL',
  'CARETRAIL_REPLICA_URL',
  'CARETRAIL_BLOB_REPLICA_URL',
]);

/** Settings that only make sense with others. */
function checkTogether(config: Config): void {
  const fail = (text: string) => {
    throw new ConfigError(`Invalid configuration: ${text}`);
  };
  if ((config.tlsCert === '') !== (config.tlsKey === ''))
    fail('CARETRAIL_TLS_CERT and CARETRAIL_TLS_KEY go together: set both or neither.');
  if (config.httpRedirectPort !== null && !config.publicUrl.startsWith('https:'))
    fail('CARETRAIL_HTTP_REDIRECT_PORT redirects to an https:// CARETRAIL_PUBLIC_URL (or TLS).');
  if (config.mllpTls && config.tlsCert === '')
    fail('CARETRAIL_MLLP_TLS needs CARETRAIL_TLS_CERT and CARETRAIL_TLS_KEY.');
  if (config.mllpTlsCa !== '' && !config.mllpTls)
    fail('CARETRAIL_MLLP_TLS_CA needs CARETRAIL_MLLP_TLS=true.');
  if (config.replicaSync && config.replicaUrl === '')
    fail('CARETRAIL_REPLICA_SYNC needs CARETRAIL_REPLICA_URL.');
  if (config.blobReplicaUrl !== '' && config.blobReplicaUrl === config.blobUrl)
    fail('CARETRAIL_BLOB_REPLICA_URL must be another store than CARETRAIL_BLOB_URL.');
}

/**
 * Builds the configuration from the environment and `--flag value` / `--flag=value` pairs
 * (flags win). Throws ConfigError with one line naming the variable and what it expects.
 */
export function loadConfig(env: NodeJS.ProcessEnv, flags: Record<string, string> = {}): Config {
  const known = new Set<string>(SETTINGS.map((s) => s.flag));
  for (const flag of Object.keys(flags)) {
    if (!known.has(flag)) throw new ConfigError(`Unknown option --${flag}.`);
  }
  const partial: Partial<Record<keyof Config, unknown>> = {};
  for (const setting of SETTINGS) {
    const fromFlag = flags[setting.flag];
    const raw = fromFlag ?? env[setting.env];
    if (raw === undefined || raw === '') {
      partial[setting.key] = setting.fallback(partial as Partial<Config>);
      continue;
    }
    try {
      partial[setting.key] = setting.parse(raw);
    } catch (err) {
      const expected = err instanceof ConfigError ? err.message : 'a valid value';
      const name = fromFlag !== undefined ? `--${setting.flag}` : setting.env;
      const got = SECRET_ENVS.has(setting.env) ? '' : ` (got ${JSON.stringify(raw)})`;
      throw new ConfigError(`Invalid configuration: ${name} must be ${expected}${got}.`);
    }
  }
  const config = partial as Config;
  checkTogether(config);
  return Object.freeze(config);
}
