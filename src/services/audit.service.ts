// Runs a use case as one audited unit of work: the audit event is written in the same
// transaction on success, and in its own transaction on failure, so every attempt leaves a trace.
import { type AuditAction, type AuditEntity, type AuditOutcome } from '../domain/audit.js';
import { isAppError } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import type { Permission } from '../domain/roles.js';
import { appendAuditEvent } from '../store/audit.store.js';
import { completeIdempotencyKey } from '../store/idempotency.store.js';
import type { Tx } from '../store/tables.js';
import { requirePermission, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';

export interface AuditSpec {
  action: AuditAction;
  type: string;
  /** Role permission checked before any work; a refusal is audited too. */
  permission?: Permission;
  patientId?: string | null;
  entity?: AuditEntity | null;
  purpose?: string | null;
}

/** Filled in by the use case as it learns which patient and record it touched. */
export interface AuditRecord {
  patientId: string | null;
  entity: AuditEntity | null;
  detail: Record<string, unknown> | null;
  /** For use cases that decide their own outcome (a refused login commits its counters). */
  outcome?: AuditOutcome;
  /** Overrides the actor user id (login, where the user is known only inside the work). */
  actorUserId?: string | null;
  actorOrganizationId?: string | null;
  actorRole?: string | null;
}

function outcomeOf(err: unknown): AuditOutcome {
  if (!isAppError(err)) return 'error';
  switch (err.code) {
    case 'not_found':
    case 'forbidden':
    case 'unauthenticated':
      return 'denied';
    case 'unavailable':
      return 'error';
    case 'conflict':
    case 'invalid':
    case 'mfa_required':
    case 'precondition_failed':
    case 'precondition_required':
    case 'idempotency_mismatch':
    case 'payload_too_large':
    case 'unsupported_media_type':
    case 'too_many_requests':
      return 'failure';
  }
}

export async function writeAuditEvent(
  tx: Tx,
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  record: AuditRecord,
  outcome: AuditOutcome,
): Promise<void> {
  const now = deps.clock.now();
  await appendAuditEvent(tx, {
    id: uuidv7(now.getTime()),
    occurredAt: now.toISOString(),
    action: spec.action,
    type: spec.type,
    outcome,
    actor: {
      userId: record.actorUserId !== undefined ? record.actorUserId : (ctx.actor?.userId ?? null),
      role: record.actorRole !== undefined ? record.actorRole : (ctx.actor?.role ?? null),
      organizationId:
        record.actorOrganizationId !== undefined
          ? record.actorOrganizationId
          : (ctx.actor?.organizationId ?? null),
      ip: ctx.ip,
      userAgent: ctx.userAgent,
    },
    patientId: record.patientId,
    entity: record.entity,
    purpose: spec.purpose ?? null,
    requestId: ctx.requestId,
    detail: record.detail,
  });
}

/**
 * The shape of every use case: permission check, the work and its audit event in one durable
 * unit; on failure, an audit event with the outcome in a separate unit, then the error rethrown.
 * When the request carries a claimed Idempotency-Key, its response is stored in the same unit.
 */
export async function audited<T>(
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  work: (tx: Tx, record: AuditRecord) => Promise<T>,
): Promise<T> {
  const record: AuditRecord = {
    patientId: spec.patientId ?? null,
    entity: spec.entity ?? null,
    detail: null,
  };
  try {
    if (spec.permission) requirePermission(ctx, spec.permission);
    return await deps.db.write(async (tx) => {
      const result = await work(tx, record);
      await writeAuditEvent(tx, deps, ctx, spec, record, record.outcome ?? 'success');
      if (ctx.idempotency) await completeIdempotencyKey(tx, ctx.idempotency, result);
      return result;
    });
  } catch (err) {
    const code = isAppError(err) ? err.code : 'internal';
    record.detail = { ...(record.detail ?? {}), error: code };
    try {
      await deps.db.write((tx) => writeAuditEvent(tx, deps, ctx, spec, record, outcomeOf(err)));
    } catch (auditErr) {
      deps.log.error(
        { err: auditErr, requestId: ctx.requestId },
        'could not record the audit event of a failed request',
      );
    }
    throw err;
  }
}
