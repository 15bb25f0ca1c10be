// The audit event shape (FHIR AuditEvent / IHE BALP fields) and its hash chain rules.
import { createHash } from 'node:crypto';

/** C create, R read, U update, D delete, E execute (login, search, export). */
export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';

/** success; failure: refused by a rule or bad input; denied: no access or not found; error: server fault. */
export type AuditOutcome = 'success' | 'failure' | 'denied' | 'error';

export interface AuditActor {
  userId: string | null;
  role: string | null;
  organizationId: string | null;
  ip: string | null;
  userAgent: string | null;
}

export interface AuditEntity {
  type: string;
  id: string | null;
  version: number | null;
}

/** Everything hashed: the stored event minus its own hash and chain. */
export interface AuditEvent {
  seq: number;
  id: string;
  occurredAt: string;
  action: AuditAction;
  type: string;
  outcome: AuditOutcome;
  actor: AuditActor;
  patientId: string | null;
  entity: AuditEntity | null;
  purpose: string | null;
  requestId: string | null;
  /** Non-identifying details (ids, counts, error codes) — never patient data. */
  detail: Record<string, unknown> | null;
}

export const GENESIS_CHAIN = '0'.repeat(64);

/**
 * Canonical JSON in the manner of RFC 8785: object keys sorted by UTF-16 code units, no
 * whitespace, ECMAScript number and string serialization. `undefined` members are dropped.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('Non-finite number in canonical JSON');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`Cannot canonicalize a ${typeof value}`);
  }
}

const str = (value: string | null): string => (value === null ? 'null' : JSON.stringify(value));

/**
 * canonicalJson(event), written out by hand in sorted key order: verification hashes millions
 * of events, and this is several times faster than the generic walk. A property test keeps the
 * two identical.
 */
export function canonicalEventJson(e: AuditEvent): string {
  const a = e.actor;
  const entity =
    e.entity === null
      ? 'null'
      : `{"id":${str(e.entity.id)},"type":${str(e.entity.type)},"version":${e.entity.version === null ? 'null' : canonicalJson(e.entity.version)}}`;
  return (
    `{"action":${str(e.action)},"actor":{"ip":${str(a.ip)},"organizationId":${str(a.organizationId)},"role":${str(a.role)},` +
    `"userAgent":${str(a.userAgent)},"userId":${str(a.userId)}},"detail":${e.detail === null ? 'null' : canonicalJson(e.detail)},` +
    `"entity":${entity},"id":${str(e.id)},"occurredAt":${str(e.occurredAt)},"outcome":${str(e.outcome)},` +
    `"patientId":${str(e.patientId)},"purpose":${str(e.purpose)},"requestId":${str(e.requestId)},"seq":${canonicalJson(e.seq)},"type":${str(e.type)}}`
  );
}

export function eventHash(event: AuditEvent): string {
  return createHash('sha256').update(canonicalEventJson(event)).digest('hex');
}

/** chain_n = SHA-256(chain_{n-1} ‖ hash_n), over the raw 32-byte values. */
export function chainHash(previousChain: string, hash: string): string {
  return createHash('sha256').update(previousChain, 'hex').update(hash, 'hex').digest('hex');
}

export interface ChainedEvent {
  event: AuditEvent;
  hash: string;
  chain: string;
}
