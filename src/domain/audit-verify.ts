// Streaming verification of the audit chain against signed checkpoints. Pure: the caller feeds
// events in sequence order and says what it knows about the tail; signatures are checked by a
// function it passes in.
import { createHash } from 'node:crypto';
import { canonicalJson, chainHash, eventHash, GENESIS_CHAIN, type ChainedEvent } from './audit.js';

export interface Checkpoint {
  seq: number;
  chain: string;
  createdAt: string;
  keyId: string;
  signature: string;
}

/** The bytes a checkpoint signature covers. */
export function checkpointPayload(
  c: Pick<Checkpoint, 'seq' | 'chain' | 'createdAt' | 'keyId'>,
): Buffer {
  return Buffer.from(
    canonicalJson({
      type: 'caretrail.audit.checkpoint',
      seq: c.seq,
      chain: c.chain,
      createdAt: c.createdAt,
      keyId: c.keyId,
    }),
  );
}

export function keyIdOf(rawPublicKey: Buffer): string {
  return createHash('sha256').update(rawPublicKey).digest('hex').slice(0, 16);
}

export const alteredReason = (seq: number): string =>
  `event ${seq} was altered (its hash does not match its content)`;

export interface VerifyResult {
  ok: boolean;
  /** Events whose hash and chain were recomputed. */
  checked: number;
  firstBadSequence: number | null;
  reason: string | null;
  /** The newest checkpoint that matched the recomputed chain. */
  lastGoodCheckpoint: number | null;
  /**
   * PostgreSQL: events committed but not yet sealed into the chain when verification ended
   * (outside what was checked; they are sealed within a second unless a long transaction holds
   * the horizon back). Absent where events are chained as they are written.
   */
  unsealed?: { count: number; oldestAt: string | null };
}

/**
 * Events after the first of a range, walked on another thread: `lastSeq`/`lastChain` are the
 * last event that passed every check (gapless from the first), `checkpointChains` the stored
 * chain at each checkpoint's seq up to it, `failure` the event that stopped the walk
 * (`counted`: it was in position, so a one-thread walk would count it as checked).
 */
export interface VerifiedRun {
  lastSeq: number;
  lastChain: string;
  checkpointChains: ReadonlyMap<number, string>;
  failure: { seq: number; reason: string; counted: boolean } | null;
}

/** The reasons a link fails, shared by every walk so that they read the same. */
export const linkFailure = {
  missing: (seq: number) => `event ${seq} is missing`,
  outOfOrder: (seq: number) => `event ${seq} is out of order or duplicated`,
  unchained: (seq: number) => `event ${seq} does not chain to the event before it`,
};

/**
 * Walks one contiguous range of events for ChainVerifier.pushRun (on a worker thread): every
 * event's content and position, every link after the first (the first event's link, to the range
 * before, is the joining thread's), and the chain at checkpoint positions.
 */
export class RangeWalker {
  first: { seq: number; hash: string; chain: string; contentMatches: boolean } | null = null;
  private lastSeq = 0;
  private lastChain = '';
  private failure: VerifiedRun['failure'] = null;
  private readonly checkpointChains: [number, string][] = [];
  private nextCheckpoint = 0;

  /** `checkpointSeqs`: checkpoint positions, ascending. */
  constructor(private readonly checkpointSeqs: readonly number[]) {}

  /** False once the walk can stop (a failure, or the first event's content is altered). */
  push(seq: number, hash: string, chain: string, contentMatches: boolean): boolean {
    if (this.first === null) {
      this.first = { seq, hash, chain, contentMatches };
      if (!contentMatches) return false;
    } else {
      const expected = this.lastSeq + 1;
      if (seq !== expected) {
        this.failure =
          seq > expected
            ? { seq: expected, reason: linkFailure.missing(expected), counted: false }
            : { seq, reason: linkFailure.outOfOrder(seq), counted: false };
        return false;
      }
      if (!contentMatches) {
        this.failure = { seq, reason: alteredReason(seq), counted: true };
        return false;
      }
      if (chainHash(this.lastChain, hash) !== chain) {
        this.failure = { seq, reason: linkFailure.unchained(seq), counted: true };
        return false;
      }
    }
    const seqs = this.checkpointSeqs;
    while (this.nextCheckpoint < seqs.length && (seqs[this.nextCheckpoint] ?? 0) < seq)
      this.nextCheckpoint++;
    if (seqs[this.nextCheckpoint] === seq) this.checkpointChains.push([seq, chain]);
    this.lastSeq = seq;
    this.lastChain = chain;
    return true;
  }

  /** The run after the first event, in a form that crosses threads (no Map). */
  run(): Omit<VerifiedRun, 'checkpointChains'> & { checkpointChains: [number, string][] } {
    return {
      lastSeq: this.lastSeq,
      lastChain: this.lastChain,
      checkpointChains: this.checkpointChains,
      failure: this.failure,
    };
  }
}

/**
 * Verifies a chain segment. `start` is where the retained events begin: genesis, or a signed
 * checkpoint just before them (archived segments). Call `push` for each event in seq order, then
 * `finish` with the highest seq the system claims to have written (its head).
 */
export class ChainVerifier {
  private expectedSeq: number;
  private previousChain: string;
  private checked = 0;
  private failure: { seq: number; reason: string } | null = null;
  private readonly pending: Checkpoint[];
  private lastGood: Checkpoint | null;

  constructor(
    checkpoints: readonly Checkpoint[],
    verifySignature: (c: Checkpoint) => boolean,
    start: { seq: number; chain: string } = { seq: 0, chain: GENESIS_CHAIN },
    /**
     * Most events allowed without a signed checkpoint (checkpoints are signed at least every N
     * events): a longer stretch means checkpoint rows were deleted to hide a rewrite.
     */
    private readonly maxGap: number = Infinity,
  ) {
    this.expectedSeq = start.seq + 1;
    this.previousChain = start.chain;
    const sorted = [...checkpoints].sort((a, b) => a.seq - b.seq);
    const forged = sorted.find((c) => !verifySignature(c));
    if (forged)
      this.fail(Math.max(1, forged.seq), `checkpoint at ${forged.seq} has no valid signature`);
    this.pending = sorted.filter((c) => c.seq > start.seq);
    let previous = start.seq;
    for (const c of this.pending) {
      if (c.seq - previous > maxGap) {
        this.fail(
          previous + 1,
          `no signed checkpoint between ${previous} and ${c.seq}: checkpoints were removed`,
        );
        break;
      }
      previous = c.seq;
    }
    this.lastSigned = previous;
    this.lastGood =
      start.seq > 0
        ? { seq: start.seq, chain: start.chain, createdAt: '', keyId: '', signature: '' }
        : null;
  }

  /** The newest checkpoint (or the start), for the gap rule at the tail. */
  private lastSigned: number;

  private fail(seq: number, reason: string): void {
    if (this.failure === null || seq < this.failure.seq) this.failure = { seq, reason };
  }

  /** False once a failure is known (the caller may stop reading). */
  push({ event, hash, chain }: ChainedEvent): boolean {
    return this.pushLink(event.seq, hash, chain, () => eventHash(event) === hash);
  }

  /**
   * Checks one link of the chain (position, chain value, checkpoints) from its stored hashes.
   * `contentMatches` says whether the event's content matches its hash (a worker thread may
   * have computed it); left out, the content is not checked.
   */
  pushLink(seq: number, hash: string, chain: string, contentMatches?: () => boolean): boolean {
    if (this.failure) return false;
    if (seq !== this.expectedSeq) {
      this.fail(
        Math.min(seq, this.expectedSeq),
        seq > this.expectedSeq
          ? linkFailure.missing(this.expectedSeq)
          : linkFailure.outOfOrder(seq),
      );
      return false;
    }
    this.checked += 1;
    if (contentMatches && !contentMatches()) {
      this.fail(seq, alteredReason(seq));
      return false;
    }
    if (chainHash(this.previousChain, hash) !== chain) {
      this.fail(seq, linkFailure.unchained(seq));
      return false;
    }
    while (this.pending[0] && this.pending[0].seq <= seq) {
      const checkpoint = this.pending.shift() as Checkpoint;
      if (checkpoint.seq === seq && checkpoint.chain !== chain) {
        // The chain is internally consistent but not the one that was signed: events after the
        // last good checkpoint were rewritten.
        const from = (this.lastGood?.seq ?? 0) + 1;
        this.fail(from, `events ${from}–${seq} differ from the signed checkpoint at ${seq}`);
        return false;
      }
      if (checkpoint.seq === seq) this.lastGood = checkpoint;
    }
    this.previousChain = chain;
    this.expectedSeq += 1;
    return true;
  }

  /**
   * Takes a run of events checked elsewhere (a worker thread walking a sequence range), right
   * after its first event was pushed here: the outcome is the one pushing each event would give,
   * first failure, checkpoints and count included.
   */
  pushRun(run: VerifiedRun): boolean {
    if (this.failure) return false;
    const pending = this.pending;
    while (pending[0] && pending[0].seq <= run.lastSeq) {
      const checkpoint = pending.shift() as Checkpoint;
      const chain = run.checkpointChains.get(checkpoint.seq);
      if (chain === undefined) continue;
      if (chain !== checkpoint.chain) {
        this.checked += checkpoint.seq - this.expectedSeq + 1;
        const from = (this.lastGood?.seq ?? 0) + 1;
        this.fail(
          from,
          `events ${from}–${checkpoint.seq} differ from the signed checkpoint at ${checkpoint.seq}`,
        );
        return false;
      }
      this.lastGood = checkpoint;
    }
    if (run.lastSeq >= this.expectedSeq) {
      this.checked += run.lastSeq - this.expectedSeq + 1;
      this.expectedSeq = run.lastSeq + 1;
      this.previousChain = run.lastChain;
    }
    if (run.failure) {
      if (run.failure.counted) this.checked += 1;
      this.fail(run.failure.seq, run.failure.reason);
      return false;
    }
    return true;
  }

  /** `claimedHead`: the last seq the system recorded as written (audit head row). */
  finish(claimedHead: number): VerifyResult {
    const lastSeq = this.expectedSeq - 1;
    if (!this.failure) {
      const signedEnd = this.pending.at(-1)?.seq;
      if (signedEnd !== undefined && signedEnd > lastSeq) {
        // A signature covers events that are not there: the tail was cut off, or rewritten and
        // renumbered. Only what the last matching checkpoint covers can still be trusted.
        const trusted = this.lastGood?.seq ?? 0;
        this.fail(
          trusted + 1,
          `the log ends at ${lastSeq} but a signed checkpoint covers ${signedEnd}: events after ${trusted} were cut off or rewritten`,
        );
      } else if (
        claimedHead - this.lastSigned > this.maxGap &&
        lastSeq - this.lastSigned > this.maxGap
      ) {
        this.fail(
          this.lastSigned + 1,
          `no signed checkpoint after ${this.lastSigned} for ${lastSeq - this.lastSigned} events: checkpoints were removed`,
        );
      } else if (claimedHead > lastSeq) {
        this.fail(
          lastSeq + 1,
          `events ${lastSeq + 1}–${claimedHead} are missing (the log was cut off)`,
        );
      } else if (claimedHead < lastSeq) {
        this.fail(claimedHead + 1, `events after ${claimedHead} were added behind the log's back`);
      }
    }
    return {
      ok: this.failure === null,
      checked: this.checked,
      firstBadSequence: this.failure?.seq ?? null,
      reason: this.failure?.reason ?? null,
      lastGoodCheckpoint: this.lastGood?.seq ?? null,
    };
  }
}

/**
 * The first sequence number whose position, hash or chain is wrong in an unsigned run of events
 * (no checkpoints), or null when all are intact.
 */
export function findFirstBrokenLink(events: Iterable<ChainedEvent>): number | null {
  const verifier = new ChainVerifier([], () => true);
  let last = 0;
  for (const e of events) {
    if (!verifier.push(e)) break;
    last = e.event.seq;
  }
  return verifier.finish(last).firstBadSequence;
}
