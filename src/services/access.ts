// The first step of every patient use case: how the caller reaches the patient (organization,
// share, break-glass), whether that allows the operation, and what the audit event records.
import {
  allows,
  auditRoleOf,
  canSee,
  parseSharedWith,
  type PatientAccess,
  type PatientCapability,
  type ShareAccess,
  type ShareRole,
  type Visibility,
} from '../domain/access.js';
import { AppError, notFound } from '../domain/errors.js';
import { findLiveBreakGlass, findLiveShare, findPatientById } from '../store/access.store.js';
import type { PatientRow, Tx } from '../store/tables.js';
import type { AuditRecord } from './audit.service.js';
import { requireActor, type Actor, type RequestContext } from './context.js';

export interface PatientGrant {
  actor: Actor;
  patient: PatientRow;
  access: PatientAccess;
}

/** How the actor reaches the patient, or undefined when they have no relation to it. */
export async function accessOf(
  tx: Tx,
  actor: Actor,
  patient: PatientRow,
  now: Date,
): Promise<PatientAccess | undefined> {
  if (actor.kind !== 'user') return undefined;
  if (actor.organizationId === patient.organization_id && actor.role !== null)
    return { via: 'organization', role: actor.role };
  const at = now.toISOString();
  const share = await findLiveShare(tx, patient.id, actor.userId, at);
  if (share)
    return {
      via: 'share',
      shareId: share.id,
      shareRole: share.role as ShareRole,
      access: share.access as ShareAccess,
      expiresAt: share.expires_at,
    };
  const grant = await findLiveBreakGlass(tx, patient.id, actor.userId, at);
  if (grant) return { via: 'break_glass', grantId: grant.id, expiresAt: grant.expires_at };
  return undefined;
}

/**
 * The patient, if the caller may use `capability` on it. No relation at all is 404 (as if it
 * did not exist); a relation that does not allow this operation is 403. The audit record learns
 * the patient, the role the caller acted in, and a break-glass grant when one was used.
 */
export async function accessPatient(
  tx: Tx,
  ctx: RequestContext,
  patientId: string,
  capability: PatientCapability,
  record: AuditRecord,
  now: Date,
): Promise<PatientGrant> {
  const actor = requireActor(ctx);
  const patient = await findPatientById(tx, patientId);
  const access = patient ? await accessOf(tx, actor, patient, now) : undefined;
  if (!patient || !access) throw notFound('Patient');
  record.patientId = patient.id;
  record.actorRole = auditRoleOf(access);
  if (access.via === 'break_glass') {
    record.purpose = 'BTG';
    record.breakGlassId = access.grantId;
  }
  if (!allows(access, capability)) {
    throw new AppError('forbidden', 'Your access to this patient does not allow this.');
  }
  return { actor, patient, access };
}

/** Whether the grant lets its holder see this note or document. */
export function sees(
  grant: PatientGrant,
  item: {
    visibility: string;
    shared_with: string;
    author: string;
    release_at?: string | null;
  },
  now: Date,
): boolean {
  return canSee(
    grant.access,
    grant.actor.userId,
    {
      visibility: item.visibility as Visibility,
      sharedWith: parseSharedWith(item.shared_with),
      authorId: item.author,
      ...(item.release_at !== undefined ? { releaseAt: item.release_at } : {}),
    },
    now,
  );
}
