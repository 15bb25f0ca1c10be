// `caretrail audit verify --replica`: every anchor on the replica against the primary's audit log.
// The normal verification proves the log consistent with itself and its checkpoints; an anchor
// proves what the log held when it was shipped. The chain value at a sequence commits to every
// event up to it, so the primary matches an anchor when it still holds that sequence with the
// same chain value: missing means the log was cut off or rolled back, different means rewritten.
import type { Keyring } from '../../blobs/master-key.js';
import { GENESIS_CHAIN } from '../../domain/audit.js';
import type { Checkpoint } from '../../domain/audit-verify.js';
import {
  auditHead,
  chainHashesAt,
  firstAuditSeq,
  listCheckpoints,
} from '../../store/audit.store.js';
import type { Tx } from '../../store/tables.js';
import { ReplicaUnavailableError, type ReplicaDestination } from '../destination.js';
import {
  ANCHOR_PREFIX,
  CHECKPOINT_ANCHORS,
  RESTORE_POINTS,
  openAnchor,
  openRestorePoint,
  type RestorePoint,
} from './format.js';

export interface AnchorRef {
  name: string;
  seq: number;
  createdAt: string;
}

export type AnchorProblem =
  /** The object does not open, is not an anchor, or its signature does not verify. */
  | { kind: 'unreadable'; name: string; reason: string }
  /** The primary no longer holds the anchored sequence (`end`: where its log ends now). */
  | (AnchorRef & { kind: 'missing'; end: number })
  /** The primary holds the sequence with another chain value. */
  | (AnchorRef & { kind: 'rewritten' });

export interface AnchorCheck {
  replica: string;
  /** Anchor objects examined (unreadable ones included). */
  checked: number;
  /** The anchor with the highest sequence. */
  newest: AnchorRef | null;
  matched: number;
  /** Anchors of events since archived (before the first retained event): not comparable. */
  archived: number;
  /** Anchors of the history a recorded restore abandoned: reported, not compared. */
  afterRestore: (AnchorRef & { restore: RestorePoint })[];
  restorePoints: number;
  problems: AnchorProblem[];
}

/** Reads objects a few at a time (an S3 replica answers each in a round trip). */
async function readAll<T>(
  names: readonly string[],
  read: (name: string) => Promise<T>,
  parallel = 8,
): Promise<T[]> {
  const out: T[] = new Array<T>(names.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < names.length; i = next++) out[i] = await read(names[i] as string);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, names.length) }, worker));
  return out;
}

/**
 * Reads and opens each object, a few at a time. One that does not open is a problem named by
 * the object; an unreachable replica is an error (nothing can be said about the anchors).
 */
async function openEach<T>(
  destination: ReplicaDestination,
  names: readonly string[],
  open: (name: string, sealed: Buffer) => T,
  problems: AnchorProblem[],
): Promise<T[]> {
  const results = await readAll(names, async (name) => {
    try {
      const sealed = await destination.get(name);
      if (sealed === null) throw new Error('it disappeared while being read');
      return { value: open(name, sealed) };
    } catch (err) {
      if (err instanceof ReplicaUnavailableError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      const prefix = `replica object ${name}: `;
      problems.push({
        kind: 'unreadable',
        name,
        reason: message.startsWith(prefix) ? message.slice(prefix.length) : message,
      });
      return null;
    }
  });
  return results.flatMap((r) => (r ? [r.value] : []));
}

/**
 * Compares every anchor on `destination` with the primary `db`. `verifySignature` is the audit
 * signing key's check: an anchor not signed by it is reported as untrustworthy.
 */
export async function checkAnchors(options: {
  db: Tx;
  destination: ReplicaDestination;
  keyring: Keyring;
  verifySignature: (c: Checkpoint) => boolean;
}): Promise<AnchorCheck> {
  const { db, destination, keyring } = options;
  const names = await destination.list(ANCHOR_PREFIX);
  const problems: AnchorProblem[] = [];
  const unexpected = names.filter(
    (n) => !n.startsWith(CHECKPOINT_ANCHORS) && !n.startsWith(RESTORE_POINTS),
  );
  for (const name of unexpected)
    problems.push({ kind: 'unreadable', name, reason: 'not an object anchors write' });

  const anchors = await openEach(
    destination,
    names.filter((n) => n.startsWith(CHECKPOINT_ANCHORS)),
    (name, sealed) => {
      const c = openAnchor(keyring, name, sealed);
      if (!options.verifySignature(c))
        throw new Error("its signature does not verify with this installation's audit key");
      return { ...c, name };
    },
    problems,
  );
  const restores = await openEach(
    destination,
    names.filter((n) => n.startsWith(RESTORE_POINTS)),
    (name, sealed) => openRestorePoint(keyring, name, sealed),
    problems,
  );

  // What the primary holds now.
  const head = await auditHead(db);
  // With no event held at all, nothing counts as archived: every anchor is then missing.
  const first = (await firstAuditSeq(db)) ?? 1;
  const chains = await chainHashesAt(db, [
    ...anchors.map((a) => a.seq),
    ...restores.map((r) => r.seq),
  ]);
  // An archived segment ends at a checkpoint kept in the database (docs/AUDIT.md, Retention).
  const archiveEnd = (await listCheckpoints(db)).find((c) => c.seq === first - 1);
  const chainAt = (seq: number): string | undefined => {
    if (seq === 0) return GENESIS_CHAIN;
    if (seq > head.seq) return undefined;
    if (seq === first - 1) return archiveEnd?.chain;
    return chains.get(seq);
  };
  // Restores this primary descends from: it still holds their head.
  const ancestry = restores.filter((r) => chainAt(r.seq) === r.chain);

  const result: AnchorCheck = {
    replica: destination.description,
    checked: names.filter((n) => n.startsWith(CHECKPOINT_ANCHORS)).length,
    newest: null,
    matched: 0,
    archived: 0,
    afterRestore: [],
    restorePoints: restores.length,
    problems,
  };
  for (const anchor of anchors) {
    const ref: AnchorRef = { name: anchor.name, seq: anchor.seq, createdAt: anchor.createdAt };
    if (
      !result.newest ||
      anchor.seq > result.newest.seq ||
      (anchor.seq === result.newest.seq && anchor.createdAt > result.newest.createdAt)
    )
      result.newest = ref;
    if (anchor.seq < first - 1 && anchor.seq <= head.seq) {
      result.archived += 1;
      continue;
    }
    const held = chainAt(anchor.seq);
    if (held === anchor.chain) {
      result.matched += 1;
      continue;
    }
    // The history a deliberate restore abandoned: signed after the moment restored to and
    // before the restore was recorded.
    const restore = ancestry.find(
      (r) => anchor.createdAt > r.restoredTo && anchor.createdAt <= r.recordedAt,
    );
    if (restore) {
      result.afterRestore.push({ ...ref, restore });
      continue;
    }
    problems.push(
      held === undefined
        ? { ...ref, kind: 'missing', end: head.seq }
        : { ...ref, kind: 'rewritten' },
    );
  }
  problems.sort((a, b) => ('seq' in a ? a.seq : -1) - ('seq' in b ? b.seq : -1));
  return result;
}

const anchorLabel = (a: AnchorRef) => `anchor ${a.seq} (checkpoint signed ${a.createdAt})`;

function problemLine(p: AnchorProblem): string {
  switch (p.kind) {
    case 'unreadable':
      return `${p.name}: cannot be trusted (the replica was tampered with or damaged): ${p.reason}`;
    case 'missing':
      return p.seq > p.end
        ? `${anchorLabel(p)}: the primary's audit log ends at ${p.end}, before it: the log was truncated or rolled back after this anchor was shipped`
        : `${anchorLabel(p)}: the primary no longer holds event ${p.seq}: events were deleted after this anchor was shipped`;
    case 'rewritten':
      return `${anchorLabel(p)}: the primary's chain at ${p.seq} differs: events up to ${p.seq} were rewritten after this anchor was shipped`;
  }
}

const MAX_LINES = 20;

/** The report of `audit verify --replica`, one finding a line; `ok` decides the exit code. */
export function describeAnchorCheck(
  check: AnchorCheck,
  replicaUrl: string,
): {
  ok: boolean;
  lines: string[];
} {
  const newest = check.newest ? `newest: ${anchorLabel(check.newest)}` : 'no anchor could be read';
  const lines: string[] = [];
  if (check.checked === 0 && check.problems.length === 0) {
    lines.push(
      `Replica anchors: none at ${check.replica}: nothing to compare (anchors are shipped with each checkpoint once CARETRAIL_REPLICA_URL is set).`,
    );
    return { ok: true, lines };
  }
  const notes = [
    check.archived > 0 ? `${check.archived} of archived events` : '',
    check.afterRestore.length > 0 ? `${check.afterRestore.length} after the restore point` : '',
  ].filter((n) => n !== '');
  const noteText = notes.length > 0 ? ` (${notes.join(', ')})` : '';
  if (check.problems.length === 0) {
    lines.push(
      `Replica anchors match: ${check.checked} checked at ${check.replica}${noteText}; ${newest}.`,
    );
  } else {
    lines.push(
      `Replica anchors BROKEN at ${check.replica}: ${check.checked} checked, ${check.problems.length} not matching the primary or not trustworthy${noteText}; ${newest}.`,
    );
    for (const p of check.problems.slice(0, MAX_LINES)) lines.push(`  ${problemLine(p)}.`);
    if (check.problems.length > MAX_LINES)
      lines.push(`  … and ${check.problems.length - MAX_LINES} more.`);
  }
  const shown = check.afterRestore.slice(-5);
  for (const a of shown) {
    lines.push(
      `  ${anchorLabel(a)}: after the restore point (the database was restored to ${a.restore.restoredTo}; recorded ${a.restore.recordedAt}): from the history the restore abandoned, not compared.`,
    );
  }
  if (check.afterRestore.length > shown.length)
    lines.push(
      `  … and ${check.afterRestore.length - shown.length} earlier ones after the restore point.`,
    );
  if (check.problems.some((p) => p.kind !== 'unreadable')) {
    lines.push(
      'If this database was restored to an earlier moment on purpose (point-in-time restore), this is expected: ' +
        `record the restore with "caretrail audit record-restore --replica ${replicaUrl}", then verify again; ` +
        'the anchors shipped after the restore point are then listed as such. Otherwise treat it as tampering: ' +
        'keep the replica and the database as they are and investigate.',
    );
  }
  return { ok: check.problems.length === 0, lines };
}
