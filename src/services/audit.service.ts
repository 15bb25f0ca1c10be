// Runs a use case as one audited unit of work: the audit event is written in the same
// transaction on success, and in its own transaction on failure, so every attempt leaves a trace.
import { type AuditAction, type AuditEntity, type AuditOutcome } from '../domain/audit.js';
import { AppError, isAppError } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import type { Permission } from '../domain/roles.js';
import { appendAuditEvent, queueAuditEvent } from '../store/audit.store.js';
import { completeIdempotencyKey } from '../store/idempotency.store.js';
import type { Tx } from '../store/tables.js';
import { requirePermission, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';

export interface AuditSpec {
  action: AuditAction;
  type: string;
  /** Role permission checked before any work; a refusal is audited too. */
  permission?: Permission;
  /** Answer a missing permission with 404, as if the resource did not exist (audit endpoints). */
  hideForbidden?: boolean;
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
  /** Overrides the spec's purpose of use ('BTG' for break-glass access). */
  purpose?: string | null;
  /** The break-glass grant this access used: marked on the event. */
  breakGlassId?: string;
}

/** Counts the events a request wrote, so the HTTP layer can add one for requests that wrote none. */
function markAudited(ctx: RequestContext): void {
  ctx.auditCount.n += 1;
}

export function outcomeOf(err: unknown): AuditOutcome {
  if (!isAppError(err)) return 'error';
  switch (err.code) {
    case 'not_found':
    case 'forbidden':
    case 'unauthenticated':
      return 'denied';
    case 'unavailable':
    case 'insufficient_storage':
      return 'error';
    case 'conflict':
    case 'consent_required':
    case 'invalid':
    case 'mfa_required':
    case 'precondition_failed':
    case 'precondition_required':
    case 'idempotency_mismatch':
    case 'payload_too_large':
    case 'request_timeout':
    case 'unsupported_media_type':
    case 'too_many_requests':
    case 'range_not_satisfiable':
    case 'retrieval_pending':
      return 'failure';
  }
}

/** Whether this database's audit events go through the sealer (PostgreSQL by default). */
export function sealsAudit(deps: Pick<ServiceDeps, 'db' | 'settings'>): boolean {
  return deps.db.engine === 'postgres' && deps.settings.auditAppend !== 'head-lock';
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
  // PostgreSQL queues the event for the sealer (no lock shared by every request); SQLite's one
  // writer appends at the head (src/audit-sealing/).
  const append = sealsAudit(deps) ? queueAuditEvent : appendAuditEvent;
  await append(tx, {
    id: uuidv7(now.getTime()),
    occurredAt: now.toISOString(),
    action: spec.action,
    type: spec.type,
    outcome,
    actor: {
      userId: record.actorUserId !== undefined ? record.actorUserId : (ctx.actor?.userId ?? null),
      role:
        record.actorRole !== undefined
          ? record.actorRole
          : ctx.actor?.kind === 'integration'
            ? 'integration'
            : (ctx.actor?.role ?? null),
      organizationId:
        record.actorOrganizationId !== undefined
          ? record.actorOrganizationId
          : (ctx.actor?.organizationId ?? null),
      ip: ctx.ip,
      userAgent: ctx.userAgent,
    },
    patientId: record.patientId,
    entity: record.entity,
    purpose: record.purpose !== undefined ? record.purpose : (spec.purpose ?? null),
    requestId: ctx.requestId,
    detail:
      record.breakGlassId === undefined
        ? record.detail
        : { ...(record.detail ?? {}), breakGlassId: record.breakGlassId },
  });
}

/**
 * The shape of every use case: permission check, then `body`, which commits the work with its
 * success event; on failure, an audit event with the outcome in a separate unit, then the error
 * rethrown. So every attempt leaves exactly one event.
 */
async function withAudit<T>(
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  body: (record: AuditRecord) => Promise<T>,
): Promise<T> {
  const record: AuditRecord = {
    patientId: spec.patientId ?? null,
    entity: spec.entity ?? null,
    detail: null,
  };
  try {
    if (spec.permission) {
      try {
        requirePermission(ctx, spec.permission);
      } catch (err) {
        throw spec.hideForbidden && isAppError(err) && err.code === 'forbidden'
          ? new AppError('not_found', 'Not found.')
          : err;
      }
    }
    const result = await body(record);
    markAudited(ctx);
    // Patient data was disclosed: one record read, or a list of them (a search).
    const listed = Array.isArray(record.detail?.patientIds) && record.detail.patientIds.length > 0;
    if (
      record.outcome === undefined &&
      ((spec.action === 'R' && record.patientId !== null) || listed)
    ) {
      deps.onPatientRead?.(ctx);
    }
    return result;
  } catch (err) {
    const code = isAppError(err) ? err.code : 'internal';
    record.detail = { ...(record.detail ?? {}), error: code };
    try {
      await deps.db.write((tx) => writeAuditEvent(tx, deps, ctx, spec, record, outcomeOf(err)));
      markAudited(ctx);
    } catch (auditErr) {
      deps.log.error(
        { err: auditErr, requestId: ctx.requestId },
        'could not record the audit event of a failed request',
      );
    }
    throw err;
  }
}

/**
 * The work and its audit event in one durable unit of work, so a read is answered only after its
 * event is committed. When the request carries a claimed Idempotency-Key, its response is stored
 * in the same unit.
 */
export async function audited<T>(
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  work: (tx: Tx, record: AuditRecord) => Promise<T>,
): Promise<T> {
  return withAudit(deps, ctx, spec, (record) =>
    deps.db.write(async (tx) => {
      const value = await work(tx, record);
      await writeAuditEvent(tx, deps, ctx, spec, record, record.outcome ?? 'success');
      if (ctx.idempotency) await completeIdempotencyKey(tx, ctx.idempotency, value);
      return value;
    }),
  );
}

/**
 * For use cases that only read (a chart, a page of notes, a search): the work runs on a read
 * snapshot outside the write queue, and only the audit event is a durable unit of work, so a read
 * waits for the append of its event and one fsync, not behind other units' work. The answer is
 * returned only after that event is committed; a failed append fails the request, as with
 * `audited`. A request with a claimed Idempotency-Key (its answer is stored) takes `audited`.
 */
export async function auditedView<T>(
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  work: (db: Tx, record: AuditRecord) => Promise<T>,
): Promise<T> {
  if (ctx.idempotency) return audited(deps, ctx, spec, work);
  return withAudit(deps, ctx, spec, async (record) => {
    const value = await deps.db.snapshot((db) => work(db, record));
    await deps.db.write((tx) =>
      writeAuditEvent(tx, deps, ctx, spec, record, record.outcome ?? 'success'),
    );
    return value;
  });
}

/**
 * For use cases with slow work outside the database (streaming a file to or from the blob
 * store): `prepare` runs first, outside any transaction, then `work` commits with the audit
 * event. When the commit fails, `undo` releases what `prepare` made (a stored blob, an open
 * stream). A failure anywhere is audited like any other.
 */
export async function auditedStaged<P, T>(
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  prepare: (record: AuditRecord) => Promise<P>,
  work: (tx: Tx, record: AuditRecord, prepared: P) => Promise<T>,
  undo: (prepared: P) => Promise<void>,
): Promise<T> {
  return withAudit(deps, ctx, spec, async (record) => {
    const prepared = await prepare(record);
    try {
      return await deps.db.write(async (tx) => {
        const value = await work(tx, record, prepared);
        await writeAuditEvent(tx, deps, ctx, spec, record, record.outcome ?? 'success');
        if (ctx.idempotency) await completeIdempotencyKey(tx, ctx.idempotency, value);
        return value;
      });
    } catch (err) {
      await undo(prepared).catch((undoErr: unknown) => {
        deps.log.error({ err: undoErr, requestId: ctx.requestId }, 'could not undo staged work');
      });
      throw err;
    }
  });
}

/**
 * For use cases that read much but disclose no patient record (audit verification, search,
 * export): the work runs on the read connection, outside the write path, and its audit event is
 * committed before the result is returned.
 */
export async function auditedRead<T>(
  deps: ServiceDeps,
  ctx: RequestContext,
  spec: AuditSpec,
  work: (record: AuditRecord) => Promise<T>,
): Promise<T> {
  return withAudit(deps, ctx, spec, async (record) => {
    const value = await work(record);
    await deps.db.write((tx) =>
      writeAuditEvent(tx, deps, ctx, spec, record, record.outcome ?? 'success'),
    );
    return value;
  });
}

function actionOf(method: string): AuditAction {
  switch (method) {
    case 'POST':
      return 'C';
    case 'PUT':
    case 'PATCH':
      return 'U';
    case 'DELETE':
      return 'D';
    default:
      return 'R';
  }
}

/**
 * The event for an API request that no use case audited: refused before it ran (invalid input,
 * missing or expired token, unknown route). Written before the answer is sent.
 */
export async function recordRefusal(
  deps: ServiceDeps,
  ctx: RequestContext,
  request: { method: string; route: string; statusCode: number },
): Promise<void> {
  const outcome: AuditOutcome =
    request.statusCode >= 500
      ? 'error'
      : [401, 403, 404].includes(request.statusCode)
        ? 'denied'
        : request.statusCode >= 400
          ? 'failure'
          : 'success';
  const record: AuditRecord = {
    patientId: null,
    entity: null,
    detail: { route: `${request.method} ${request.route}`, status: request.statusCode },
  };
  try {
    await deps.db.write((tx) =>
      writeAuditEvent(
        tx,
        deps,
        ctx,
        { action: actionOf(request.method), type: 'http.request' },
        record,
        outcome,
      ),
    );
    markAudited(ctx);
  } catch (err) {
    deps.log.error(
      { err, requestId: ctx.requestId },
      'could not record the audit event of a refused request',
    );
  }
}
