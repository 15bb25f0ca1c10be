// Stream helpers for blob tests: a buffer as a stream of pieces, and a stream read to the end.
import { Readable } from 'node:stream';

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** `data` as a stream of `pieceBytes`-sized writes, as a socket or file would deliver it. */
export function body(data: Buffer, pieceBytes = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += pieceBytes)
    parts.push(data.subarray(at, at + pieceBytes));
  return Readable.from(parts);
}
