// Anchor objects on the replica: their names and their sealed contents. An anchor is a signed
// checkpoint (sequence, chain value, time, key id, signature: no patient data); a restore point
// says that the database was restored to an earlier state on purpose.
import type { Keyring } from '../../blobs/master-key.js';
import type { Checkpoint } from '../../domain/audit-verify.js';
import { openObject, sealObject, SealedObjectError } from '../sealed.js';

/** Everything anchors write lives under this prefix (pgBackRest uses archive/ and backup/). */
export const ANCHOR_PREFIX = 'caretrail-anchors/';
export const CHECKPOINT_ANCHORS = `${ANCHOR_PREFIX}checkpoints/`;
export const RESTORE_POINTS = `${ANCHOR_PREFIX}restores/`;

const SEQ_DIGITS = 16;
const pad = (seq: number) => String(seq).padStart(SEQ_DIGITS, '0');

/**
 * `caretrail-anchors/checkpoints/<seq, 16 digits>-<first 16 hex digits of the chain>`: names sort
 * by sequence, and after a restore the checkpoints of the new history, signed at sequence numbers
 * the abandoned one already anchored, sit beside its anchors instead of replacing them.
 */
export function anchorName(c: Pick<Checkpoint, 'seq' | 'chain'>): string {
  return `${CHECKPOINT_ANCHORS}${pad(c.seq)}-${c.chain.slice(0, 16)}`;
}

const ANCHOR_NAME = /^caretrail-anchors\/checkpoints\/(\d{16})-([0-9a-f]{16})$/;

export function parseAnchorName(name: string): { seq: number; chainPrefix: string } | null {
  const match = ANCHOR_NAME.exec(name);
  if (!match?.[1] || !match[2]) return null;
  return { seq: Number(match[1]), chainPrefix: match[2] };
}

/** What a deliberate restore left on the replica (see restore-point.ts). */
export interface RestorePoint {
  /**
   * The audit log's head when the restore was recorded (sequence and chain value): a primary
   * that still holds it descends from the restored database.
   */
  seq: number;
  chain: string;
  /** The moment the database was restored to: anchors signed up to it must still match. */
  restoredTo: string;
  /** When the restore was recorded: anchors signed between the two are the abandoned history's. */
  recordedAt: string;
}

/** `caretrail-anchors/restores/<recorded at, compact ISO>-<seq, 16 digits>` */
export function restorePointName(r: Pick<RestorePoint, 'seq' | 'recordedAt'>): string {
  return `${RESTORE_POINTS}${r.recordedAt.replace(/[-:.]/g, '')}-${pad(r.seq)}`;
}

const HEX64 = /^[0-9a-f]{64}$/;
const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));
const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Checks the shape of a checkpoint (an outbox payload or an anchor's content). */
export function asCheckpoint(value: unknown): Checkpoint | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (
    !isSeq(v.seq) ||
    typeof v.chain !== 'string' ||
    !HEX64.test(v.chain) ||
    !isTime(v.createdAt) ||
    typeof v.keyId !== 'string' ||
    typeof v.signature !== 'string'
  )
    return null;
  return {
    seq: v.seq,
    chain: v.chain,
    createdAt: v.createdAt,
    keyId: v.keyId,
    signature: v.signature,
  };
}

const ANCHOR_TYPE = 'caretrail.audit.anchor';
const RESTORE_TYPE = 'caretrail.audit.restore-point';

export function sealAnchor(keyring: Keyring, c: Checkpoint): Buffer {
  const body = { type: ANCHOR_TYPE, version: 1, ...c };
  return sealObject(keyring, anchorName(c), Buffer.from(JSON.stringify(body), 'utf8'));
}

function openJson(keyring: Keyring, name: string, sealed: Buffer, type: string) {
  const plain = openObject(keyring, name, sealed);
  let body: unknown;
  try {
    body = JSON.parse(plain.toString('utf8'));
  } catch {
    throw new SealedObjectError(`replica object ${name}: its content is not JSON`);
  }
  if (typeof body !== 'object' || body === null || (body as { type?: unknown }).type !== type)
    throw new SealedObjectError(`replica object ${name}: not a ${type}`);
  return body as Record<string, unknown>;
}

/** Opens the anchor `name`; throws SealedObjectError naming it when it is not what was sealed. */
export function openAnchor(keyring: Keyring, name: string, sealed: Buffer): Checkpoint {
  const checkpoint = asCheckpoint(openJson(keyring, name, sealed, ANCHOR_TYPE));
  const parsed = parseAnchorName(name);
  if (!checkpoint || !parsed)
    throw new SealedObjectError(`replica object ${name}: not a well-formed anchor`);
  if (checkpoint.seq !== parsed.seq || !checkpoint.chain.startsWith(parsed.chainPrefix))
    throw new SealedObjectError(`replica object ${name}: its content does not match its name`);
  return checkpoint;
}

export function sealRestorePoint(keyring: Keyring, r: RestorePoint): Buffer {
  const body = { type: RESTORE_TYPE, version: 1, ...r };
  return sealObject(keyring, restorePointName(r), Buffer.from(JSON.stringify(body), 'utf8'));
}

export function openRestorePoint(keyring: Keyring, name: string, sealed: Buffer): RestorePoint {
  const v = openJson(keyring, name, sealed, RESTORE_TYPE);
  if (
    !isSeq(v.seq) ||
    typeof v.chain !== 'string' ||
    !HEX64.test(v.chain) ||
    !isTime(v.restoredTo) ||
    !isTime(v.recordedAt)
  )
    throw new SealedObjectError(`replica object ${name}: not a well-formed restore point`);
  const point = { seq: v.seq, chain: v.chain, restoredTo: v.restoredTo, recordedAt: v.recordedAt };
  if (restorePointName(point) !== name)
    throw new SealedObjectError(`replica object ${name}: its content does not match its name`);
  return point;
}
