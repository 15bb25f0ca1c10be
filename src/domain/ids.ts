// UUIDv7 ids: random (not guessable) and time-ordered (index friendly, usable as cursors).
// Within one millisecond a 12-bit counter keeps ids from this process strictly increasing
// (RFC 9562, section 6.2, method 1), so "newest first" lists never reorder same-ms writes.
import { randomFillSync, randomInt } from 'node:crypto';

let lastMs = -1;
let counter = 0;

// Random bytes are drawn 4 KiB at a time: one system call per 512 ids instead of one each.
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

function random8(): Buffer {
  if (poolOffset + 8 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += 8;
  return pool.subarray(poolOffset - 8, poolOffset);
}

export function uuidv7(nowMs: number = Date.now()): string {
  let ms = nowMs;
  if (ms <= lastMs) {
    ms = lastMs;
    counter += 1;
    if (counter > 0xfff) {
      ms = lastMs + 1; // borrow the next millisecond rather than repeat or go back
      counter = randomInt(0x800);
    }
  } else {
    counter = randomInt(0x800); // random start, leaving room to count up
  }
  lastMs = ms;
  const bytes = Buffer.alloc(16);
  random8().copy(bytes, 8);
  const ts = BigInt(ms);
  for (let i = 0; i < 6; i++) bytes[i] = Number((ts >> BigInt(8 * (5 - i))) & 0xffn);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
