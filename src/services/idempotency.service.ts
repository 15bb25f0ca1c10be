// Idempotency-Key handling for creating requests: replay, mismatch (422) and in-progress (409).
import { createHash } from 'node:crypto';
import { canonicalJson } from '../domain/audit.js';
import { AppError } from '../domain/errors.js';
import { isUniqueViolation } from '../store/dialect.js';
import {
  claimIdempotencyKey,
  releaseIdempotencyKey,
  type ClaimResult,
} from '../store/idempotency.store.js';
import type { AuditEntity } from '../domain/audit.js';
import type { PatientCapability } from '../domain/access.js';
import type { Permission } from '../domain/roles.js';
import { accessPatient } from './access.js';
import { audited } from './audit.service.js';
import { requireIntegration, type IdempotencyClaim, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';

/**
 * How long a running request holds its key before another may take over; a claim whose process
 * died (Database.holderAlive) is taken over at once.
 */
const LEASE_MS = 60_000;

export type IdempotencyDecision =
  | { kind: 'proceed'; claim: IdempotencyClaim }
  | { kind: 'replay'; statusCode: number; body: unknown };

export function createIdempotencyService(deps: ServiceDeps) {
  const { db, clock } = deps;

  async function begin(input: {
    scope: string;
    key: string;
    method: string;
    route: string;
    params: unknown;
    body: unknown;
    statusCode: number;
  }): Promise<IdempotencyDecision> {
    if (!/^[\x21-\x7e]{1,255}$/.test(input.key)) {
      throw new AppError('invalid', 'Idempotency-Key must be 1 to 255 visible ASCII characters.');
    }
    const requestHash = createHash('sha256')
      .update(
        canonicalJson({
          method: input.method,
          route: input.route,
          params: input.params ?? null,
          body: input.body ?? null,
        }),
      )
      .digest('hex');
    const now = clock.now();
    const holder = await db.claimHolder();
    let result: ClaimResult;
    try {
      result = await db.write((tx) =>
        claimIdempotencyKey(
          tx,
          {
            scope: input.scope,
            key: input.key,
            requestHash,
            now: now.toISOString(),
            leaseUntil: new Date(now.getTime() + LEASE_MS).toISOString(),
            holder,
          },
          (other) => db.holderAlive(tx, other),
        ),
      );
    } catch (err) {
      // Two first attempts raced on another instance: the other one holds the key now.
      if (isUniqueViolation(err)) result = { kind: 'in_progress' };
      else throw err;
    }
    switch (result.kind) {
      case 'claimed':
        return {
          kind: 'proceed',
          claim: { scope: input.scope, key: input.key, statusCode: input.statusCode },
        };
      case 'replay':
        return { kind: 'replay', statusCode: result.statusCode, body: result.body };
      case 'mismatch':
        throw new AppError(
          'idempotency_mismatch',
          'This Idempotency-Key was already used with a different request body.',
        );
      case 'in_progress':
        throw new AppError(
          'conflict',
          'A request with this Idempotency-Key is still running; retry in a moment.',
          { retryAfterSeconds: 1 },
        );
    }
  }

  /** Frees a key whose request failed, so that a corrected retry can use it. */
  async function release(claim: IdempotencyClaim): Promise<void> {
    await db.write((tx) => releaseIdempotencyKey(tx, claim));
  }

  /** A replay discloses the stored record again: audited like a read. */
  async function recordReplay(
    ctx: RequestContext,
    replay: {
      type: string;
      requires:
        { capability: PatientCapability } | { permission: Permission } | { integration: true };
      patientId: string | null;
      entity: AuditEntity | null;
    },
  ): Promise<void> {
    const { requires, patientId } = replay;
    await audited(
      deps,
      ctx,
      {
        action: 'R',
        type: `${replay.type}.replay`,
        ...('permission' in requires ? { permission: requires.permission } : {}),
        patientId,
        entity: replay.entity,
      },
      async (tx, record) => {
        if ('integration' in requires) requireIntegration(ctx);
        if ('capability' in requires) {
          if (patientId === null) throw new AppError('not_found', 'Not found.');
          await accessPatient(tx, ctx, patientId, requires.capability, record, deps.clock.now());
        }
      },
    );
  }

  return { begin, release, recordReplay };
}
