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
import { can } from '../domain/roles.js';
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
  // A grant serves only while its holder may still break the glass: someone moved to another
  // role within its time loses it then, not when it expires.
  if (actor.role === null || !can(actor.role, 'break_glass')) return undefined;
  const grant = await findLiveBreakGlass(tx, patient.id, actor.userId, at);
  if (grant) return { via: 'break_glass', grantId: grant.id, expiresAt: grant.expires_at };
  return undefined;
}

/**
 * How the caller reaches the patient; no relation at all is 404, as if it did not exist. The
 * audit record learns the patient, the role the caller acted in, and a break-glass grant when
 * one was used.
 */
async function reachPatient(
  tx: Tx,
  ctx: RequestContext,
  patientId: string,
  record: AuditRecord,
  now: Date,
  /** What the request named, for the 404: a note of an unreachable patient is "Note not found". */
  named = 'Patient',
): Promise<PatientGrant> {
  const actor = requireActor(ctx);
  const patient = await findPatientById(tx, patientId);
  const access = patient ? await accessOf(tx, actor, patient, now) : undefined;
  if (!patient || !access) throw notFound(named);
  record.patientId = patient.id;
  record.actorRole = auditRoleOf(access);
  if (access.via === 'break_glass') {
    record.purpose = 'BTG';
    record.breakGlassId = access.grantId;
  }
  return { actor, patient, access };
}

function requireCapability(grant: PatientGrant, capability: PatientCapability): void {
  if (!allows(grant.access, capability))
    throw new AppError('forbidden', 'Your access to this patient does not allow this.');
}

/**
 * The patient, if the caller may use `capability` on it: no relation at all is 404; a relation
 * that does not allow this operation is 403 (the caller knows the patient exists).
 */
export async function accessPatient(
  tx: Tx,
  ctx: RequestContext,
  patientId: string,
  capability: PatientCapability,
  record: AuditRecord,
  now: Date,
  named = 'Patient',
): Promise<PatientGrant> {
  const grant = await reachPatient(tx, ctx, patientId, record, now, named);
  requireCapability(grant, capability);
  return grant;
}

/**
 * For records named by their own id that only some of the patient's people may know of
 * (consents): without `capability` the record is 404, not 403, so its id cannot be probed.
 */
export async function accessUnlisted(
  tx: Tx,
  ctx: RequestContext,
  patientId: string,
  capability: PatientCapability,
  record: AuditRecord,
  now: Date,
  named: string,
): Promise<PatientGrant> {
  const grant = await reachPatient(tx, ctx, patientId, record, now, named);
  if (!allows(grant.access, capability)) throw notFound(named);
  return grant;
}

/** A note or document row as far as access goes. */
export interface RecordItem {
  patient_id: string;
  visibility: string;
  shared_with: string;
  author: string;
  release_at?: string | null;
  /** Documents only: when it was deleted; a deleted one is the organization's alone. */
  deleted_at?: string | null;
}

/**
 * A note or document of a patient: one the caller cannot see is 404 whatever they asked to do
 * with it (so its existence is not revealed); one they see but may not act on is 403.
 */
export async function accessItem(
  tx: Tx,
  ctx: RequestContext,
  item: RecordItem,
  capability: PatientCapability,
  record: AuditRecord,
  now: Date,
  what: string,
): Promise<PatientGrant> {
  const grant = await reachPatient(tx, ctx, item.patient_id, record, now, what);
  if (!sees(grant, item, now)) throw notFound(what);
  // Staff keep a deleted document to review and restore; for anyone else it is gone.
  if (item.deleted_at != null && grant.access.via !== 'organization') throw notFound(what);
  requireCapability(grant, capability);
  return grant;
}

/** Whether the grant lets its holder see this note or document. */
export function sees(
  grant: PatientGrant,
  item: Omit<RecordItem, 'patient_id'>,
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
