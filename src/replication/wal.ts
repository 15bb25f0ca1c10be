// SQLite's write-ahead log, read the way SQLite's own recovery reads it: the 32-byte header, then
// frames of a 24-byte header and one page, each carrying the header's salts and a checksum that
// runs on from the previous frame's. A frame counts only if its salts and checksum hold, and only
// frames up to the last commit frame (one whose header gives the database size) form committed
// transactions. Replication ships exactly those bytes; a restore writes them back as a WAL file
// behind a snapshot of the database and lets SQLite apply them.
// Format: https://www.sqlite.org/fileformat2.html#the_write_ahead_log
import fsp from 'node:fs/promises';

export const WAL_HEADER_SIZE = 32;
export const FRAME_HEADER_SIZE = 24;
const MAGIC_LITTLE_ENDIAN = 0x377f0682;
const MAGIC_BIG_ENDIAN = 0x377f0683;
const FORMAT_VERSION = 3007000;

/** The running checksum pair. */
export type WalChecksum = readonly [number, number];

export interface WalHeader {
  /** Byte order of the checksums (the magic number's low bit). */
  bigEndian: boolean;
  pageSize: number;
  checkpointSequence: number;
  salt1: number;
  salt2: number;
  /** The header's own checksum: where the first frame's checksum starts from. */
  checksum: WalChecksum;
  /** The 32 bytes as read. */
  bytes: Buffer;
}

/**
 * SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `seed`: for each pair
 * of 32-bit words x0, x1 (in the log's byte order), s0 += x0 + s1, s1 += x1 + s0, modulo 2^32.
 */
export function walChecksum(data: Buffer, bigEndian: boolean, seed: WalChecksum): WalChecksum {
  if (data.length % 8 !== 0) throw new Error('the WAL checksum runs over multiples of 8 bytes');
  const words = wordsOf(data, bigEndian);
  let s0 = seed[0];
  let s1 = seed[1];
  for (let i = 0; i < words.length; i += 2) {
    s0 = (s0 + (words[i] as number) + s1) >>> 0;
    s1 = (s1 + (words[i + 1] as number) + s0) >>> 0;
  }
  return [s0, s1];
}

const NATIVE_BIG_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 0;

/** `data` as 32-bit words in the log's byte order: a view when it can be, else an aligned copy. */
function wordsOf(data: Buffer, bigEndian: boolean): Uint32Array {
  if (bigEndian === NATIVE_BIG_ENDIAN && data.byteOffset % 4 === 0)
    return new Uint32Array(data.buffer, data.byteOffset, data.length / 4);
  const copy = Buffer.from(new Uint8Array(data).buffer);
  if (bigEndian !== NATIVE_BIG_ENDIAN) copy.swap32();
  return new Uint32Array(copy.buffer, copy.byteOffset, copy.length / 4);
}

/** The header, or null when `bytes` is not a valid WAL header (short, wrong magic or checksum). */
export function parseWalHeader(bytes: Buffer): WalHeader | null {
  if (bytes.length < WAL_HEADER_SIZE) return null;
  const magic = bytes.readUInt32BE(0);
  if (magic !== MAGIC_LITTLE_ENDIAN && magic !== MAGIC_BIG_ENDIAN) return null;
  if (bytes.readUInt32BE(4) !== FORMAT_VERSION) return null;
  const pageSize = bytes.readUInt32BE(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const bigEndian = magic === MAGIC_BIG_ENDIAN;
  const checksum = walChecksum(bytes.subarray(0, 24), bigEndian, [0, 0]);
  if (checksum[0] !== bytes.readUInt32BE(24) || checksum[1] !== bytes.readUInt32BE(28)) return null;
  return {
    bigEndian,
    pageSize,
    checkpointSequence: bytes.readUInt32BE(12),
    salt1: bytes.readUInt32BE(16),
    salt2: bytes.readUInt32BE(20),
    checksum,
    bytes: Buffer.from(bytes.subarray(0, WAL_HEADER_SIZE)),
  };
}

export interface CommittedRun {
  /** The frames' bytes (headers and pages) from the start offset to the end of the last commit. */
  frames: Buffer;
  /** Offset in the WAL file just past the last commit frame (the start offset if none). */
  endOffset: number;
  /** The running checksum after the last commit frame: where the next run starts from. */
  endChecksum: WalChecksum;
  /** Transactions (commit frames) in the run. */
  commits: number;
  /** Database size in pages after the last commit (0 when there is none). */
  databasePages: number;
}

/**
 * The committed frames of `wal` (the log's bytes from `offset` on), starting from the running
 * checksum `seed` (the header's checksum at the first frame). Stops at the first frame whose salts
 * or checksum do not hold (a frame of an older generation of the log, or a torn write) and drops
 * frames after the last commit (a transaction still being written).
 */
export function committedFrames(
  header: WalHeader,
  wal: Buffer,
  offset: number,
  seed: WalChecksum,
  /** Stop after this many transactions (a point-in-time restore inside a segment). */
  maxCommits = Infinity,
): CommittedRun {
  const frameSize = FRAME_HEADER_SIZE + header.pageSize;
  let at = 0;
  let running = seed;
  let end = 0;
  let endChecksum = seed;
  let commits = 0;
  let databasePages = 0;
  while (at + frameSize <= wal.length && commits < maxCommits) {
    const frame = wal.subarray(at, at + frameSize);
    if (frame.readUInt32BE(8) !== header.salt1 || frame.readUInt32BE(12) !== header.salt2) break;
    if (frame.readUInt32BE(0) === 0) break;
    running = walChecksum(frame.subarray(0, 8), header.bigEndian, running);
    running = walChecksum(frame.subarray(FRAME_HEADER_SIZE), header.bigEndian, running);
    if (running[0] !== frame.readUInt32BE(16) || running[1] !== frame.readUInt32BE(20)) break;
    at += frameSize;
    const pages = frame.readUInt32BE(4);
    if (pages !== 0) {
      end = at;
      endChecksum = running;
      commits += 1;
      databasePages = pages;
    }
  }
  return {
    frames: wal.subarray(0, end),
    endOffset: offset + end,
    endChecksum,
    commits,
    databasePages,
  };
}

/** Reads the WAL file's header and its committed frames from `offset` (header's end if omitted). */
export async function readCommitted(
  walPath: string,
  from?: { offset: number; checksum: WalChecksum },
): Promise<{ header: WalHeader; run: CommittedRun } | null> {
  const file = await fsp.open(walPath, 'r');
  try {
    const headerBytes = Buffer.alloc(WAL_HEADER_SIZE);
    const { bytesRead } = await file.read(headerBytes, 0, WAL_HEADER_SIZE, 0);
    const header = parseWalHeader(headerBytes.subarray(0, bytesRead));
    if (!header) return null;
    const offset = from?.offset ?? WAL_HEADER_SIZE;
    const size = (await file.stat()).size;
    const rest = Buffer.alloc(Math.max(0, size - offset));
    if (rest.length > 0) await file.read(rest, 0, rest.length, offset);
    return {
      header,
      run: committedFrames(header, rest, offset, from?.checksum ?? header.checksum),
    };
  } finally {
    await file.close();
  }
}
