// Signed checkpoints of the chain head, written by the checkpoint job.
import { GENESIS_CHAIN } from '../../domain/audit.js';
import { ChainVerifier } from '../../domain/audit-verify.js';
import {
  auditEventFromRow,
  auditHead,
  insertCheckpoint,
  latestCheckpoint,
  streamAuditEvents,
} from '../../store/audit.store.js';
import { enqueue } from '../../store/outbox.store.js';
import type { Tx } from '../../store/tables.js';
import type { AuditTrailDeps } from './model.js';

/**
 * Signs the chain head when enough events or time have passed since the last checkpoint, but
 * only after recomputing every event since that checkpoint: a signature vouches for the events
 * it covers, so rows rewritten in between are never signed over.
 */
export async function checkpointIfDue(
  { deps, signer, settings }: AuditTrailDeps,
  force = false,
): Promise<number | null> {
  const { db, clock, log } = deps;
  const reader: Tx = db.read;
  const head = await auditHead(reader);
  const last = await latestCheckpoint(reader);
  if (head.seq === 0 || (last && last.seq >= head.seq)) return null;
  const now = clock.now();
  const due =
    force ||
    !last ||
    head.seq - last.seq >= settings.checkpointEveryEvents ||
    now.getTime() - Date.parse(last.createdAt) >= settings.checkpointEveryMs;
  if (!due) return null;
  if (head.seq - (last?.seq ?? 0) > 2 * settings.checkpointEveryEvents) {
    // Checkpoints are signed at least every N events: a longer unsigned stretch means some
    // were deleted. Signing now would vouch for whatever was rewritten meanwhile.
    log.fatal(
      { lastCheckpoint: last?.seq ?? 0, head: head.seq },
      'AUDIT TRAIL BROKEN: signed checkpoints are missing; not signing further',
    );
    return null;
  }
  if (last && !signer.verify(last)) {
    log.fatal(
      { seq: last.seq },
      'AUDIT TRAIL BROKEN: the latest checkpoint is not signed by this key; not signing further',
    );
    return null;
  }
  const verifier = new ChainVerifier(
    [],
    () => true,
    last ? { seq: last.seq, chain: last.chain } : { seq: 0, chain: GENESIS_CHAIN },
  );
  let chain: string | null = null;
  for await (const row of streamAuditEvents(reader, {
    afterSeq: last?.seq ?? 0,
    pageSize: 5000,
  })) {
    if (row.seq > head.seq) break;
    if (!verifier.push(auditEventFromRow(row))) break;
    chain = row.chain_hash;
  }
  const result = verifier.finish(head.seq);
  if (!result.ok || chain === null || chain !== head.chain) {
    log.fatal(
      { firstBadSequence: result.firstBadSequence, reason: result.reason },
      'AUDIT TRAIL BROKEN: not signing a checkpoint over events that do not verify',
    );
    return null;
  }
  const checkpoint = signer.sign({
    seq: head.seq,
    chain: head.chain,
    createdAt: now.toISOString(),
  });
  const anchored = await db.write(async (tx) => {
    // The anchor is queued in the checkpoint's own unit of work: no checkpoint without its
    // anchor, whatever crashes or replica outages come after (src/replication/anchors).
    const inserted = await insertCheckpoint(tx, checkpoint);
    if (!inserted || settings.anchorCheckpoints !== true) return false;
    await enqueue(tx, now, { topic: 'audit.anchor', payload: checkpoint });
    return true;
  });
  if (anchored) deps.onOutbox?.();
  return head.seq;
}
