// The cipher pool: worker threads that seal, open and hash blob chunks, so that a large upload or
// download does not spend the event loop's thread on AES-256-GCM and SHA-256. Each stream gets a
// lane on one worker (its SHA-256 must see the chunks in order, and a thread does all of a
// stream's chunks faster than the HTTP side moves them); streams spread over the workers.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { BlobIntegrityError, type CipherLane } from './blob-crypto.js';

export type LaneRequest =
  | { op: 'begin'; lane: number; key: Uint8Array; blobKey: string; hash: boolean }
  | {
      op: 'seal' | 'open';
      lane: number;
      seq: number;
      index: number;
      last: boolean;
      data: ArrayBuffer;
    }
  | { op: 'digest'; lane: number; seq: number }
  | { op: 'end'; lane: number };

export interface LaneReply {
  lane: number;
  seq: number;
  data?: ArrayBuffer;
  digest?: string;
  error?: { integrity: boolean; message: string };
}

const here = import.meta.url;
// Under tsx (tests, development) the worker is TypeScript and starts through a shim that
// registers tsx in the worker thread.
const workerUrl = new URL(
  here.endsWith('.ts') ? './cipher.worker-source.mjs' : './cipher.worker.js',
  here,
);

/** CARETRAIL_CIPHER_THREADS by default: one core left to the event loop, at most four. */
export function defaultCipherThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism() - 1));
}

export class CipherWorkerError extends Error {
  constructor() {
    super('a cipher worker thread stopped');
    this.name = 'CipherWorkerError';
  }
}

interface Pending {
  resolve: (reply: LaneReply) => void;
  reject: (err: Error) => void;
}

interface Thread {
  worker: Worker;
  /** Open lanes on this thread and their unanswered requests by sequence number. */
  lanes: Map<number, Map<number, Pending>>;
  dead: boolean;
}

export interface CipherPool {
  readonly threads: number;
  /** A lane for one stream, keyed by its data key and blob key. */
  lane(key: Buffer, blobKey: string, hash: boolean): CipherLane;
  /** The worker threads now running (health output; tests stop one to see a crash handled). */
  workers(): readonly Worker[];
  close(): Promise<void>;
}

export function createCipherPool(threads: number): CipherPool {
  if (!Number.isInteger(threads) || threads < 1) throw new Error('threads must be 1 or more');
  const pool: (Thread | null)[] = Array.from({ length: threads }, () => null);
  let nextLane = 1;
  let closed = false;

  /** Fails everything waiting on a thread that stopped; the next lane starts a new one. */
  const lose = (thread: Thread) => {
    if (thread.dead) return;
    thread.dead = true;
    const slot = pool.indexOf(thread);
    if (slot >= 0) pool[slot] = null;
    for (const pending of thread.lanes.values())
      for (const p of pending.values()) p.reject(new CipherWorkerError());
    thread.lanes.clear();
  };

  const start = (): Thread => {
    const worker = new Worker(workerUrl);
    // Idle workers do not keep the process alive; close() ends them on shutdown.
    worker.unref();
    const thread: Thread = { worker, lanes: new Map(), dead: false };
    worker.on('message', (reply: LaneReply) => {
      const pending = thread.lanes.get(reply.lane)?.get(reply.seq);
      if (!pending) return;
      thread.lanes.get(reply.lane)?.delete(reply.seq);
      pending.resolve(reply);
    });
    worker.on('error', () => {
      lose(thread);
    });
    worker.on('exit', () => {
      lose(thread);
    });
    return thread;
  };

  /** The thread with the fewest open lanes, started on first use (or after a crash). */
  const pick = (): Thread => {
    let best: Thread | null = null;
    for (let i = 0; i < pool.length; i++) {
      const t = pool[i] ?? (pool[i] = start());
      if (!best || t.lanes.size < best.lanes.size) best = t;
    }
    if (!best) throw new Error('empty cipher pool');
    return best;
  };

  return {
    threads,
    lane(key, blobKey, hash) {
      if (closed) throw new Error('the cipher pool is closed');
      const thread = pick();
      const id = nextLane++;
      const pending = new Map<number, Pending>();
      thread.lanes.set(id, pending);
      let seq = 0;
      let open = true;
      // The key is copied into the message: the caller's buffer stays its own.
      thread.worker.postMessage({
        op: 'begin',
        lane: id,
        key,
        blobKey,
        hash,
      } satisfies LaneRequest);

      const ask = (
        request: (seq: number) => LaneRequest,
        transfer: ArrayBuffer[] = [],
      ): Promise<LaneReply> => {
        if (thread.dead) return Promise.reject(new CipherWorkerError());
        if (!open) return Promise.reject(new Error('the cipher lane was released'));
        const n = seq++;
        return new Promise<LaneReply>((resolve, reject) => {
          pending.set(n, { resolve, reject });
          thread.worker.postMessage(request(n), transfer);
        }).then((reply) => {
          if (reply.error) {
            open = false;
            thread.lanes.delete(id);
            throw reply.error.integrity
              ? new BlobIntegrityError(reply.error.message)
              : new Error(reply.error.message);
          }
          return reply;
        });
      };

      /**
       * The chunk's memory goes to the worker (transferred: the caller must not reuse it); a
       * view into a larger buffer (a short last chunk) is copied first.
       */
      const chunk = async (
        op: 'seal' | 'open',
        index: number,
        last: boolean,
        data: Buffer,
      ): Promise<Buffer> => {
        const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
        const buffer = whole ? (data.buffer as ArrayBuffer) : new Uint8Array(data).buffer;
        const reply = await ask(
          (n) => ({ op, lane: id, seq: n, index, last, data: buffer }),
          [buffer],
        );
        if (!reply.data) throw new Error('the cipher worker answered without data');
        return Buffer.from(reply.data);
      };

      return {
        seal: (index, last, plain) => chunk('seal', index, last, plain),
        open: (index, last, sealed) => chunk('open', index, last, sealed),
        async digest() {
          const reply = await ask((n) => ({ op: 'digest', lane: id, seq: n }));
          open = false;
          thread.lanes.delete(id);
          return reply.digest ?? '';
        },
        release() {
          if (!open) return;
          open = false;
          thread.lanes.delete(id);
          if (!thread.dead)
            thread.worker.postMessage({ op: 'end', lane: id } satisfies LaneRequest);
        },
      };
    },
    workers: () => pool.filter((t): t is Thread => t !== null).map((t) => t.worker),
    async close() {
      closed = true;
      const running = pool.filter((t): t is Thread => t !== null);
      pool.fill(null);
      await Promise.all(running.map((t) => t.worker.terminate()));
    },
  };
}
