// Blob store on a local folder: objects/ (hot), archive/ (archive tier), tmp/ (uploads in
// progress). A put writes a temporary file, fsyncs it, renames it into place and fsyncs the
// folder, so a blob is either whole and durable or absent.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../domain/errors.js';
import {
  BlobNotFoundError,
  storeFull,
  type BlobStore,
  type BlobTier,
  type ByteRange,
} from './blob-store.js';

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/** Temporary files older than this are leftovers of a crash and are removed at start. */
const STALE_TMP_MS = 60 * 60 * 1000;

/**
 * A background fdatasync every this many bytes written: the disk flushes while the rest streams
 * in, and the fsync before the answer has at most this much left (one fsync of 100 MB at the end
 * took most of a second).
 */
export const SYNC_EVERY_BYTES = 8 * 1024 * 1024;

/**
 * Writes a new file (exclusive create, mode 0600) with an fdatasync started in the background
 * after each SYNC_EVERY_BYTES; at most one runs, and the writer waits for it before getting
 * another SYNC_EVERY_BYTES ahead. Finishing waits for it, then fsyncs the file (data and size).
 * A failed background sync fails the next write or the finish.
 */
class SyncingFileWriter extends Writable {
  private handle: fs.promises.FileHandle | null = null;
  private unsynced = 0;
  private syncing: Promise<void> | null = null;
  private syncError: Error | null = null;

  constructor(private readonly file: string) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fs.promises.open(this.file, 'wx', 0o600).then(
      (handle) => {
        this.handle = handle;
        callback();
      },
      (err: unknown) => {
        callback(err as Error);
      },
    );
  }

  private throwIfSyncFailed(): void {
    if (this.syncError) throw this.syncError;
  }

  private startSync(handle: fs.promises.FileHandle): void {
    this.unsynced = 0;
    this.syncing = handle
      .datasync()
      .catch((err: unknown) => {
        this.syncError ??= err as Error;
      })
      .finally(() => {
        this.syncing = null;
      });
  }

  private async writeAll(data: Buffer): Promise<void> {
    const handle = this.handle;
    if (!handle) throw new Error('the file is not open');
    this.throwIfSyncFailed();
    let at = 0;
    while (at < data.length) {
      const { bytesWritten } = await handle.write(data, at, data.length - at);
      at += bytesWritten;
    }
    this.unsynced += data.length;
    if (this.unsynced < SYNC_EVERY_BYTES) return;
    // Still flushing the previous 8 MiB: wait once another 8 MiB is dirty (bounds what the
    // final fsync may find).
    if (this.syncing) {
      if (this.unsynced < 2 * SYNC_EVERY_BYTES) return;
      await this.syncing;
      this.throwIfSyncFailed();
    }
    this.startSync(handle);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void) {
    this.writeAll(chunk).then(
      () => {
        callback();
      },
      (err: unknown) => {
        callback(err as Error);
      },
    );
  }

  private async finish(): Promise<void> {
    const handle = this.handle;
    if (!handle) throw new Error('the file is not open');
    await this.syncing;
    this.throwIfSyncFailed();
    await handle.sync();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finish().then(
      () => {
        callback();
      },
      (err: unknown) => {
        callback(err as Error);
      },
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = null;
    // A background sync still running must finish before the descriptor closes.
    Promise.resolve(this.syncing)
      .then(() => handle?.close())
      .then(
        () => {
          callback(err);
        },
        (closeErr: unknown) => {
          callback(err ?? (closeErr as Error));
        },
      );
  }
}

function checkKey(key: string): void {
  if (!KEY.test(key) || key.includes('..')) throw new Error('invalid blob key');
}

/** The disk failed the write or its fsync: what it holds is unknown (fail-stop). */
function isIoFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'EIO' || code === 'EROFS';
}

function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function openFsBlobStore(root: string, onFatalIo?: (err: Error) => void): BlobStore {
  const base = path.resolve(root);
  const dirs = {
    hot: path.join(base, 'objects'),
    archive: path.join(base, 'archive'),
    tmp: path.join(base, 'tmp'),
  };
  for (const dir of Object.values(dirs)) fs.mkdirSync(dir, { recursive: true });
  const now = Date.now();
  for (const name of fs.readdirSync(dirs.tmp)) {
    const file = path.join(dirs.tmp, name);
    if (now - fs.statSync(file).mtimeMs > STALE_TMP_MS) fs.rmSync(file, { force: true });
  }

  const fileOf = (tier: BlobTier, key: string): string => {
    checkKey(key);
    return path.join(dirs[tier], key.slice(0, 2), key);
  };

  /** Writes `source` to `target` through a fsync'd temporary file; nothing is left on failure. */
  async function writeDurably(target: string, source: Readable): Promise<number> {
    const tmp = path.join(dirs.tmp, `${path.basename(target)}.${randomBytes(6).toString('hex')}`);
    let bytes = 0;
    try {
      source.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      // The writer fsyncs the file (after background fdatasyncs on the way) before it finishes.
      await pipeline(source, new SyncingFileWriter(tmp));
      await fs.promises.mkdir(path.dirname(target), { recursive: true });
      await fs.promises.rename(tmp, target);
      await fsyncDir(path.dirname(target));
      return bytes;
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      if (isNoSpace(err)) throw storeFull();
      if (isIoFailure(err)) {
        onFatalIo?.(err as Error);
        throw new AppError(
          'unavailable',
          'The file store cannot take writes right now; an operator must check it.',
        );
      }
      throw err;
    }
  }

  async function locate(key: string, tier: BlobTier): Promise<string> {
    // The recorded tier first; the other one covers a crash between the archive job's steps.
    for (const t of tier === 'hot'
      ? (['hot', 'archive'] as const)
      : (['archive', 'hot'] as const)) {
      const file = fileOf(t, key);
      try {
        await fs.promises.access(file);
        return file;
      } catch {
        // not in this tier
      }
    }
    throw new BlobNotFoundError(key);
  }

  return {
    kind: 'file',
    description: `file:${base}`,
    archiveDelaySeconds: 0,
    async put(key, body) {
      return { bytes: await writeDurably(fileOf('hot', key), body) };
    },
    async get(key, tier, range?: ByteRange) {
      const file = await locate(key, tier);
      return fs.createReadStream(file, {
        ...(range ? { start: range.start, end: range.end } : {}),
        highWaterMark: 1024 * 1024,
      });
    },
    async archive(key) {
      const target = fileOf('archive', key);
      const source = fileOf('hot', key);
      if (!fs.existsSync(source)) {
        if (fs.existsSync(target)) return; // already moved
        throw new BlobNotFoundError(key);
      }
      // Copy, make durable, then drop the hot copy: a crash in between leaves two copies, and
      // the next run finishes the move.
      await writeDurably(target, fs.createReadStream(source));
      await fs.promises.rm(source, { force: true });
      await fsyncDir(path.dirname(source));
    },
    prepareRead: () => Promise.resolve({ ready: true }),
    async delete(key) {
      for (const tier of ['hot', 'archive'] as const) {
        const file = fileOf(tier, key);
        await fs.promises.rm(file, { force: true });
      }
    },
    async ping() {
      await fs.promises.access(dirs.hot, fs.constants.W_OK);
    },
    close: () => Promise.resolve(),
  };
}
