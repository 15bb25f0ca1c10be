// Who is asking, from where, in which request: passed explicitly to every use case.
import { AppError } from '../domain/errors.js';
import { can, type Permission, type Role } from '../domain/roles.js';

export interface Actor {
  userId: string;
  organizationId: string;
  role: Role;
  email: string;
  name: string;
  sessionId: string | null;
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

export function requireActor(ctx: RequestContext): Actor {
  if (!ctx.actor) throw new AppError('unauthenticated', 'Sign in first.');
  return ctx.actor;
}

/** Role check: the action itself is closed to this role, whatever record it names. */
export function requirePermission(ctx: RequestContext, permission: Permission): Actor {
  const actor = requireActor(ctx);
  if (!can(actor.role, permission)) {
    throw new AppError('forbidden', `Your role (${actor.role}) does not allow this.`);
  }
  return actor;
}

/** A context for work that no signed-in user asked for (command line, start-up, jobs). */
export function systemContext(requestId: string, userAgent: string | null = null): RequestContext {
  return { requestId, ip: null, userAgent, actor: null, auditCount: { n: 0 } };
}
