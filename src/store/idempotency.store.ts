// Idempotency keys: claim before the work, store the response in the work's own transaction.
import type { IdempotencyClaim } from '../services/context.js';
import type { Tx } from './tables.js';

export type ClaimResult =
  | { kind: 'claimed' }
  | { kind: 'replay'; statusCode: number; body: unknown }
  | { kind: 'mismatch' }
  | { kind: 'in_progress' };

/**
 * Claims `key` for a request with `requestHash`. A running claim whose lease ran out (its
 * process died) may be taken over; a finished one replays its stored response.
 */
export async function claimIdempotencyKey(
  tx: Tx,
  claim: {
    scope: string;
    key: string;
    requestHash: string;
    now: string;
    leaseUntil: string;
    holder: number;
  },
  holderAlive: (holder: number) => Promise<boolean>,
): Promise<ClaimResult> {
  const existing = await tx
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('scope', '=', claim.scope)
    .where('key', '=', claim.key)
    .executeTakeFirst();
  if (!existing) {
    await tx
      .insertInto('idempotency_keys')
      .values({
        scope: claim.scope,
        key: claim.key,
        request_hash: claim.requestHash,
        state: 'running',
        status_code: null,
        response_body: null,
        locked_until: claim.leaseUntil,
        created_at: claim.now,
        holder: claim.holder,
      })
      .execute();
    return { kind: 'claimed' };
  }
  if (
    existing.state === 'running' &&
    (existing.locked_until <= claim.now ||
      (existing.holder !== null && !(await holderAlive(existing.holder))))
  ) {
    // The first attempt's process died before finishing (its work would have marked the key
    // done in the same transaction), so nothing was created: this request takes the key over.
    await tx
      .updateTable('idempotency_keys')
      .set({
        locked_until: claim.leaseUntil,
        request_hash: claim.requestHash,
        holder: claim.holder,
      })
      .where('scope', '=', claim.scope)
      .where('key', '=', claim.key)
      .execute();
    return { kind: 'claimed' };
  }
  if (existing.request_hash !== claim.requestHash) return { kind: 'mismatch' };
  if (existing.state === 'done') {
    return {
      kind: 'replay',
      statusCode: existing.status_code ?? 200,
      body:
        existing.response_body === null ? null : (JSON.parse(existing.response_body) as unknown),
    };
  }
  return { kind: 'in_progress' };
}

export async function completeIdempotencyKey(
  tx: Tx,
  claim: IdempotencyClaim,
  response: unknown,
): Promise<void> {
  await tx
    .updateTable('idempotency_keys')
    .set({
      state: 'done',
      status_code: claim.statusCode,
      response_body: JSON.stringify(response ?? null),
    })
    .where('scope', '=', claim.scope)
    .where('key', '=', claim.key)
    .execute();
}

/** A failed request frees its key so that a corrected retry can run. */
export async function releaseIdempotencyKey(tx: Tx, claim: IdempotencyClaim): Promise<void> {
  await tx
    .deleteFrom('idempotency_keys')
    .where('scope', '=', claim.scope)
    .where('key', '=', claim.key)
    .where('state', '=', 'running')
    .execute();
}
