// The MLLP transport for HL7 v2: a TCP listener that cuts the byte stream into frames
// (VT … FS CR), hands each message to a handler one at a time per connection, and writes the
// handler's ACK back in a frame. It knows nothing of HL7 itself.
//
// Why not @medplum/hl7's Hl7Server: its connection ends a message only when a TCP read ends in
// FS CR, so two messages in one read, or an FS CR split across reads, are lost or merged, and it
// buffers without limit. Frames are cut here; the library's Hl7Client is what tests talk with.
// The same framing runs over plain TCP or TLS; a connection silent for the idle limit is closed.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

/** Bytes of an over-long or cut-off frame kept so that its MSH can still be answered. */
const HEAD_BYTES = 4096;
/** Frames read but not answered yet, per connection, before the connection stops reading. */
const MAX_QUEUED_FRAMES = 32;

export type Frame =
  /** A whole message (the bytes between VT and FS CR). */
  | { kind: 'message'; bytes: Buffer }
  /** A message longer than the limit: its first bytes only; the rest was dropped. */
  | { kind: 'oversize'; head: Buffer }
  /** A frame cut off by the start of another (VT before FS CR): its first bytes. */
  | { kind: 'truncated'; head: Buffer };

/**
 * Cuts a byte stream into MLLP frames, whatever the TCP reads look like: several frames in one
 * read, one frame over many reads, an FS and its CR in different reads. Bytes outside a frame
 * are skipped. A frame longer than `maxBytes` is not kept; only its head is.
 */
export class MllpDeframer {
  private inFrame = false;
  private parts: Buffer[] = [];
  private size = 0;
  private head: Buffer[] = [];
  private headSize = 0;
  private oversize = false;
  /** The previous read ended in FS: the frame ends if this one starts with CR. */
  private pendingFs = false;
  /** Bytes skipped outside any frame (garbage, stray CRs), for the log. */
  skipped = 0;

  constructor(private readonly maxBytes: number) {}

  /** True while a frame has started and not ended. */
  get partial(): boolean {
    return this.inFrame;
  }

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let i = 0;
    if (this.pendingFs) {
      this.pendingFs = false;
      if (chunk[0] === CR) {
        frames.push(this.finish());
        i = 1;
      } else this.append(Buffer.of(FS));
    }
    while (i < chunk.length) {
      if (!this.inFrame) {
        const start = chunk.indexOf(VT, i);
        if (start === -1) {
          this.skipped += chunk.length - i;
          return frames;
        }
        this.skipped += start - i;
        this.inFrame = true;
        i = start + 1;
        continue;
      }
      const end = chunk.indexOf(FS, i);
      const restart = chunk.indexOf(VT, i);
      if (restart !== -1 && (end === -1 || restart < end)) {
        this.append(chunk.subarray(i, restart));
        frames.push({ kind: 'truncated', head: Buffer.concat(this.head) });
        this.reset();
        this.inFrame = true;
        i = restart + 1;
        continue;
      }
      if (end === -1) {
        this.append(chunk.subarray(i));
        return frames;
      }
      this.append(chunk.subarray(i, end));
      if (end + 1 === chunk.length) {
        this.pendingFs = true;
        return frames;
      }
      if (chunk[end + 1] === CR) {
        frames.push(this.finish());
        i = end + 2;
      } else {
        // An FS inside the message is data (nothing forbids it in a TX value).
        this.append(chunk.subarray(end, end + 1));
        i = end + 1;
      }
    }
    return frames;
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.headSize < HEAD_BYTES) {
      const take = bytes.subarray(0, HEAD_BYTES - this.headSize);
      this.head.push(take);
      this.headSize += take.length;
    }
    if (this.oversize) return;
    if (this.size + bytes.length > this.maxBytes) {
      this.oversize = true;
      this.parts = [];
      return;
    }
    // A copy: the socket may reuse the read buffer.
    this.parts.push(Buffer.from(bytes));
    this.size += bytes.length;
  }

  private finish(): Frame {
    const frame: Frame = this.oversize
      ? { kind: 'oversize', head: Buffer.concat(this.head) }
      : { kind: 'message', bytes: Buffer.concat(this.parts, this.size) };
    this.reset();
    return frame;
  }

  private reset(): void {
    this.inFrame = false;
    this.parts = [];
    this.size = 0;
    this.head = [];
    this.headSize = 0;
    this.oversize = false;
    this.pendingFs = false;
  }
}

/** Wraps an answer in an MLLP frame. */
export function frameOf(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(body.length + 3);
  out[0] = VT;
  body.copy(out, 1);
  out[body.length + 1] = FS;
  out[body.length + 2] = CR;
  return out;
}

/**
 * The text of a message: UTF-8 unless MSH-18 names ISO 8859-1 (common on older analysers).
 * Decoding never fails; bytes that are not UTF-8 become U+FFFD.
 */
export function decodeMessage(bytes: Buffer): string {
  const firstLine = bytes.subarray(0, Math.min(bytes.length, 2048)).toString('latin1');
  const msh = firstLine.split(/\r|\n/)[0] ?? '';
  const charset = (msh.split('|')[17] ?? '').trim().toUpperCase();
  return charset === '8859/1' ? bytes.toString('latin1') : bytes.toString('utf8');
}

export interface MllpPeer {
  address: string | null;
}

export interface MllpHandler {
  /** Answers one frame; null sends nothing. Must not throw (the listener logs and drops). */
  (frame: Frame, peer: MllpPeer): Promise<string | null>;
}

export interface MllpListener {
  readonly port: number;
  /** Stops accepting, lets messages being handled finish and be answered, then closes. */
  close(timeoutMs?: number): Promise<void>;
}

export async function startMllpListener(options: {
  host: string;
  port: number;
  maxBytes: number;
  log: Logger;
  handle: MllpHandler;
  maxConnections?: number;
  /** A connection that sends nothing for this long is closed (unless its ACK is being made). */
  idleMs: number;
  /** Serve TLS with these options; `register` receives the server (certificate reloads). */
  tls: { options: tls.TlsOptions; register(server: tls.Server): void } | null;
}): Promise<MllpListener> {
  const { log, handle } = options;
  const connections = new Set<{ socket: net.Socket; idle: () => Promise<void> }>();

  const onConnection = (socket: net.Socket) => {
    const peer: MllpPeer = { address: socket.remoteAddress ?? null };
    // An ACK goes out at once, not held back to be merged with the next write (Nagle).
    socket.setNoDelay(true);
    const deframer = new MllpDeframer(options.maxBytes);
    const queue: Frame[] = [];
    let working: Promise<void> | null = null;

    // One message at a time per connection, answered in order: an ACK always follows the
    // commit of its own message.
    const work = async () => {
      for (let frame = queue.shift(); frame; frame = queue.shift()) {
        if (queue.length < MAX_QUEUED_FRAMES && socket.isPaused()) socket.resume();
        let answer: string | null = null;
        try {
          answer = await handle(frame, peer);
        } catch (err) {
          log.error({ err: { name: (err as Error).name } }, 'mllp handler failed');
        }
        if (answer !== null && socket.writable) socket.write(frameOf(answer));
      }
      working = null;
    };
    const connection = {
      socket,
      idle: async () => {
        while (working) await working;
      },
    };
    connections.add(connection);

    // Silence from the sender closes the connection; while its message is being stored the
    // silence is ours, and the ACK write starts the count again.
    socket.setTimeout(options.idleMs);
    socket.on('timeout', () => {
      if (working) return;
      log.info(
        { peer: peer.address, idleSeconds: Math.round(options.idleMs / 1000) },
        'mllp connection idle: closed',
      );
      socket.destroy();
    });

    socket.on('data', (chunk: Buffer) => {
      const frames = deframer.push(chunk);
      if (frames.length === 0) return;
      queue.push(...frames);
      if (queue.length >= MAX_QUEUED_FRAMES) socket.pause();
      working ??= work();
    });
    socket.on('end', () => {
      void connection.idle().then(() => socket.end());
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      log.info({ peer: peer.address, code: err.code }, 'mllp connection error');
    });
    socket.on('close', () => {
      connections.delete(connection);
      if (deframer.partial)
        log.warn({ peer: peer.address }, 'mllp connection closed inside a frame: nothing kept');
      if (deframer.skipped > 0)
        log.warn({ peer: peer.address, bytes: deframer.skipped }, 'mllp bytes outside frames');
    });
  };
  // Half-open: a sender may send its last message and end its side, still owed the ACK.
  const server = options.tls
    ? tls.createServer({ ...options.tls.options, allowHalfOpen: true }, onConnection)
    : net.createServer({ allowHalfOpen: true }, onConnection);
  if (server instanceof tls.Server) {
    options.tls?.register(server);
    // A plain-TCP sender, an old protocol or a refused client certificate: no connection at all.
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      log.info(
        { peer: socket.remoteAddress ?? null, code: err.code ?? 'tls_error' },
        'mllp TLS handshake failed',
      );
    });
  }
  server.maxConnections = options.maxConnections ?? 128;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  log.info({ host: options.host, port, tls: options.tls !== null }, 'MLLP listener started');

  return {
    port,
    async close(timeoutMs = 10_000) {
      const closed = new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      const drained = Promise.all(
        [...connections].map(async (c) => {
          await c.idle();
          c.socket.end();
        }),
      );
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        drained,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      for (const c of connections) c.socket.destroy();
      await closed;
    },
  };
}
