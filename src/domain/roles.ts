// Organization roles and what each may do. The single source of truth for role permissions.

export const ROLES = ['admin', 'clinician', 'nurse', 'reception', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

export type Permission =
  | 'users.manage'
  | 'patients.read'
  | 'patients.write'
  | 'notes.read'
  | 'notes.write'
  | 'notes.finalize'
  | 'notes.amend'
  | 'audit.read'
  | 'documents.read'
  | 'documents.write'
  | 'documents.purge'
  | 'subscriptions.manage'
  | 'shares.manage'
  | 'break_glass'
  | 'integrations.manage'
  | 'results.reconcile'
  | 'backups.read';

const PERMISSIONS: Record<Role, readonly Permission[]> = {
  // Practice manager: accounts and the patient register, not clinical notes.
  admin: [
    'users.manage',
    'patients.read',
    'patients.write',
    'audit.read',
    'documents.purge',
    'subscriptions.manage',
    'shares.manage',
    'integrations.manage',
    'backups.read',
  ],
  clinician: [
    'patients.read',
    'patients.write',
    'notes.read',
    'notes.write',
    'notes.finalize',
    'notes.amend',
    'documents.read',
    'documents.write',
    'subscriptions.manage',
    'shares.manage',
    'break_glass',
    'results.reconcile',
  ],
  nurse: [
    'patients.read',
    'patients.write',
    'notes.read',
    'notes.write',
    'notes.finalize',
    'notes.amend',
    'documents.read',
    'documents.write',
    'subscriptions.manage',
    'shares.manage',
    'results.reconcile',
  ],
  // Front desk: registers patients and owners; clinical notes are not theirs to read.
  reception: ['patients.read', 'patients.write'],
  // Privacy officer: reads the audit trail, not the records themselves.
  auditor: ['audit.read'],
};

export function can(role: Role, permission: Permission): boolean {
  return PERMISSIONS[role].includes(permission);
}

/** The roles that hold a permission. */
export function rolesWith(permission: Permission): Role[] {
  return ROLES.filter((role) => can(role, permission));
}

export function permissionsOf(role: Role): readonly Permission[] {
  return PERMISSIONS[role];
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
