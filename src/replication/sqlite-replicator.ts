// Continuous replication of the SQLite database (Litestream's design, in-process): the server's
// connections leave checkpoints to us (`checkpoints: 'caller'`), so no WAL frame is overwritten
// before it is read; each round reads the frames committed since the last one (checksums
// checked, see wal.ts) and ships them, sealed, as one segment; a checkpoint restarts the log only
// between group-commit batches and after the log's last frames are in hand. A generation starts
// with a snapshot of the database file (taken right after a full checkpoint, while no batch
// commits) and then holds the segments of every log index after it; anything that breaks the
// chain (the log restarted by another process, frames lost with a failed upload) starts a new
// generation. Restoring is `restore.ts`.
//
// Replica layout (every object sealed, see sealed.ts):
//   generations/<id>/generation.json        { createdAt, parts, bytes, pageSize }   (written last)
//   generations/<id>/snapshot/<part>        16 MiB of the database file each, gzip'd
//   generations/<id>/wal/<index>/<offset>   a segment: meta, the 32-byte WAL header, frames
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type BetterSqlite3 from 'better-sqlite3';
import { gzipSync } from 'node:zlib';
import type { Keyring } from '../blobs/master-key.js';
import type { Database } from '../store/database.js';
import type { ReplicaDestination } from './destination.js';
import { sealObject } from './sealed.js';
import {
  WAL_HEADER_SIZE,
  parseWalHeader,
  readCommitted,
  type CommittedRun,
  type WalChecksum,
  type WalHeader,
} from './wal.js';

export const SNAPSHOT_PART_BYTES = 16 * 1024 * 1024;

export interface SegmentMeta {
  index: number;
  offset: number;
  endOffset: number;
  commits: number;
  /** When the segment was read off the log: every commit in it happened at or before. */
  shippedAt: string;
}

export interface GenerationManifest {
  createdAt: string;
  parts: number;
  bytes: number;
}

export interface ReplicationStatus {
  destination: string;
  generation: string | null;
  snapshotAt: string | null;
  /** Log index and offset shipped up to. */
  index: number;
  offset: number;
  lastShipAt: string | null;
  segments: number;
  shippedBytes: number;
  lastError: string | null;
}

export const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

export function segmentName(generation: string, index: number, offset: number): string {
  return `generations/${generation}/wal/${hex(index, 8)}/${hex(offset, 16)}`;
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

export function createSqliteReplicator(deps: {
  db: Database;
  destination: ReplicaDestination;
  keyring: Keyring;
  now?: () => Date;
  /** Ship at least this often (default 1 s). */
  shipEveryMs?: number;
  /** Restart the log once it holds this many bytes (default 4 MiB). */
  checkpointBytes?: number;
  onError?: (err: Error) => void;
}) {
  const { db, destination, keyring } = deps;
  const now = deps.now ?? (() => new Date());
  const file = db.sqliteFile;
  if (file === null) throw new Error('SQLite replication needs a SQLite database');
  const walPath = `${file}-wal`;
  const checkpointBytes = deps.checkpointBytes ?? 4 * 1024 * 1024;

  let generation: string | null = null;
  let position: Position = {
    index: 0,
    offset: WAL_HEADER_SIZE,
    checksum: null,
    salts: null,
  };
  const status: ReplicationStatus = {
    destination: destination.description,
    generation: null,
    snapshotAt: null,
    index: 0,
    offset: WAL_HEADER_SIZE,
    lastShipAt: null,
    segments: 0,
    shippedBytes: 0,
    lastError: null,
  };
  let needGeneration = true;
  let busy: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | null = null;

  const put = async (name: string, plain: Buffer) => {
    const sealed = sealObject(keyring, name, plain);
    await destination.put(name, sealed);
    status.shippedBytes += sealed.length;
  };

  /** Serializes rounds: shipping, checkpoints and generations never overlap. */
  const serially = (fn: () => Promise<void>): Promise<void> => {
    const run = busy.then(fn);
    busy = run.catch(() => undefined);
    return run;
  };

  const fail = (err: unknown): never => {
    const error = err instanceof Error ? err : new Error(String(err));
    status.lastError = error.message;
    deps.onError?.(error);
    throw error;
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

  /** A new generation: full checkpoint and a copy of the file while no batch commits, then upload. */
  async function newGeneration(): Promise<void> {
    const id = `${now().toISOString().replace(/[-:.]/g, '')}-${randomBytes(4).toString('hex')}`;
    const copy = `${file}.replica-snapshot`;
    let header: WalHeader | null = null;
    await db.exclusive(async (raw) => {
      if (!(await restartLog(raw, true)))
        throw new Error('the log could not be checkpointed for a snapshot (readers held it)');
      await fsp.copyFile(file as string, copy);
      header = beginLog(raw);
    });
    const createdAt = now().toISOString();
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
            `generations/${id}/snapshot/${hex(parts, 6)}`,
            gzipSync(buffer.subarray(0, bytesRead), { level: 1 }),
          );
          parts += 1;
          bytes += bytesRead;
        }
      } finally {
        await handle.close();
      }
      const manifest: GenerationManifest = { createdAt, parts, bytes };
      await put(`generations/${id}/generation.json`, Buffer.from(JSON.stringify(manifest)));
    } finally {
      await fsp.rm(copy, { force: true });
    }
    generation = id;
    position = adopt(0, header as unknown as WalHeader);
    needGeneration = false;
    status.generation = id;
    status.snapshotAt = createdAt;
    status.index = 0;
    status.offset = WAL_HEADER_SIZE;
  }

  /** The frames committed since `position`, or null when the log broke away from it. */
  async function committedSincePosition(): Promise<
    { header: WalHeader; run: CommittedRun } | null | 'none'
  > {
    const first = await readCommitted(walPath).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    });
    if (first === null) return 'none'; // no log yet, or an empty one after a TRUNCATE
    const { header } = first;
    if (position.salts === null) {
      // The first header of this log index: adopt it.
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
    const meta: SegmentMeta = {
      index: position.index,
      offset: position.offset,
      endOffset: run.endOffset,
      commits: run.commits,
      shippedAt: now().toISOString(),
    };
    await put(
      segmentName(generation, position.index, position.offset),
      encodeSegment(meta, header, run.frames),
    );
    position = { ...position, offset: run.endOffset, checksum: run.endChecksum };
    status.segments += 1;
    status.lastShipAt = meta.shippedAt;
    status.index = position.index;
    status.offset = position.offset;
  }

  /** One round: ship what was committed since the last; a broken chain starts a generation. */
  function ship(): Promise<void> {
    return serially(async () => {
      try {
        if (needGeneration) await newGeneration();
        const since = await committedSincePosition();
        if (since === 'none') return;
        if (since === null) {
          // The log restarted without us (another process checkpointed): frames may be gone.
          needGeneration = true;
          await newGeneration();
          return;
        }
        await shipSegment(since.header, since.run);
        status.lastError = null;
      } catch (err) {
        fail(err);
      }
    });
  }

  /**
   * Restarts the log once it is big: between batches, take the log's last committed frames in
   * hand and run a RESTART checkpoint; then ship those frames and go on at the next log index.
   */
  function checkpoint(force = false): Promise<void> {
    return serially(async () => {
      try {
        if (needGeneration || generation === null || position.salts === null) return;
        if (!force && position.offset < checkpointBytes) return;
        let last: { header: WalHeader; run: CommittedRun } | null | 'none' = 'none';
        let next: WalHeader | null = null;
        await db.exclusive(async (raw) => {
          last = await committedSincePosition();
          if (last === null) return;
          if (await restartLog(raw, false)) next = beginLog(raw);
        });
        const taken = last as { header: WalHeader; run: CommittedRun } | null | 'none';
        const restarted = next as WalHeader | null;
        if (taken === null) {
          needGeneration = true;
          return;
        }
        if (taken !== 'none') {
          try {
            await shipSegment(taken.header, taken.run);
          } catch (err) {
            // Those frames are now only in the database file: the chain is broken.
            if (restarted) needGeneration = true;
            throw err;
          }
        }
        if (restarted) {
          position = adopt(position.index + 1, restarted);
          status.index = position.index;
          status.offset = position.offset;
        }
        status.lastError = null;
      } catch (err) {
        fail(err);
      }
    });
  }

  return {
    status: (): ReplicationStatus => ({ ...status }),
    ship,
    checkpoint,
    /** Starts the first generation, then ships every `shipEveryMs` (default 1 s). */
    async start(): Promise<void> {
      await ship();
      timer = setInterval(() => {
        ship()
          .then(() => checkpoint())
          .catch(() => undefined); // reported through status and onError
      }, deps.shipEveryMs ?? 1000);
      timer.unref();
    },
    /** Stops the timer and ships what is committed (a clean shutdown loses nothing). */
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      await ship();
    },
  };
}

export type SqliteReplicator = ReturnType<typeof createSqliteReplicator>;
