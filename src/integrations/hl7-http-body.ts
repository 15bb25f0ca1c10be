// The body of an HL7 v2 message sent over HTTP, read with a size cap: a message over the cap is
// not kept (only its head, for the MSH the ACK needs) and the rest is read and dropped, so the
// sender, which usually sends everything before it reads, still gets its ACK.
import type { Readable } from 'node:stream';

/** Enough of an oversize message for its MSH segment (a few hundred bytes in practice). */
export const HL7_HEAD_BYTES = 4096;

export type Hl7Body =
  { kind: 'message'; text: string } | { kind: 'oversize'; head: string; bytes: number };

/** Reads a message of at most `maxBytes`; a longer one becomes its head and its length. */
export function readHl7Body(stream: Readable, maxBytes: number): Promise<Hl7Body> {
  return new Promise((resolve, reject) => {
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let total = 0;
    let oversize = false;
    const cutToHead = () => {
      const head = Buffer.concat(kept).subarray(0, HL7_HEAD_BYTES);
      kept.length = 0;
      kept.push(head);
      keptBytes = head.length;
      oversize = true;
    };
    stream.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (!oversize) {
        kept.push(chunk);
        keptBytes += chunk.length;
        if (total > maxBytes) cutToHead();
      } else if (keptBytes < HL7_HEAD_BYTES) {
        const take = chunk.subarray(0, HL7_HEAD_BYTES - keptBytes);
        kept.push(take);
        keptBytes += take.length;
      }
    });
    stream.once('error', reject);
    stream.once('end', () => {
      const bytes = Buffer.concat(kept);
      resolve(
        oversize
          ? { kind: 'oversize', head: bytes.toString('utf8'), bytes: total }
          : { kind: 'message', text: bytes.toString('utf8') },
      );
    });
  });
}
