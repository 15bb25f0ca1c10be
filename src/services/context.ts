// Who is asking, from where, in which request: passed explicitly to every use case.
import { AppError, notFound } from '../domain/errors.js';
import { can, type Permission, type Role } from '../domain/roles.js';

export interface Actor {
  /** A signed-in person, or a device or lab system using an integration key. */
  kind: 'user' | 'integration';
  /** The user's id; for an integration key, the id of the key's own (disabled) account. */
  userId: string;
  /** The integration key used, for kind 'integration'. */
  integrationKeyId?: string;
  /** The organization the person works in (null for people outside any), or the key's. */
  organizationId: string | null;
  /** The organization role; null outside an organization and for integration keys. */
  role: Role | null;
  email: string;
  name: string;
  sessionId: string | null;
}

/** Someone who works in an organization, with a role there. */
export interface StaffActor extends Actor {
  kind: 'user';
  organizationId: string;
  role: Role;
}

export function isStaff(actor: Actor): actor is StaffActor {
  return actor.kind === 'user' && actor.organizationId !== null && actor.role !== null;
}

/** A claimed Idempotency-Key whose response must be stored in the same transaction as the work. */
export interface IdempotencyClaim {
  scope: string;
  key: string;
  statusCode: number;
}

export interface RequestContext {
  requestId: string;
  ip: string | null;
  userAgent: string | null;
  actor: Actor | null;
  idempotency?: IdempotencyClaim;
  /** Audit events written for this request so far (shared by copies of the context). */
  auditCount: { n: number };
}

/** The signed-in person. Integration keys reach only ingest operations: anything else is 404. */
export function requireActor(ctx: RequestContext): Actor {
  if (!ctx.actor) throw new AppError('unauthenticated', 'Sign in first.');
  if (ctx.actor.kind !== 'user') throw notFound();
  return ctx.actor;
}

/** A member of an organization; people outside any organization do not see these operations. */
export function requireStaff(ctx: RequestContext): StaffActor {
  const actor = requireActor(ctx);
  if (!isStaff(actor)) throw notFound();
  return actor;
}

/** Role check: the action itself is closed to this role, whatever record it names. */
export function requirePermission(ctx: RequestContext, permission: Permission): StaffActor {
  const actor = requireStaff(ctx);
  if (!can(actor.role, permission)) {
    throw new AppError('forbidden', `Your role (${actor.role}) does not allow this.`);
  }
  return actor;
}

/** An integration key (device, lab); ingest operations only. */
export function requireIntegration(ctx: RequestContext): Actor & { organizationId: string } {
  const actor = ctx.actor;
  if (!actor) throw new AppError('unauthenticated', 'Send the integration key as a bearer token.');
  if (actor.kind !== 'integration' || actor.organizationId === null) throw notFound();
  return { ...actor, organizationId: actor.organizationId };
}

/** A context for work that no signed-in user asked for (command line, start-up, jobs). */
export function systemContext(requestId: string, userAgent: string | null = null): RequestContext {
  return { requestId, ip: null, userAgent, actor: null, auditCount: { n: 0 } };
}
