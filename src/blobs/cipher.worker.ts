// Worker thread of the cipher pool: seals and opens blob chunks (AES-256-GCM) and hashes the
// plaintext (SHA-256) of the streams it is given, answering each request in the order it came.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { BlobIntegrityError, openChunk, sealChunk } from './blob-crypto.js';
import type { LaneReply, LaneRequest } from './cipher-pool.js';

interface Lane {
  key: Buffer;
  blobKey: string;
  hash: Hash | null;
}

const lanes = new Map<number, Lane>();
const port = parentPort;
if (!port) throw new Error('cipher.worker runs as a worker thread');

/** A copy in memory of its own, so that it can be transferred back without copying again. */
function owned(data: Buffer): ArrayBuffer {
  const out = new ArrayBuffer(data.length);
  new Uint8Array(out).set(data);
  return out;
}

port.on('message', (msg: LaneRequest) => {
  if (msg.op === 'begin') {
    lanes.set(msg.lane, {
      key: Buffer.from(msg.key),
      blobKey: msg.blobKey,
      hash: msg.hash ? createHash('sha256') : null,
    });
    return;
  }
  if (msg.op === 'end') {
    lanes.delete(msg.lane);
    return;
  }
  const lane = lanes.get(msg.lane);
  if (!lane) return; // released while this request was on its way
  let reply: LaneReply;
  try {
    if (msg.op === 'digest') {
      reply = { lane: msg.lane, seq: msg.seq, digest: lane.hash?.digest('hex') ?? '' };
      lanes.delete(msg.lane);
    } else if (msg.op === 'seal') {
      const plain = Buffer.from(msg.data);
      lane.hash?.update(plain);
      const sealed = sealChunk(lane.key, lane.blobKey, msg.index, msg.last, plain);
      // sealChunk allocates the sealed chunk on an ArrayBuffer of its own: transferred as it is.
      reply = { lane: msg.lane, seq: msg.seq, data: sealed.buffer as ArrayBuffer };
    } else {
      const plain = openChunk(lane.key, lane.blobKey, msg.index, msg.last, Buffer.from(msg.data));
      lane.hash?.update(plain);
      reply = { lane: msg.lane, seq: msg.seq, data: owned(plain) };
    }
  } catch (err) {
    // Chunk failures are integrity errors; anything else is reported without its stack.
    lanes.delete(msg.lane);
    reply = {
      lane: msg.lane,
      seq: msg.seq,
      error: {
        integrity: err instanceof BlobIntegrityError,
        message: err instanceof BlobIntegrityError ? err.message : 'the cipher worker failed',
      },
    };
  }
  port.postMessage(reply, reply.data ? [reply.data] : []);
});
