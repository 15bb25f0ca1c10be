// Table interfaces: the one description of every row, from which row types derive.
// Timestamps are ISO-8601 UTC strings on both engines; flags are 0/1 integers.
import type { Generated, Insertable, Kysely, Selectable } from 'kysely';

export interface OrganizationsTable {
  id: string;
  name: string;
  created_at: string;
}

export interface UsersTable {
  id: string;
  /** null for people outside any organization (invited trainers, walkers, carers, owners) */
  organization_id: string | null;
  email: string;
  name: string;
  /** the organization role; null outside an organization */
  role: string | null;
  password_hash: string;
  disabled: number;
  totp_secret: string | null;
  totp_pending_secret: string | null;
  totp_enabled: number;
  totp_last_step: number | null;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface SessionsTable {
  id: string;
  token_hash: string;
  user_id: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  ip: string | null;
  user_agent: string | null;
  /** last request, kept to within a minute; for the inactivity logoff */
  last_seen_at: string | null;
}

export interface LoginFailuresTable {
  key: string;
  failures: number;
  window_started_at: string;
  locked_until: string | null;
}

export interface SetupTokensTable {
  token_hash: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export interface PatientsTable {
  id: string;
  organization_id: string;
  name: string;
  name_search: string;
  species: string;
  breed: string | null;
  sex: string | null;
  birth_date: string | null;
  /** JSON array of short warnings shown at the top of the chart (defaults to []). */
  alerts: Generated<string>;
  version: number;
  created_by: string;
  created_at: string;
  updated_at: string;
}

export interface PatientIdentifiersTable {
  id: string;
  organization_id: string;
  patient_id: string;
  system: string;
  value: string;
}

export interface OwnersTable {
  id: string;
  organization_id: string;
  name: string;
  name_search: string;
  email: string | null;
  phone: string | null;
  created_at: string;
  updated_at: string;
}

/**
 * One row per patient and word a one-word search matches by prefix (searchWordsOf: the first word
 * of the patient's name key, every word of its owners' keys), with the patient's name key to
 * order by. Kept by the patient store whenever a patient's name or owners change; owners' names
 * never change (an owner rename would have to refresh every patient of that owner).
 */
export interface PatientSearchWordsTable {
  organization_id: string;
  word: string;
  name_sort: string;
  patient_id: string;
}

export interface PatientOwnersTable {
  patient_id: string;
  owner_id: string;
  position: number;
}

export interface NotesTable {
  id: string;
  organization_id: string;
  patient_id: string;
  kind: string;
  title: string | null;
  body: string;
  visibility: string;
  status: string;
  version: number;
  author_id: string;
  created_at: string;
  updated_at: string;
  finalized_at: string | null;
  finalized_by: string | null;
  /** JSON array of care roles (trainer, walker, carer) that see a shared or owner note */
  shared_with: string;
  /** when an owner-visible note becomes visible to the owner (null: not released) */
  release_at: string | null;
  released_by: string | null;
}

export interface NoteRevisionsTable {
  id: string;
  note_id: string;
  version: number;
  change: string;
  kind: string;
  title: string | null;
  body: string;
  visibility: string;
  shared_with: string;
  status: string;
  addendum_id: string | null;
  actor_id: string;
  at: string;
}

export interface NoteAddendaTable {
  id: string;
  note_id: string;
  body: string;
  author_id: string;
  created_at: string;
  /** when the owner may see it (addenda to owner notes; null: not released) */
  release_at: string | null;
  released_by: string | null;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  occurred_at: string;
  action: string;
  type: string;
  outcome: string;
  actor_user_id: string | null;
  actor_role: string | null;
  actor_org_id: string | null;
  actor_ip: string | null;
  actor_user_agent: string | null;
  patient_id: string | null;
  entity_type: string | null;
  entity_id: string | null;
  entity_version: number | null;
  purpose: string | null;
  request_id: string | null;
  detail: string | null;
  event_hash: string;
  chain_hash: string;
}

/** Events committed but not yet sealed into the chain (PostgreSQL; migration 0013). */
export interface AuditInboxTable extends Omit<
  AuditEventsTable,
  'seq' | 'event_hash' | 'chain_hash'
> {
  n: Generated<number>;
  /** xid8 as text on the wire. */
  xid: Generated<string>;
}

export interface AuditEventPatientsTable {
  patient_id: string;
  seq: number;
}

export interface AuditCheckpointsTable {
  seq: number;
  chain_hash: string;
  created_at: string;
  key_id: string;
  signature: string;
}

export interface AuditAlertsTable {
  id: string;
  organization_id: string;
  user_id: string;
  rule: string;
  detail: string;
  created_at: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  chain_hash: string;
}

export interface IdempotencyKeysTable {
  scope: string;
  key: string;
  request_hash: string;
  state: string;
  status_code: number | null;
  response_body: string | null;
  locked_until: string;
  created_at: string;
  /** the server process that claimed a running key (Database.claimHolder), null for old rows */
  holder: number | null;
}

export interface DocumentsTable {
  id: string;
  organization_id: string;
  patient_id: string;
  title: string | null;
  kind: string;
  current_version: number;
  /** active, deleted (restorable) or purged (content removed by a retention purge) */
  status: string;
  version: number;
  created_by: string;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  deleted_by: string | null;
  purged_at: string | null;
  /** internal, shared or owner (as for notes) */
  visibility: string;
  /** JSON array of care roles that see a shared or owner document */
  shared_with: string;
}

export interface DocumentVersionsTable {
  document_id: string;
  version: number;
  organization_id: string;
  blob_key: string;
  filename: string;
  content_type: string;
  declared_type: string | null;
  size: number;
  sha256: string;
  chunk_bytes: number;
  key_id: string;
  wrapped_key: string;
  /** hot or archive */
  tier: string;
  last_read_at: string;
  archived_at: string | null;
  purged_at: string | null;
  /** pending, ready, unsupported or failed */
  preview_status: string;
  preview_reason: string | null;
  /** JSON: image size, DICOM tags */
  metadata: string | null;
  thumb_blob_key: string | null;
  thumb_key_id: string | null;
  thumb_wrapped_key: string | null;
  thumb_size: number | null;
  thumb_sha256: string | null;
  created_by: string;
  created_at: string;
}

export interface OutboxTable {
  id: string;
  topic: string;
  payload: string;
  /** pending, done or dead */
  status: string;
  attempts: number;
  available_at: string;
  locked_until: string | null;
  last_error: string | null;
  organization_id: string | null;
  subscription_id: string | null;
  event_id: string | null;
  created_at: string;
  done_at: string | null;
}

export interface SubscriptionsTable {
  id: string;
  organization_id: string;
  patient_id: string | null;
  /** JSON array of event types */
  events: string;
  /** email or webhook */
  channel: string;
  target: string;
  secret_key_id: string | null;
  secret_wrapped: string | null;
  created_by: string;
  created_at: string;
  disabled_at: string | null;
}

export interface SharesTable {
  id: string;
  /** the patient's organization */
  organization_id: string;
  patient_id: string;
  grantee_email: string;
  /** null until the invitee has an account */
  grantee_user_id: string | null;
  role: string;
  access: string;
  expires_at: string | null;
  consent_id: string | null;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
  revoked_by: string | null;
}

export interface InvitationsTable {
  id: string;
  token_hash: string;
  email: string;
  share_id: string;
  created_by: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export interface ConsentsTable {
  id: string;
  organization_id: string;
  patient_id: string;
  grantee_email: string;
  purpose: string;
  /** read or write: the most a share under this consent may grant */
  scope: string;
  /** in_person, portal or signed_form */
  method: string;
  consented_by_owner_id: string | null;
  consented_by_user_id: string | null;
  /** the signed form, a document of the same patient */
  document_id: string | null;
  recorded_by: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
  version: number;
}

export interface ConsentVersionsTable {
  consent_id: string;
  version: number;
  change: string;
  /** JSON of the consent as it was after the change */
  snapshot: string;
  actor_id: string;
  at: string;
}

export interface BreakGlassGrantsTable {
  id: string;
  /** the patient's organization */
  organization_id: string;
  patient_id: string;
  user_id: string;
  reason: string;
  created_at: string;
  expires_at: string;
}

export interface IntegrationKeysTable {
  id: string;
  organization_id: string;
  name: string;
  key_hash: string;
  secret_key_id: string;
  secret_wrapped: string;
  user_id: string;
  created_by: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface ResultsTable {
  id: string;
  organization_id: string;
  integration_key_id: string;
  source: string;
  source_result_id: string | null;
  kind: string;
  /** matched, unmatched or discarded */
  status: string;
  patient_id: string | null;
  note_id: string | null;
  /** JSON: the patient identifiers the source sent */
  identifiers: string;
  /** JSON: name, species, owner surname, birth date as the source sent them (or null) */
  demographics: string | null;
  current_version: number;
  received_at: string;
  updated_at: string;
  resolved_by: string | null;
  resolved_at: string | null;
  discard_reason: string | null;
}

export interface ResultVersionsTable {
  result_id: string;
  version: number;
  /** JSON array of observations */
  observations: string;
  abnormal: number;
  /** the message as received */
  original: string;
  original_type: string;
  received_at: string;
}

export interface IntegrationPatientIdsTable {
  integration_key_id: string;
  /** the source's own patient id */
  value: string;
  organization_id: string;
  patient_id: string;
  created_by: string;
  created_at: string;
}

export interface ResultAttachmentsTable {
  result_id: string;
  version: number;
  position: number;
  filename: string;
  content_type: string;
  blob_key: string;
  size: number;
  sha256: string;
  chunk_bytes: number;
  key_id: string;
  wrapped_key: string;
  document_id: string | null;
}

export interface BlobReplicasTable {
  blob_key: string;
  /** pending, replicated, failed, purging or removed (see blob-replica.store.ts) */
  state: string;
  stored_at: string;
  job_id: string | null;
  replicated_at: string | null;
  /** encrypted bytes written to the replica, and their SHA-256 */
  bytes: number | null;
  sha256: string | null;
  last_error: string | null;
  last_error_at: string | null;
  removed_at: string | null;
}

export interface DB {
  organizations: OrganizationsTable;
  users: UsersTable;
  sessions: SessionsTable;
  login_failures: LoginFailuresTable;
  setup_tokens: SetupTokensTable;
  patients: PatientsTable;
  patient_identifiers: PatientIdentifiersTable;
  owners: OwnersTable;
  patient_search_words: PatientSearchWordsTable;
  patient_owners: PatientOwnersTable;
  notes: NotesTable;
  note_revisions: NoteRevisionsTable;
  note_addenda: NoteAddendaTable;
  audit_events: AuditEventsTable;
  audit_event_patients: AuditEventPatientsTable;
  audit_inbox: AuditInboxTable;
  audit_head: AuditHeadTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_alerts: AuditAlertsTable;
  idempotency_keys: IdempotencyKeysTable;
  documents: DocumentsTable;
  document_versions: DocumentVersionsTable;
  outbox: OutboxTable;
  subscriptions: SubscriptionsTable;
  shares: SharesTable;
  invitations: InvitationsTable;
  consents: ConsentsTable;
  consent_versions: ConsentVersionsTable;
  break_glass_grants: BreakGlassGrantsTable;
  integration_keys: IntegrationKeysTable;
  results: ResultsTable;
  result_versions: ResultVersionsTable;
  integration_patient_ids: IntegrationPatientIdsTable;
  result_attachments: ResultAttachmentsTable;
  blob_replicas: BlobReplicasTable;
}

/** A database handle inside a unit of work (a transaction, or a savepoint in a group commit). */
export type Tx = Kysely<DB>;

export type UserRow = Selectable<UsersTable>;
export type NewUserRow = Insertable<UsersTable>;
export type PatientRow = Selectable<PatientsTable>;
export type NewPatientRow = Insertable<PatientsTable>;
export type OwnerRow = Selectable<OwnersTable>;
export type NoteRow = Selectable<NotesTable>;
export type NewNoteRow = Insertable<NotesTable>;
export type NoteRevisionRow = Selectable<NoteRevisionsTable>;
export type NoteAddendumRow = Selectable<NoteAddendaTable>;
export type AuditEventRow = Selectable<AuditEventsTable>;
export type SessionRow = Selectable<SessionsTable>;
export type DocumentRow = Selectable<DocumentsTable>;
export type DocumentVersionRow = Selectable<DocumentVersionsTable>;
export type OutboxRow = Selectable<OutboxTable>;
export type SubscriptionRow = Selectable<SubscriptionsTable>;
export type ShareRow = Selectable<SharesTable>;
export type InvitationRow = Selectable<InvitationsTable>;
export type ConsentRow = Selectable<ConsentsTable>;
export type ConsentVersionRow = Selectable<ConsentVersionsTable>;
export type BreakGlassGrantRow = Selectable<BreakGlassGrantsTable>;
export type IntegrationKeyRow = Selectable<IntegrationKeysTable>;
export type ResultRow = Selectable<ResultsTable>;
export type ResultAttachmentRow = Selectable<ResultAttachmentsTable>;
export type IntegrationPatientIdRow = Selectable<IntegrationPatientIdsTable>;
export type ResultVersionRow = Selectable<ResultVersionsTable>;
export type BlobReplicaRow = Selectable<BlobReplicasTable>;
