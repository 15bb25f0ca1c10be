// Blob store on a local folder: objects/ (hot), archive/ (archive tier), tmp/ (uploads in
// progress). A put writes a temporary file, fsyncs it, renames it into place and fsyncs the
// folder, so a blob is either whole and durable or absent.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
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
      await pipeline(
        source,
        fs.createWriteStream(tmp, { flags: 'wx', mode: 0o600, highWaterMark: 1024 * 1024 }),
      );
      // fsync through a second descriptor flushes the same file (the data, then its size).
      const handle = await fs.promises.open(tmp, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
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
