// Opens the database (SQLite or PostgreSQL), runs migrations, and provides durable units of work.
// On SQLite, concurrent units share one transaction and one fsync (group commit), and the fsync
// runs on libuv's thread pool, not on the event loop's thread.
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type SqliteDatabase } from 'kysely';
import pg from 'pg';
import { AppError } from '../domain/errors.js';
import type { Engine } from './dialect.js';
import { migrationProvider } from './migrations/index.js';
import type { DB, Tx } from './tables.js';

export interface Database {
  readonly engine: Engine;
  /**
   * Runs `fn` as one durable unit of work and resolves after its commit is on disk. `fn` must
   * only talk to the database through `tx` (no other awaits): on SQLite it shares a transaction
   * with other units, isolated by a savepoint, so a failing unit rolls back alone.
   */
  write<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** For reads that need no audit event (session lookups, health). Sees every committed write. */
  readonly read: Kysely<DB>;
  /**
   * Runs `fn`, which only reads, outside the write queue: on SQLite in one read transaction on
   * the reader connection (one consistent snapshot of every committed write, not waiting for a
   * batch or its fsync); on PostgreSQL on the pool, each statement seeing what is committed.
   */
  snapshot<T>(fn: (db: Tx) => Promise<T>): Promise<T>;
  /** SQLite only: the database file, for bulk scans on a connection of their own. */
  readonly sqliteFile: string | null;
  migrate(): Promise<string[]>;
  ping(): Promise<void>;
  /** Units and transactions committed so far: with group commit, transactions < units. */
  stats(): { units: number; transactions: number };
  /**
   * This process's id for claims that must die with it (idempotency keys): a random number,
   * on PostgreSQL held as a session advisory lock for as long as the process lives.
   */
  claimHolder(): Promise<number>;
  /** Whether the process that took `holder` still runs (inside a unit of work). */
  holderAlive(tx: Tx, holder: number): Promise<boolean>;
  /** Set once a commit failed: the store then refuses writes (fail-stop) until restarted. */
  readonly failure: Error | null;
  /** Where the fail-stop came from: the database's own commit, or the file store's disk. */
  readonly failureSource: FailStopSource | null;
  /** Stops taking writes because a write to `source` failed with an unknown outcome on disk. */
  failStop(source: FailStopSource, err: Error): void;
  /**
   * SQLite only: runs `fn` on the writer connection between group-commit batches; no unit
   * commits until it is done (checkpoints and snapshots for replication).
   */
  exclusive<T>(fn: (raw: BetterSqlite3.Database) => T | Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type FailStopSource = 'database' | 'files';

export interface OpenOptions {
  /** Told once when the store stops taking writes (to log it loudly). */
  onFailStop?: (source: FailStopSource, err: Error) => void;
  pgPoolSize?: number;
  /** Largest number of units in one SQLite transaction (1: every unit commits on its own). */
  maxBatch?: number;
  /**
   * SQLite: 'caller' turns SQLite's automatic checkpoints off on the server's connections, for a
   * caller (replication) that must read every WAL frame before the log restarts and runs the
   * checkpoints itself through `exclusive`.
   */
  checkpoints?: 'sqlite' | 'caller';
  /**
   * SQLite: called after each group-commit batch is committed and fsync'd, before its units are
   * answered, on the writer (no other batch runs until it resolves). Replication notes the
   * commit's time here, and in synchronous mode ships it; a rejection answers the batch's units
   * with that error (the batch stays committed locally).
   */
  afterCommit?: (raw: BetterSqlite3.Database, batch: { changed: boolean }) => void | Promise<void>;
  /** Checked before a unit is queued: an error refuses the write before anything is written. */
  writeGate?: () => Error | null;
  /**
   * PostgreSQL: wraps each unit's transaction, to answer it with an error while it waits (a
   * synchronous standby that went away holds commits without a time limit).
   */
  awaitCommit?: <T>(commit: Promise<T>) => Promise<T>;
}

export const MIN_SQLITE_VERSION = '3.51.3';

export async function openDatabase(url: string, options: OpenOptions = {}): Promise<Database> {
  if (url.startsWith('sqlite:')) return openSqlite(url.slice('sqlite:'.length), options);
  if (/^postgres(ql)?:\/\//.test(url)) return openPostgres(url, options);
  throw new Error('Unsupported database URL (expected sqlite:PATH or postgres://…)');
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Every SQLite connection: WAL, foreign keys, busy wait, and synchronous=FULL (a commit is fsync'd
 * by SQLite) — except the group-commit writer, which runs synchronous=NORMAL and fsyncs the WAL
 * itself, off the event loop, before it acknowledges a batch (`syncLog` in `openSqlite`).
 */
function configureSqlite(raw: BetterSqlite3.Database, sync: 'full' | 'caller' = 'full'): void {
  const version = (raw.prepare('select sqlite_version() as v').get() as { v: string }).v;
  if (compareVersions(version, MIN_SQLITE_VERSION) < 0) {
    throw new Error(
      `SQLite ${version} is too old: Caretrail needs ${MIN_SQLITE_VERSION} or newer (WAL-reset bug).`,
    );
  }
  raw.pragma('journal_mode = WAL');
  raw.pragma(sync === 'full' ? 'synchronous = FULL' : 'synchronous = NORMAL');
  raw.pragma('foreign_keys = ON');
  raw.pragma('busy_timeout = 5000');
  if (raw.pragma('journal_mode', { simple: true }) !== 'wal') {
    throw new Error('SQLite refused WAL mode; refusing to run without it.');
  }
  if (raw.pragma('synchronous', { simple: true }) !== (sync === 'full' ? 2 : 1)) {
    throw new Error(
      'SQLite refused the synchronous setting; refusing to run without durable commits.',
    );
  }
}

/** better-sqlite3 behind Kysely, with prepared statements reused by SQL text. */
function cachedStatements(raw: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => {
      raw.close();
    },
    prepare: (text: string) => {
      let stmt = cache.get(text);
      if (!stmt) {
        stmt = raw.prepare(text);
        if (cache.size > 500) cache.clear();
        cache.set(text, stmt);
      }
      return stmt;
    },
  };
}

interface PendingUnit {
  fn: (tx: Tx) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

function openSqlite(file: string, options: OpenOptions): Database {
  if (file === '' || file === ':memory:') throw new Error('SQLite needs a file path (WAL).');
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const writerRaw = new BetterSqlite3(file);
  configureSqlite(writerRaw, 'caller');
  const readerRaw = new BetterSqlite3(file);
  configureSqlite(readerRaw);
  if (options.checkpoints === 'caller') {
    for (const raw of [writerRaw, readerRaw]) raw.pragma('wal_autocheckpoint = 0');
  }

  const writer = new Kysely<DB>({
    dialect: new SqliteDialect({ database: cachedStatements(writerRaw) }),
  });
  const reader = new Kysely<DB>({
    dialect: new SqliteDialect({ database: cachedStatements(readerRaw) }),
  });
  const maxBatch = options.maxBatch ?? 1000;
  const totalChangesStatement = writerRaw.prepare('select total_changes()').pluck();
  const totalChanges = () => totalChangesStatement.get() as number;

  let queue: PendingUnit[] = [];
  let running: Promise<void> | null = null;
  let scheduled = false;
  const stop = failStopState(options);
  let closed = false;
  const counters = { units: 0, transactions: 0 };

  // Durability of a commit. In WAL mode with synchronous=NORMAL, SQLite writes a commit's frames
  // to the WAL without fsync (it still fsyncs the WAL before each checkpoint copies it into the
  // database, and the database after). Fsyncing the WAL file after the commit and before answering
  // gives synchronous=FULL's guarantee, but on libuv's thread pool, so the event loop serves
  // requests meanwhile instead of blocking for the disk (0.1–3 ms per fsync on a shared disk).
  // Readers may see a commit before its fsync ends; every answer that shows data waits for its own
  // audit event's fsync, which comes later in the same WAL and so covers every earlier commit.
  // The handle is opened once (after the first commit, when the WAL surely exists) and kept: SQLite
  // holds no POSIX locks on the WAL, and keeps the same file across WAL resets.
  const walPath = `${path.resolve(file)}-wal`;
  let walHandle: fsp.FileHandle | null = null;
  const syncLog = async (): Promise<void> => {
    walHandle ??= await fsp.open(walPath, 'r');
    await walHandle.datasync();
  };

  // `exclusive` holds the writer between batches: no batch starts while `held`.
  let held = false;
  let exclusiveTail: Promise<unknown> = Promise.resolve();

  const schedule = (): void => {
    if (held || scheduled || running || queue.length === 0) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      if (held) return;
      running = runBatch().finally(() => {
        running = null;
        schedule();
      });
    });
  };

  // One BEGIN IMMEDIATE … COMMIT for every queued unit; each unit in its own savepoint.
  const runBatch = async (): Promise<void> => {
    const batch = queue.slice(0, maxBatch);
    queue = queue.slice(batch.length);
    const outcomes: { ok: boolean; value: unknown }[] = [];
    // Whether a unit that stayed changed a row: a batch that changed nothing writes no log frame
    // (the outbox relay's empty claims), and replication must not count it as a transaction.
    let changed = false;
    try {
      await writer.connection().execute(async (conn) => {
        // Transaction control goes straight to better-sqlite3 (synchronous, no query building):
        // it runs on the connection Kysely holds for this batch.
        writerRaw.exec('begin immediate');
        try {
          for (const unit of batch) {
            writerRaw.exec('savepoint unit');
            // Counted only for replication (afterCommit): two statements a unit otherwise.
            const before = options.afterCommit && !changed ? totalChanges() : 0;
            try {
              const value = await unit.fn(conn);
              writerRaw.exec('release unit');
              if (options.afterCommit && !changed && totalChanges() !== before) changed = true;
              outcomes.push({ ok: true, value });
            } catch (err) {
              writerRaw.exec('rollback to unit');
              writerRaw.exec('release unit');
              outcomes.push({ ok: false, value: err });
            }
          }
        } catch (err) {
          // The transaction itself broke (I/O error, full disk): undo everything.
          if (writerRaw.inTransaction) writerRaw.exec('rollback');
          throw err;
        }
        try {
          writerRaw.exec('commit');
        } catch (err) {
          // The commit's write (or a checkpoint's fsync) failed: the state on disk is unknown.
          stop.failStop('database', err instanceof Error ? err : new Error(String(err)));
          if (writerRaw.inTransaction) writerRaw.exec('rollback');
          throw err;
        }
      });
      try {
        await syncLog();
      } catch (err) {
        // Committed, but not known to be on disk: no answer for this batch, and no more writes.
        stop.failStop('database', err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
      counters.transactions += 1;
      counters.units += batch.length;
      if (options.afterCommit) await options.afterCommit(writerRaw, { changed });
    } catch (err) {
      const error = stop.failure
        ? new AppError(
            'unavailable',
            'The database cannot take writes; an operator must check the server.',
          )
        : err;
      for (const unit of batch) unit.reject(error);
      return;
    }
    batch.forEach((unit, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) unit.resolve(outcome.value);
      else unit.reject(outcome?.value);
    });
  };

  // One process serves a SQLite file, so a claim of any other holder belongs to a dead process.
  const holder = randomInt(1, 2 ** 31 - 1);
  return {
    engine: 'sqlite',
    read: reader,
    snapshot<T>(fn: (db: Tx) => Promise<T>): Promise<T> {
      // connection() holds the reader for the whole unit, so no other query lands inside its
      // transaction; the statements are synchronous, so the hold is short.
      return reader.connection().execute(async (conn) => {
        readerRaw.exec('begin');
        try {
          return await fn(conn);
        } finally {
          if (readerRaw.inTransaction) readerRaw.exec('commit');
        }
      });
    },
    sqliteFile: path.resolve(file),
    claimHolder: () => Promise.resolve(holder),
    holderAlive: (_tx, other) => Promise.resolve(other === holder),
    stats: () => ({ ...counters }),
    get failure() {
      return stop.failure;
    },
    get failureSource() {
      return stop.source;
    },
    failStop: (source, err) => {
      stop.failStop(source, err);
    },
    exclusive<T>(fn: (raw: BetterSqlite3.Database) => T | Promise<T>): Promise<T> {
      const run = exclusiveTail.then(async () => {
        held = true;
        try {
          while (running) await running;
          return await fn(writerRaw);
        } finally {
          held = false;
          schedule();
        }
      });
      exclusiveTail = run.catch(() => undefined);
      return run;
    },
    write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
      if (stop.failure) return Promise.reject(refusedAfterFailStop());
      const refused = options.writeGate?.() ?? null;
      if (refused) return Promise.reject(refused);
      if (closed) {
        return Promise.reject(
          new AppError(
            'unavailable',
            'The database cannot take writes right now; try again later.',
          ),
        );
      }
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
        schedule();
      });
    },
    async migrate() {
      const applied = await runMigrations(writer);
      await syncLog();
      return applied;
    },
    async ping() {
      await sql`select 1`.execute(reader);
      if (stop.failure) throw stop.failure;
    },
    async close() {
      closed = true;
      while (running || scheduled || queue.length > 0) {
        await (running ?? new Promise((r) => setImmediate(r)));
      }
      await reader.destroy();
      await writer.destroy();
      await walHandle?.close();
      walHandle = null;
    },
  };
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '57P01',
  '57P03',
  '53300',
]);

/** An error that means PostgreSQL is not reachable (down, restarting, connection killed). */
export function isConnectionError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return (
    (typeof code === 'string' && (CONNECTION_ERROR_CODES.has(code) || code.startsWith('08'))) ||
    (err instanceof Error &&
      /Connection terminated|timeout exceeded when trying to connect|not queryable/i.test(
        err.message,
      ))
  );
}

/** bigint (int8) columns as JS numbers: audit sequences and counts stay far below 2^53. */
function int8AsNumber(): pg.TypeOverrides {
  const types = new pg.TypeOverrides();
  types.setTypeParser(20, (value: string) => Number(value));
  return types;
}

function openPostgres(url: string, options: OpenOptions): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.pgPoolSize ?? 10,
    connectionTimeoutMillis: 5000,
    types: int8AsNumber(),
  });
  // A client losing its connection must not crash the process, whether it is idle (the pool's
  // 'error') or checked out between two statements of a transaction (the client's own 'error',
  // which the pool only listens to while the client is idle): the statement in flight fails with
  // a connection error (503) and the pool replaces the client.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  const counters = { units: 0, transactions: 0 };
  const holder = advisoryHolder(url);
  // PostgreSQL handles its own failed fsyncs (it stops, since 12); the file store's reach here.
  const stop = failStopState(options);
  return {
    engine: 'postgres',
    read: db,
    snapshot: (fn) => fn(db),
    sqliteFile: null,
    get failure() {
      return stop.failure;
    },
    get failureSource() {
      return stop.source;
    },
    failStop: (source, err) => {
      stop.failStop(source, err);
    },
    exclusive: () =>
      Promise.reject(
        new Error('exclusive() is for SQLite; PostgreSQL replicates with its own tools'),
      ),
    claimHolder: () => holder.id(),
    async holderAlive(tx, other) {
      // A live holder keeps its session lock; if this transaction can take it, the holder's
      // connection is gone (PostgreSQL drops a dead backend's locks when its socket closes).
      const { rows } = await sql<{ free: boolean }>`
        select pg_try_advisory_xact_lock(${HOLDER_LOCK_CLASS}, ${other}::int) as free`.execute(tx);
      return rows[0]?.free !== true;
    },
    stats: () => ({ ...counters }),
    async write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
      if (stop.failure) throw refusedAfterFailStop();
      const refused = options.writeGate?.() ?? null;
      if (refused) throw refused;
      try {
        const commit = db.transaction().execute(fn);
        // Answered early (awaitCommit), the transaction still ends: its outcome is not ours.
        if (options.awaitCommit) commit.catch(() => undefined);
        const result = await (options.awaitCommit ? options.awaitCommit(commit) : commit);
        counters.units += 1;
        counters.transactions += 1;
        return result;
      } catch (err) {
        if (isConnectionError(err)) {
          throw new AppError('unavailable', 'The database is not reachable; try again shortly.', {
            retryAfterSeconds: 5,
          });
        }
        throw err;
      }
    },
    migrate: () => runMigrations(db),
    async ping() {
      await sql`select 1`.execute(db);
      if (stop.failure) throw stop.failure;
    },
    async close() {
      await holder.close();
      await db.destroy();
    },
  };
}

const refusedAfterFailStop = () =>
  new AppError(
    'unavailable',
    'The server cannot take writes right now; an operator must check it.',
  );

/**
 * Fail-stop, as PostgreSQL does since "fsyncgate": after a write or fsync whose outcome on disk is
 * unknown, retrying could acknowledge data that is not there, so every later write is refused
 * until an operator restarts the server (which recovers from what is really on disk).
 */
function failStopState(options: OpenOptions) {
  const state = {
    failure: null as Error | null,
    source: null as FailStopSource | null,
    failStop(source: FailStopSource, err: Error): void {
      if (state.failure) return;
      state.failure = err;
      state.source = source;
      options.onFailStop?.(source, err);
    },
  };
  return state;
}

/** Advisory-lock class of claim holders (the first key of the two-key advisory lock). */
const HOLDER_LOCK_CLASS = 7301;

/**
 * A random holder id locked on a connection of its own, taken on first use. If that connection
 * drops, the next call takes a new id: claims of the old one then count as dead, which is right
 * because a dropped connection aborted the transactions they belonged to as well.
 */
function advisoryHolder(url: string): { id(): Promise<number>; close(): Promise<void> } {
  let current: Promise<{ client: pg.Client; id: number }> | null = null;
  const take = async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    client.on('error', () => {
      current = null;
    });
    client.on('end', () => {
      current = null;
    });
    await client.connect();
    for (;;) {
      const id = randomInt(1, 2 ** 31 - 1);
      const { rows } = await client.query<{ ok: boolean }>(
        'select pg_try_advisory_lock($1, $2) as ok',
        [HOLDER_LOCK_CLASS, id],
      );
      if (rows[0]?.ok) return { client, id };
    }
  };
  return {
    async id() {
      current ??= take().catch((err: unknown) => {
        current = null;
        throw err;
      });
      return (await current).id;
    },
    async close() {
      const held = current;
      current = null;
      if (held) await (await held).client.end().catch(() => undefined);
    },
  };
}

async function runMigrations(db: Kysely<DB>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: migrationProvider,
    migrationTableName: 'schema_migrations',
    migrationLockTableName: 'schema_migrations_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error('Migration failed');
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
