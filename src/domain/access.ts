// Who may do what with one patient, and see which notes and documents: the rules of care-team
// sharing, independent of storage. The single source of truth for patient-level access.
import { can, type Permission, type Role } from './roles.js';

export const SHARE_ROLES = ['owner', 'trainer', 'walker', 'carer', 'clinician'] as const;
export type ShareRole = (typeof SHARE_ROLES)[number];

/** Care roles outside the clinic: they see only what is shared with their role. */
export const CARE_ROLES = ['trainer', 'walker', 'carer'] as const;
export type CareRole = (typeof CARE_ROLES)[number];

export const SHARE_ACCESS = ['read', 'write'] as const;
export type ShareAccess = (typeof SHARE_ACCESS)[number];

/**
 * Who sees a note or document besides the organization's staff and its author:
 * - internal: nobody outside the organization;
 * - shared: referral clinicians and break-glass readers, plus the care roles in `sharedWith`;
 * - owner: as shared, plus the owner (notes once released).
 */
export const VISIBILITIES = ['internal', 'shared', 'owner'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** How the caller reaches the patient. */
export type PatientAccess =
  | { via: 'organization'; role: Role }
  | {
      via: 'share';
      shareId: string;
      shareRole: ShareRole;
      access: ShareAccess;
      expiresAt: string | null;
    }
  | { via: 'break_glass'; grantId: string; expiresAt: string };

/** What a caller may do with one patient's record. */
export type PatientCapability =
  | 'patient.read'
  | 'patient.write'
  | 'notes.read'
  | 'notes.write'
  | 'notes.finalize'
  | 'notes.amend'
  | 'notes.release'
  | 'documents.read'
  | 'documents.write'
  | 'documents.purge'
  | 'shares.manage'
  | 'consents.read'
  | 'consents.record'
  | 'access_report.read';

const ORGANIZATION_PERMISSION: Record<PatientCapability, Permission> = {
  'patient.read': 'patients.read',
  'patient.write': 'patients.write',
  'notes.read': 'notes.read',
  'notes.write': 'notes.write',
  'notes.finalize': 'notes.finalize',
  'notes.amend': 'notes.amend',
  'notes.release': 'notes.finalize',
  'documents.read': 'documents.read',
  'documents.write': 'documents.write',
  'documents.purge': 'documents.purge',
  'shares.manage': 'shares.manage',
  'consents.read': 'shares.manage',
  'consents.record': 'shares.manage',
  'access_report.read': 'patients.read',
};

const READ: readonly PatientCapability[] = ['patient.read', 'notes.read', 'documents.read'];
const WRITE: readonly PatientCapability[] = [
  'notes.write',
  'notes.finalize',
  'notes.amend',
  'documents.write',
];

function shareAllows(role: ShareRole, access: ShareAccess, capability: PatientCapability): boolean {
  if (READ.includes(capability)) return true;
  if (role === 'owner') {
    // The owner portal: their animal's released record, who accessed it, their consents,
    // and (with write access) photos and documents; never notes.
    if (['consents.read', 'consents.record', 'access_report.read'].includes(capability))
      return true;
    return access === 'write' && capability === 'documents.write';
  }
  return access === 'write' && WRITE.includes(capability);
}

export function allows(access: PatientAccess, capability: PatientCapability): boolean {
  switch (access.via) {
    case 'organization':
      return can(access.role, ORGANIZATION_PERMISSION[capability]);
    case 'share':
      return shareAllows(access.shareRole, access.access, capability);
    case 'break_glass':
      return READ.includes(capability);
  }
}

/** A note or document as far as visibility goes. */
export interface Visible {
  visibility: Visibility;
  sharedWith: readonly CareRole[];
  authorId: string;
  /** Notes only: when it was released to the owner (null: not released). */
  releaseAt?: string | null;
}

/** Whether the caller may see this note or document at all (on top of `notes.read` etc.). */
export function canSee(access: PatientAccess, userId: string, item: Visible, now: Date): boolean {
  if (access.via === 'organization') return true;
  if (item.authorId === userId) return true;
  if (item.visibility === 'internal') return false;
  if (access.via === 'break_glass') return true;
  switch (access.shareRole) {
    case 'clinician':
      return true;
    case 'owner':
      if (item.visibility !== 'owner') return false;
      if (item.releaseAt === undefined) return true;
      return item.releaseAt !== null && Date.parse(item.releaseAt) <= now.getTime();
    case 'trainer':
    case 'walker':
    case 'carer':
      return item.sharedWith.includes(access.shareRole);
  }
}

/**
 * Whether the caller sees an addendum of a note they see: the owner only once it is released
 * to them (an addendum to a released note is not released with it); everyone else as the note.
 */
export function canSeeAddendum(
  access: PatientAccess,
  addendum: { releaseAt: string | null },
  now: Date,
): boolean {
  if (access.via !== 'share' || access.shareRole !== 'owner') return true;
  return addendum.releaseAt !== null && Date.parse(addendum.releaseAt) <= now.getTime();
}

/** The role to record in audit events for this access (share role, or break-glass). */
export function auditRoleOf(access: PatientAccess): string {
  switch (access.via) {
    case 'organization':
      return access.role;
    case 'share':
      return access.shareRole;
    case 'break_glass':
      return 'break-glass';
  }
}

export function isShareRole(value: string): value is ShareRole {
  return (SHARE_ROLES as readonly string[]).includes(value);
}

export function parseSharedWith(json: string): CareRole[] {
  const value: unknown = JSON.parse(json);
  return Array.isArray(value)
    ? value.filter((r): r is CareRole => (CARE_ROLES as readonly string[]).includes(String(r)))
    : [];
}

/** Which notes or documents a list shows the caller: the SQL form of `canSee`. */
export type SeenBy =
  | { kind: 'everything' }
  | { kind: 'non_internal'; userId: string }
  | { kind: 'care_role'; userId: string; role: CareRole }
  | { kind: 'owner'; userId: string; now: string };

export function seenBy(access: PatientAccess, userId: string, now: Date): SeenBy {
  if (access.via === 'organization') return { kind: 'everything' };
  if (access.via === 'break_glass') return { kind: 'non_internal', userId };
  switch (access.shareRole) {
    case 'clinician':
      return { kind: 'non_internal', userId };
    case 'owner':
      return { kind: 'owner', userId, now: now.toISOString() };
    case 'trainer':
    case 'walker':
    case 'carer':
      return { kind: 'care_role', userId, role: access.shareRole };
  }
}

/** What a patient's answer tells the caller about their own access. */
export interface AccessSummary {
  via: PatientAccess['via'];
  role: string;
  write: boolean;
  expiresAt: string | null;
}

export function summarize(access: PatientAccess): AccessSummary {
  switch (access.via) {
    case 'organization':
      return {
        via: access.via,
        role: access.role,
        write: can(access.role, 'patients.write'),
        expiresAt: null,
      };
    case 'share':
      return {
        via: access.via,
        role: access.shareRole,
        write: access.access === 'write',
        expiresAt: access.expiresAt,
      };
    case 'break_glass':
      return { via: access.via, role: 'break-glass', write: false, expiresAt: access.expiresAt };
  }
}
