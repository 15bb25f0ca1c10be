// What the audit trail's use cases share: their dependencies, settings, the shapes they answer
// with, and the checks and filters of a search or export query.
import type { AuditSigner } from '../../audit-signing-key.js';
import type { Config } from '../../config.js';
import type { AuditAction, AuditOutcome } from '../../domain/audit.js';
import { AppError } from '../../domain/errors.js';
import type { ChainSource } from '../../store/audit-scan.js';
import type { AuditFilter } from '../../store/audit.store.js';
import type { ServiceDeps } from '../deps.js';

export interface AuditTrailSettings {
  checkpointEveryEvents: number;
  checkpointEveryMs: number;
  alertDistinctPatients: number;
  alertWindowMinutes: number;
  /**
   * The PostgreSQL connection URL, for the bulk reads (verification, export) that run on
   * connections of their own; without it they share the pool, on one thread.
   */
  databaseUrl?: string;
  /**
   * Whether each signed checkpoint also queues an anchor for the replica (an `audit.anchor`
   * outbox item, committed with the checkpoint): set when CARETRAIL_REPLICA_URL is.
   */
  anchorCheckpoints?: boolean;
}

/** The trail's settings from the configuration. */
export function auditTrailSettingsOf(config: Config): AuditTrailSettings {
  return {
    checkpointEveryEvents: config.auditCheckpointEvents,
    checkpointEveryMs: config.auditCheckpointSeconds * 1000,
    alertDistinctPatients: config.alertDistinctPatients,
    alertWindowMinutes: config.alertWindowMinutes,
    databaseUrl: config.databaseUrl,
    anchorCheckpoints: config.replicaUrl !== '',
  };
}

/** The application's dependencies plus the checkpoint signing key and the trail's settings. */
export interface AuditTrailDeps {
  deps: ServiceDeps;
  signer: AuditSigner;
  settings: AuditTrailSettings;
}

export interface AuditSearch {
  patientId?: string;
  actorId?: string;
  action?: AuditAction;
  outcome?: AuditOutcome;
  type?: string;
  from?: string;
  to?: string;
}

export interface AuditEventView {
  seq: number;
  id: string;
  occurredAt: string;
  action: string;
  type: string;
  outcome: string;
  actor: {
    userId: string | null;
    role: string | null;
    organizationId: string | null;
    ip: string | null;
    userAgent: string | null;
  };
  patientId: string | null;
  entity: { type: string; id: string | null; version: number | null } | null;
  purpose: string | null;
  requestId: string | null;
  detail: Record<string, unknown> | null;
  hash: string;
  chain: string;
}

export interface AccessReportEntry {
  at: string;
  action: string;
  type: string;
  outcome: string;
  actor: { name: string | null; role: string | null; organization: string | null };
}

export function checkRange(search: AuditSearch): void {
  for (const [name, value] of [
    ['from', search.from],
    ['to', search.to],
  ] as const) {
    if (value !== undefined && Number.isNaN(Date.parse(value))) {
      throw new AppError(
        'invalid',
        `${name} must be an ISO 8601 date or time, e.g. 2026-01-31T00:00:00Z.`,
      );
    }
  }
  if (
    search.from !== undefined &&
    search.to !== undefined &&
    Date.parse(search.from) >= Date.parse(search.to)
  ) {
    throw new AppError('invalid', '"from" must be earlier than "to".');
  }
}

/** ISO strings in the stored form, so comparisons against occurred_at are exact. */
export function normalizedRange(search: AuditSearch): Pick<AuditFilter, 'from' | 'to'> {
  return {
    ...(search.from !== undefined ? { from: new Date(search.from).toISOString() } : {}),
    ...(search.to !== undefined ? { to: new Date(search.to).toISOString() } : {}),
  };
}

/** A staff member's query, limited to the events of their organization. */
export function filterFor(organizationId: string, query: AuditSearch): AuditFilter {
  return {
    organizationId,
    ...(query.patientId !== undefined ? { patientId: query.patientId } : {}),
    ...(query.actorId !== undefined ? { actorUserId: query.actorId } : {}),
    ...(query.action !== undefined ? { action: query.action } : {}),
    ...(query.outcome !== undefined ? { outcome: query.outcome } : {}),
    ...(query.type !== undefined ? { type: query.type } : {}),
    ...normalizedRange(query),
  };
}

/** Where bulk reads can open connections of their own, or null (PostgreSQL without its URL). */
export function chainSource({ deps, settings }: AuditTrailDeps): ChainSource | null {
  if (deps.db.sqliteFile !== null) return { engine: 'sqlite', file: deps.db.sqliteFile };
  if (deps.db.engine === 'postgres' && settings.databaseUrl !== undefined)
    return { engine: 'postgres', url: settings.databaseUrl };
  return null;
}
