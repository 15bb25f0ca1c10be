// The shapes the web app reads from the v1 API (see src/http/schemas.ts for the source of truth).

export type Role = 'admin' | 'clinician' | 'nurse' | 'reception' | 'auditor';

export interface User {
  id: string;
  organizationId: string | null;
  email: string;
  name: string;
  role: Role | null;
  disabled: boolean;
  mfaEnabled: boolean;
  version: number;
  createdAt: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface Owner {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
}

export interface Identifier {
  system: string;
  value: string;
}

export interface Patient {
  id: string;
  organizationId: string;
  name: string;
  species: string;
  breed: string | null;
  sex: string | null;
  birthDate: string | null;
  alerts: string[];
  identifiers: Identifier[];
  owners: Owner[];
  version: number;
  createdAt: string;
  updatedAt: string;
  access: {
    via: 'organization' | 'share' | 'break_glass';
    role: string;
    write: boolean;
    expiresAt: string | null;
  };
}

export interface Observation {
  code: string;
  display?: string;
  value: number | string;
  unit?: string;
  referenceRange?: string;
  flag?: string;
}

export type NoteKind = 'soap' | 'clinical' | 'behavior' | 'training' | 'result' | 'visit';

export interface Addendum {
  id: string;
  body: string;
  authorId: string;
  authorName: string;
  createdAt: string;
  /** Addenda of owner notes: when the owner sees it (null: not released to them). */
  releaseAt: string | null;
}

export interface Note {
  id: string;
  patientId: string;
  kind: NoteKind;
  title: string | null;
  body: string;
  visibility: 'internal' | 'owner';
  sharedWith: string[];
  status: 'draft' | 'final';
  version: number;
  authorId: string;
  authorName: string;
  releaseAt: string | null;
  createdAt: string;
  updatedAt: string;
  finalizedAt: string | null;
  finalizedBy: string | null;
  addenda: Addendum[];
  result: {
    id: string;
    source: string;
    kind: string;
    version: number;
    abnormal: boolean;
    observations: Observation[];
    documentIds: string[];
  } | null;
}

export interface NoteRevision {
  version: number;
  change: 'created' | 'edited' | 'finalized' | 'addendum' | 'released';
  kind: NoteKind;
  title: string | null;
  body: string;
  visibility: 'internal' | 'owner';
  status: 'draft' | 'final';
  addendumId: string | null;
  actorId: string;
  at: string;
}

export interface DocumentVersion {
  version: number;
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
  createdAt: string;
  createdBy: string;
  preview: { status: 'pending' | 'ready' | 'unsupported' | 'failed'; reason: string | null };
  metadata: Record<string, unknown> | null;
  storage: { tier: 'hot' | 'archive'; retrievalDelaySeconds: number };
}

export interface CaretrailDocument extends DocumentVersion {
  id: string;
  patientId: string;
  title: string | null;
  kind: string;
  visibility: 'internal' | 'owner';
  sharedWith: string[];
  status: 'active' | 'deleted' | 'purged';
  updatedAt: string;
  deletedAt: string | null;
}

export interface CurrentSession {
  expiresAt: string;
  idleTimeoutMinutes: number;
  user: User;
}

/** One replicated part (database, files) as the server's replication monitor reports it. */
export interface ReplicaPart {
  state: 'ok' | 'behind' | 'unreachable';
  lagSeconds: number;
  lastError: string | null;
  /** Whatever else the part reports: mode, generation, lastShipAt, lastSnapshotAt, retentionDays… */
  details: Record<string, unknown>;
}

/** The figures `caretrail dr drill` keeps (src/replication/drill.ts). */
export interface DrillResult {
  engine: 'sqlite' | 'postgres';
  replica: string;
  mode: 'async' | 'sync';
  startedAt: string;
  loadSeconds: number;
  acknowledged: { notes: number; documents: number };
  missing: { notes: number; documents: number };
  rpoSeconds: number;
  rtoSeconds: number;
  restoreSeconds: number;
  restoredTo: string | null;
  audit: { ok: boolean; message: string };
  files: { checked: number; ok: number; bad: number };
  objectives: { rpoSeconds: number; rtoSeconds: number };
  passed: boolean;
  problems: string[];
}

export interface BackupsStatus {
  replication: 'off' | 'ok' | 'degraded';
  parts: Record<string, ReplicaPart>;
  lastDrill: DrillResult | null;
  warnings: string[];
}
