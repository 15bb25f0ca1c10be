// Verification of the whole chain: every retained event's hash and link, and every checkpoint.
import { GENESIS_CHAIN } from '../../domain/audit.js';
import { ChainVerifier, type VerifyResult } from '../../domain/audit-verify.js';
import { verifyRangesInWorkers } from '../../store/audit-verify-ranges.js';
import {
  auditHead,
  firstAuditSeq,
  lastAuditSeq,
  listCheckpoints,
  scanAuditChain,
} from '../../store/audit.store.js';
import type { Tx } from '../../store/tables.js';
import { auditedRead, sealsAudit } from '../audit.service.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { chainSource, type AuditTrailDeps } from './model.js';
import { auditUnsealedTail, awaitAuditSealed } from '../../audit-sealing/index.js';

/** Logs at least this long are verified on several threads. */
const PARALLEL_VERIFY_FROM = 50_000;

/**
 * Events are scanned up to the head read at the start, so requests committing meanwhile do not
 * look like tampering. Rows beyond the head are checked afterwards: the highest stored seq is
 * read before the head row, and a legitimate append moves both in one transaction.
 */
async function withRowsBeyondHeadCheck(
  deps: ServiceDeps,
  result: VerifyResult,
): Promise<VerifyResult> {
  if (!result.ok) return result;
  const stored = await lastAuditSeq(deps.db.read);
  const head = await auditHead(deps.db.read);
  if (stored <= head.seq) return result;
  return {
    ...result,
    ok: false,
    firstBadSequence: head.seq + 1,
    reason: `events after ${head.seq} were added behind the log's back`,
  };
}

/**
 * Recomputes every retained event's hash and chain, from genesis or from the signed checkpoint
 * just before the first retained event (archived segments), and checks every checkpoint.
 */
export async function verifyChain(
  { deps, signer, settings }: AuditTrailDeps,
  options: { parallelFrom?: number } = {},
): Promise<VerifyResult> {
  const { db } = deps;
  const reader: Tx = db.read;
  // What was committed before verification started is sealed first, then checked.
  await awaitAuditSealed(deps);
  const checkpoints = await listCheckpoints(reader);
  const first = await firstAuditSeq(reader);
  const head = await auditHead(reader);
  let start = { seq: 0, chain: GENESIS_CHAIN };
  if (first !== null && first > 1) {
    const anchor = checkpoints.find((c) => c.seq === first - 1);
    if (!anchor || !signer.verify(anchor)) {
      return {
        ok: false,
        checked: 0,
        firstBadSequence: 1,
        reason: `events 1–${first - 1} are missing and no signed checkpoint covers their end`,
        lastGoodCheckpoint: null,
      };
    }
    start = { seq: anchor.seq, chain: anchor.chain };
  }
  const verifier = new ChainVerifier(
    checkpoints,
    (c) => signer.verify(c),
    start,
    2 * settings.checkpointEveryEvents,
  );
  const source = chainSource({ deps, signer, settings });
  if (source !== null && head.seq - start.seq >= (options.parallelFrom ?? PARALLEL_VERIFY_FROM)) {
    // Large logs: worker threads walk contiguous ranges (contents and links) on connections
    // of their own; this thread joins the ranges and checks the checkpoints.
    await verifyRangesInWorkers(
      verifier,
      source,
      start.seq,
      head.seq,
      checkpoints.map((c) => c.seq),
    );
    return withUnsealedTail(deps, await withRowsBeyondHeadCheck(deps, verifier.finish(head.seq)));
  }
  scan: for await (const batch of scanAuditChain(db, start.seq, head.seq)) {
    for (const event of batch) if (!verifier.push(event)) break scan;
  }
  return withUnsealedTail(deps, await withRowsBeyondHeadCheck(deps, verifier.finish(head.seq)));
}

async function withUnsealedTail(deps: ServiceDeps, result: VerifyResult): Promise<VerifyResult> {
  if (!sealsAudit(deps)) return result;
  return { ...result, unsealed: await auditUnsealedTail(deps) };
}

/** Verification asked for by a person (API): audited, for those allowed to read the trail. */
export async function verify(trail: AuditTrailDeps, ctx: RequestContext): Promise<VerifyResult> {
  return auditedRead(
    trail.deps,
    ctx,
    { action: 'E', type: 'audit.verify', permission: 'audit.read', hideForbidden: true },
    async (record) => {
      const result = await verifyChain(trail);
      record.detail = {
        ok: result.ok,
        checked: result.checked,
        firstBadSequence: result.firstBadSequence,
      };
      return result;
    },
  );
}
