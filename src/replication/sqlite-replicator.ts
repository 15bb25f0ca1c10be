// Continuous replication of the SQLite database (Litestream's design, in-process): the server's
// connections leave checkpoints to us (`checkpoints: 'caller'`), so no WAL frame is overwritten
// before it is read; each round reads the frames committed since the last one (checksums
// checked, see wal.ts) and ships them, sealed, as one segment; a checkpoint restarts the log only
// between group-commit batches and after the log's last frames are shipped. A generation starts
// with a snapshot of the database file (taken right after a full checkpoint, while no batch
// commits) and then holds the segments of every log index after it; a later snapshot is taken at
// a log restart, so restores start from a recent one. Anything that breaks the chain (the log
// restarted by another process, frames lost) starts a new generation. Restoring is `restore.ts`.
//
// Asynchronous mode ships at least every `shipEveryMs`; synchronous mode (CARETRAIL_REPLICA_SYNC)
// ships each batch from the database's `afterCommit` hook before its writes are answered, and
// refuses writes (503) while the replica cannot be reached.
//
// Locks, always taken in this order: the writer (`db.exclusive`, or the batch's own `afterCommit`)
// and then this module's round queue (`serially`). Snapshot uploads run outside both.
//
// Replica layout (every object sealed, see sealed.ts):
//   generations/<id>/snapshots/<index>.json       { createdAt, index, parts, bytes } (written last)
//   generations/<id>/snapshots/<index>/<part>     16 MiB of the database file each, gzip'd
//   generations/<id>/wal/<index>/<offset>         a segment: meta, the 32-byte WAL header, frames
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type BetterSqlite3 from 'better-sqlite3';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import type { Keyring } from '../blobs/master-key.js';
import { AppError } from '../domain/errors.js';
import type { Database } from '../store/database.js';
import type { ReplicaDestination } from './destination.js';
import { openObject, sealObject } from './sealed.js';
import {
  WAL_HEADER_SIZE,
  parseWalHeader,
  readCommitted,
  type CommittedRun,
  type WalChecksum,
  type WalHeader,
} from './wal.js';

export const SNAPSHOT_PART_BYTES = 16 * 1024 * 1024;

/** Off the event loop (libuv's pool): a 16 MiB part takes 100 ms or more to compress. */
const gzip = promisify(gzipCallback);

export interface SegmentMeta {
  index: number;
  offset: number;
  endOffset: number;
  commits: number;
  /** When each of the segment's transactions committed, in order (ISO times). */
  commitTimes: string[];
  /** When the segment was read off the log: every commit in it happened at or before. */
  shippedAt: string;
}

export interface SnapshotManifest {
  createdAt: string;
  /** The log index the snapshot starts: segments of this index and later apply on top. */
  index: number;
  parts: number;
  bytes: number;
}

export interface ReplicationStatus {
  destination: string;
  mode: 'async' | 'sync';
  generation: string | null;
  lastSnapshotAt: string | null;
  /** A snapshot being uploaded (its log index), or null. */
  snapshotUploading: number | null;
  /** Log index and offset shipped up to. */
  index: number;
  offset: number;
  lastShipAt: string | null;
  /** Seconds the oldest commit not yet on the replica has waited (0: everything shipped). */
  lagSeconds: number;
  /** Transactions committed and not yet on the replica. */
  pendingCommits: number;
  segments: number;
  shippedBytes: number;
  retentionDays: number;
  lastPruneAt: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
}

export const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

export function segmentName(generation: string, index: number, offset: number): string {
  return `generations/${generation}/wal/${hex(index, 8)}/${hex(offset, 16)}`;
}

export function snapshotManifestName(generation: string, index: number): string {
  return `generations/${generation}/snapshots/${hex(index, 8)}.json`;
}

export function snapshotPartName(generation: string, index: number, part: number): string {
  return `generations/${generation}/snapshots/${hex(index, 8)}/${hex(part, 6)}`;
}

/** meta length (u32) | meta JSON | WAL header (32 bytes) | frames */
export function encodeSegment(meta: SegmentMeta, header: WalHeader, frames: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  return Buffer.concat([length, json, header.bytes, frames]);
}

interface Position {
  index: number;
  offset: number;
  checksum: WalChecksum | null;
  salts: readonly [number, number] | null;
}

type Since = { header: WalHeader; run: CommittedRun } | null | 'none';

export interface SqliteReplicatorOptions {
  db: Database;
  destination: ReplicaDestination;
  keyring: Keyring;
  now?: () => Date;
  /** Acknowledge writes only once shipped (wire `afterCommit` and `writeGate` to the database). */
  sync?: boolean;
  /** Ship at least this often (default 250 ms). */
  shipEveryMs?: number;
  /** Restart the log once it holds this many bytes (default 4 MiB). */
  checkpointBytes?: number;
  /** Take a new snapshot this often (default 24 h). */
  snapshotEveryMs?: number;
  /** Keep history for this long (default 35 days); older snapshots and segments are pruned. */
  retentionMs?: number;
  onError?: (err: Error) => void;
}

const DAY = 24 * 60 * 60 * 1000;

export function createSqliteReplicator(deps: SqliteReplicatorOptions) {
  const { db, destination, keyring } = deps;
  const now = deps.now ?? (() => new Date());
  const file = db.sqliteFile;
  if (file === null) throw new Error('SQLite replication needs a SQLite database');
  const walPath = `${file}-wal`;
  const sync = deps.sync ?? false;
  const checkpointBytes = deps.checkpointBytes ?? 4 * 1024 * 1024;
  const snapshotEveryMs = deps.snapshotEveryMs ?? DAY;
  const retentionMs = deps.retentionMs ?? 35 * DAY;

  let generation: string | null = null;
  let position: Position = { index: 0, offset: WAL_HEADER_SIZE, checksum: null, salts: null };
  let needGeneration = true;
  /** Commit times (ms) of transactions in the log not shipped yet, oldest first. */
  let pendingCommits: number[] = [];
  let lastSnapshotMs = 0;
  /** Since when the current generation's first snapshot has been on its way (null: it is there). */
  let generationPendingSince: number | null = null;
  let snapshotUpload: Promise<void> | null = null;
  let roundTail: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | null = null;
  let ticking = false;
  let lastPruneMs = 0;
  const status: ReplicationStatus = {
    destination: destination.description,
    mode: sync ? 'sync' : 'async',
    generation: null,
    lastSnapshotAt: null,
    snapshotUploading: null,
    index: 0,
    offset: WAL_HEADER_SIZE,
    lastShipAt: null,
    lagSeconds: 0,
    pendingCommits: 0,
    segments: 0,
    shippedBytes: 0,
    retentionDays: Math.round(retentionMs / DAY),
    lastPruneAt: null,
    lastError: null,
    lastErrorAt: null,
  };

  const put = async (name: string, plain: Buffer) => {
    const sealed = sealObject(keyring, name, plain);
    await destination.put(name, sealed);
    status.shippedBytes += sealed.length;
  };

  /** The round queue: shipping and checkpoints never overlap. */
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = roundTail.then(fn);
    roundTail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  };
  /** The writer first, then the round queue (the lock order; see the top of the file). */
  const withWriter = <T>(fn: (raw: BetterSqlite3.Database) => Promise<T>): Promise<T> =>
    db.exclusive((raw) => serially(() => fn(raw)));

  const report = (err: unknown): Error => {
    const error = err instanceof Error ? err : new Error(String(err));
    status.lastError = error.message;
    status.lastErrorAt = now().toISOString();
    deps.onError?.(error);
    return error;
  };

  /** A RESTART checkpoint (every frame into the database, the next commit restarts the log). */
  async function restartLog(raw: BetterSqlite3.Database, insist: boolean): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const [result] = raw.pragma('wal_checkpoint(RESTART)') as { busy: number }[];
      if (result?.busy === 0) return true;
      if (!insist || attempt >= 50) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Right after our own restart: a write that changes nothing (the schema's user_version set to
   * itself) makes SQLite write the new log's header now, which we adopt; any later header we did
   * not cause (another process restarting the log) then shows as a break in the chain.
   */
  function beginLog(raw: BetterSqlite3.Database): WalHeader {
    const version = Number(raw.pragma('user_version', { simple: true }));
    raw.pragma(`user_version = ${String(version)}`);
    pendingCommits.push(now().getTime());
    const bytes = Buffer.alloc(WAL_HEADER_SIZE);
    const fd = fs.openSync(walPath, 'r');
    try {
      fs.readSync(fd, bytes, 0, WAL_HEADER_SIZE, 0);
    } finally {
      fs.closeSync(fd);
    }
    const header = parseWalHeader(bytes);
    if (!header) throw new Error('the restarted log has no valid header');
    return header;
  }

  const adopt = (index: number, header: WalHeader): Position => ({
    index,
    offset: WAL_HEADER_SIZE,
    checksum: header.checksum,
    salts: [header.salt1, header.salt2],
  });

  /** Uploads a copy of the database file as the snapshot that starts log index `index`. */
  async function uploadSnapshot(
    id: string,
    index: number,
    copy: string,
    createdAt: string,
  ): Promise<void> {
    status.snapshotUploading = index;
    try {
      const handle = await fsp.open(copy, 'r');
      let parts = 0;
      let bytes = 0;
      try {
        const buffer = Buffer.alloc(SNAPSHOT_PART_BYTES);
        for (;;) {
          const { bytesRead } = await handle.read(buffer, 0, SNAPSHOT_PART_BYTES, bytes);
          if (bytesRead === 0) break;
          await put(
            snapshotPartName(id, index, parts),
            await gzip(buffer.subarray(0, bytesRead), { level: 1 }),
          );
          parts += 1;
          bytes += bytesRead;
        }
      } finally {
        await handle.close();
      }
      const manifest: SnapshotManifest = { createdAt, index, parts, bytes };
      await put(snapshotManifestName(id, index), Buffer.from(JSON.stringify(manifest)));
      status.lastSnapshotAt = createdAt;
      if (index === 0 && id === generation) generationPendingSince = null;
    } finally {
      status.snapshotUploading = null;
      await fsp.rm(copy, { force: true });
    }
  }

  /** Starts an upload in the background (one at a time); errors are reported, not thrown. */
  function startUpload(upload: () => Promise<void>): Promise<void> {
    const run = upload().catch((err: unknown) => {
      report(err);
      throw err;
    });
    snapshotUpload = run.then(
      () => undefined,
      () => undefined,
    );
    void snapshotUpload.then(() => {
      snapshotUpload = null;
    });
    return run;
  }

  /**
   * Under the writer: a full checkpoint, a copy of the file, a new log. Returns the upload of
   * the copy as the new generation's first snapshot.
   */
  async function startGeneration(raw: BetterSqlite3.Database): Promise<() => Promise<void>> {
    const id = `${now().toISOString().replace(/[-:.]/g, '')}-${randomBytes(4).toString('hex')}`;
    const copy = `${file as string}.replica-${id}`;
    if (!(await restartLog(raw, true)))
      throw new Error('the log could not be checkpointed for a snapshot (readers held it)');
    await fsp.copyFile(file as string, copy, fs.constants.COPYFILE_FICLONE);
    pendingCommits = [];
    const header = beginLog(raw);
    const createdAt = now().toISOString();
    generation = id;
    position = adopt(0, header);
    needGeneration = false;
    lastSnapshotMs = now().getTime();
    generationPendingSince = lastSnapshotMs;
    status.generation = id;
    status.index = 0;
    status.offset = WAL_HEADER_SIZE;
    return () => uploadSnapshot(id, 0, copy, createdAt);
  }

  /** The frames committed since `position`, null when the log broke away from it. */
  async function committedSincePosition(): Promise<Since> {
    const first = await readCommitted(walPath).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    });
    if (first === null) return 'none'; // no log yet, or an empty one after a TRUNCATE
    const { header } = first;
    if (position.salts === null) {
      position = {
        ...position,
        offset: WAL_HEADER_SIZE,
        checksum: header.checksum,
        salts: [header.salt1, header.salt2],
      };
      return first;
    }
    if (header.salt1 !== position.salts[0] || header.salt2 !== position.salts[1]) return null;
    return readCommitted(walPath, {
      offset: position.offset,
      checksum: position.checksum ?? header.checksum,
    });
  }

  async function shipSegment(header: WalHeader, run: CommittedRun): Promise<void> {
    if (generation === null || run.commits === 0) return;
    const shippedAt = now();
    const times = pendingCommits.slice(0, run.commits);
    // Commits the hook did not see (a database opened without it) take the time they were read.
    while (times.length < run.commits) times.push(shippedAt.getTime());
    const meta: SegmentMeta = {
      index: position.index,
      offset: position.offset,
      endOffset: run.endOffset,
      commits: run.commits,
      commitTimes: times.map((t) => new Date(Math.min(t, shippedAt.getTime())).toISOString()),
      shippedAt: shippedAt.toISOString(),
    };
    await put(
      segmentName(generation, position.index, position.offset),
      encodeSegment(meta, header, run.frames),
    );
    pendingCommits = pendingCommits.slice(run.commits);
    position = { ...position, offset: run.endOffset, checksum: run.endChecksum };
    status.segments += 1;
    status.lastShipAt = meta.shippedAt;
    status.index = position.index;
    status.offset = position.offset;
  }

  /** Ships what was committed since the last round; a broken chain asks for a new generation. */
  async function shipRound(): Promise<void> {
    if (needGeneration) return;
    const since = await committedSincePosition();
    if (since === 'none') return;
    if (since === null) {
      // The log restarted without us (another process checkpointed): frames may be gone.
      needGeneration = true;
      return;
    }
    await shipSegment(since.header, since.run);
  }

  /**
   * Under the writer: ships the log's last frames, then restarts it (and with `snapshot`, copies
   * the database file, which then holds every frame so far, as the next index's snapshot).
   * Returns that snapshot's upload, or null.
   */
  async function checkpointRound(
    raw: BetterSqlite3.Database,
    snapshot: boolean,
  ): Promise<(() => Promise<void>) | null> {
    if (needGeneration || generation === null || position.salts === null) return null;
    await shipRound();
    if (chainBroken()) return null;
    if (!(await restartLog(raw, snapshot))) return null;
    const id = generation;
    const index = position.index + 1;
    let upload: (() => Promise<void>) | null = null;
    if (snapshot) {
      const copy = `${file as string}.replica-${id}-${hex(index, 8)}`;
      await fsp.copyFile(file as string, copy, fs.constants.COPYFILE_FICLONE);
      const createdAt = now().toISOString();
      lastSnapshotMs = now().getTime();
      upload = () => uploadSnapshot(id, index, copy, createdAt);
    }
    pendingCommits = [];
    position = adopt(index, beginLog(raw));
    status.index = position.index;
    status.offset = position.offset;
    return upload;
  }

  /** Read through a function: TypeScript cannot see shipRound() set it. */
  const chainBroken = () => needGeneration;

  const snapshotDue = () =>
    snapshotUpload === null && now().getTime() - lastSnapshotMs >= snapshotEveryMs;

  /**
   * One full round under the writer (synchronous mode's afterCommit, and `flush`): a generation
   * when needed, the frames shipped, a checkpoint when the log is big.
   */
  async function roundOnWriter(raw: BetterSqlite3.Database): Promise<void> {
    if (needGeneration) await startUpload(await startGeneration(raw));
    await shipRound();
    if (needGeneration) {
      await startUpload(await startGeneration(raw));
      await shipRound();
    }
    if (position.offset >= checkpointBytes || snapshotDue()) {
      const upload = await checkpointRound(raw, snapshotDue());
      if (upload) void startUpload(upload).catch(() => undefined);
    }
  }

  const succeeded = () => {
    status.lastError = null;
    status.lastErrorAt = null;
  };

  /** A timer round: never holds the writer for an upload of a snapshot. */
  async function tick(): Promise<void> {
    if (needGeneration) {
      let upload: (() => Promise<void>) | null = null;
      await withWriter(async (raw) => {
        if (needGeneration) upload = await startGeneration(raw);
      });
      // Synchronous mode waits for it (writes are acknowledged against it); asynchronous mode
      // ships the new generation's segments meanwhile (restorable once the snapshot is there;
      // until then the lag counts from the generation's start).
      const first = upload as (() => Promise<void>) | null;
      if (first && sync) await startUpload(first);
      else if (first) void startUpload(first).catch(() => undefined);
    }
    await serially(shipRound);
    if (needGeneration) return;
    const snap = snapshotDue();
    if (position.offset >= checkpointBytes || snap) {
      const upload = await withWriter((raw) => checkpointRound(raw, snap));
      if (upload) void startUpload(upload).catch(() => undefined);
    }
    succeeded();
    if (now().getTime() - lastPruneMs >= 60 * 60 * 1000) {
      lastPruneMs = now().getTime();
      await prune();
    }
  }

  /** Deletes what retention no longer needs: everything older than the newest snapshot before it. */
  async function prune(): Promise<number> {
    const cutoff = new Date(now().getTime() - retentionMs).toISOString();
    const snapshots = await listSnapshots(destination, keyring);
    const base = snapshots.filter((s) => s.manifest.createdAt <= cutoff).at(-1);
    status.lastPruneAt = now().toISOString();
    if (!base) return 0;
    // Generation ids begin with their start time, so they sort in time order.
    let deleted = 0;
    for (const name of await destination.list('generations/')) {
      const [, gen = '', kind, part = ''] = name.split('/');
      const index = parseInt(part.replace(/\.json$/, ''), 16);
      const drop =
        gen < base.generation ||
        (gen === base.generation &&
          (kind === 'wal' || kind === 'snapshots') &&
          index < base.manifest.index);
      if (drop) {
        await destination.delete(name);
        deleted += 1;
      }
    }
    return deleted;
  }

  const unavailable = () =>
    new AppError(
      'unavailable',
      'The off-site replica cannot be reached, and this server acknowledges writes only once they are on it (CARETRAIL_REPLICA_SYNC); try again shortly.',
    );

  return {
    status(): ReplicationStatus {
      const oldest = Math.min(pendingCommits[0] ?? Infinity, generationPendingSince ?? Infinity);
      return {
        ...status,
        pendingCommits: pendingCommits.length,
        lagSeconds: oldest === Infinity ? 0 : Math.max(0, (now().getTime() - oldest) / 1000),
      };
    },
    /** For `openDatabase({ afterCommit })`: notes each commit; in sync mode ships it first. */
    afterCommit(
      raw: BetterSqlite3.Database,
      batch: { changed: boolean } = { changed: true },
    ): Promise<void> | undefined {
      // Only a batch that changed rows wrote a commit frame: its time belongs to that frame.
      if (batch.changed) pendingCommits.push(now().getTime());
      if (!sync) return undefined;
      return serially(() => roundOnWriter(raw)).then(succeeded, (err: unknown) => {
        report(err);
        throw unavailable();
      });
    },
    /** For `openDatabase({ writeGate })`: in sync mode, no write while the replica is down. */
    writeGate(): Error | null {
      return sync && status.lastError !== null ? unavailable() : null;
    },
    /** Ships what is committed (starting the first generation when needed). */
    async ship(): Promise<void> {
      try {
        if (needGeneration) {
          let upload: (() => Promise<void>) | null = null;
          await withWriter(async (raw) => {
            if (needGeneration) upload = await startGeneration(raw);
          });
          const first = upload as (() => Promise<void>) | null;
          if (first) await startUpload(first);
        }
        await serially(shipRound);
        if (needGeneration) await this.ship();
        succeeded();
      } catch (err) {
        throw report(err);
      }
    },
    /** Restarts the log now (a big log's checkpoint); with `snapshot`, takes a snapshot too. */
    async checkpoint(options: { force?: boolean; snapshot?: boolean } = {}): Promise<void> {
      try {
        if (!options.force && !options.snapshot && position.offset < checkpointBytes) return;
        const upload = await withWriter((raw) => checkpointRound(raw, options.snapshot === true));
        if (upload) await startUpload(upload);
      } catch (err) {
        throw report(err);
      }
    },
    prune,
    /** Ships every `shipEveryMs` (the first round starts the first generation). */
    start(): Promise<void> {
      const round = () => {
        if (ticking) return;
        ticking = true;
        tick()
          .catch((err: unknown) => report(err))
          .finally(() => {
            ticking = false;
          });
      };
      round();
      timer = setInterval(round, deps.shipEveryMs ?? 250);
      timer.unref();
      return Promise.resolve();
    },
    /** Stops the timer and ships what is committed (a clean shutdown loses nothing). */
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      while (ticking) await new Promise((r) => setTimeout(r, 10));
      await this.ship().catch(() => undefined);
      if (snapshotUpload) await snapshotUpload;
    },
  };
}

/** Every complete snapshot on the replica, oldest first. */
export async function listSnapshots(
  destination: ReplicaDestination,
  keyring: Keyring,
): Promise<{ generation: string; manifest: SnapshotManifest }[]> {
  const names = (await destination.list('generations/')).filter((n) =>
    /^generations\/[^/]+\/snapshots\/[0-9a-f]{8}\.json$/.test(n),
  );
  const out: { generation: string; manifest: SnapshotManifest }[] = [];
  for (const name of names) {
    const sealed = await destination.get(name);
    if (!sealed) continue;
    out.push({
      generation: name.split('/')[1] ?? '',
      manifest: JSON.parse(openObject(keyring, name, sealed).toString('utf8')) as SnapshotManifest,
    });
  }
  return out.sort((a, b) => a.manifest.createdAt.localeCompare(b.manifest.createdAt));
}

export type SqliteReplicator = ReturnType<typeof createSqliteReplicator>;
