// The audit event shape (FHIR AuditEvent / IHE BALP fields) and its hash chain rules.
import crypto from 'node:crypto';

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

/** Characters JSON.stringify escapes (quote, backslash, controls, lone surrogates). */
// eslint-disable-next-line no-control-regex -- the control characters are the point
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * JSON.stringify for a string or null, with a fast path for strings that need no escaping (ids,
 * times, hashes): about twice as fast when hashing millions of events.
 */
export function jsonString(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string' && !NEEDS_ESCAPE.test(value)) return `"${value}"`;
  return JSON.stringify(value);
}

const str = jsonString;

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

/**
 * SHA-256 as hex. The one-shot crypto.hash (Node >= 20.12) skips the Hash object, which is most
 * of the cost for inputs this small; older runtimes fall back to createHash.
 */
export const sha256Hex: (data: string | Buffer) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'hex')
    : (data) => crypto.createHash('sha256').update(data).digest('hex');

export function eventHash(event: AuditEvent): string {
  return sha256Hex(canonicalEventJson(event));
}

const linkBuffer = Buffer.alloc(64);

/** chain_n = SHA-256(chain_{n-1} ‖ hash_n), over the raw 32-byte values. */
export function chainHash(previousChain: string, hash: string): string {
  if (previousChain.length === 64 && hash.length === 64) {
    // Hex decoding stops at the first bad character: 32 bytes from 64 characters means both are
    // well-formed, and the one-shot hash of the joined bytes is the same value.
    const a = linkBuffer.write(previousChain, 0, 32, 'hex');
    const b = linkBuffer.write(hash, 32, 32, 'hex');
    if (a === 32 && b === 32) return sha256Hex(linkBuffer);
  }
  // Malformed stored values (tampering) hash, or fail, exactly as they always did.
  return crypto.createHash('sha256').update(previousChain, 'hex').update(hash, 'hex').digest('hex');
}

export interface ChainedEvent {
  event: AuditEvent;
  hash: string;
  chain: string;
}
