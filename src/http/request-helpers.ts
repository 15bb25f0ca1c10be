// Helpers shared by routes: If-Match versions and Idempotency-Key replay for creating POSTs.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.js';
import { requireActor, type RequestContext } from '../services/context.js';
import type { Services } from '../services/services.js';

/** The version named by If-Match ("3", 3 or W/"3"); a missing header is 428. */
export function requiredVersion(request: FastifyRequest): number {
  const version = optionalVersion(request);
  if (version === undefined) {
    throw new AppError(
      'precondition_required',
      'Send If-Match: "<version>" with the version you last read.',
    );
  }
  return version;
}

export function optionalVersion(request: FastifyRequest): number | undefined {
  const header = request.headers['if-match'];
  if (header === undefined) return undefined;
  const match = /^(?:W\/)?"?(\d{1,9})"?$/.exec(header.trim());
  if (!match?.[1]) throw new AppError('invalid', 'If-Match must hold a version number, e.g. "3".');
  return Number(match[1]);
}

/**
 * Runs a creating request once per Idempotency-Key: a replay answers with the stored response,
 * a first attempt runs `create` with a context that stores the response in the same transaction.
 */
export async function createOnce<T>(
  services: Services,
  request: FastifyRequest,
  reply: FastifyReply,
  create: (ctx: RequestContext) => Promise<T>,
): Promise<T> {
  const key = request.headers['idempotency-key'];
  reply.code(201);
  if (typeof key !== 'string') return create(request.ctx);
  const actor = requireActor(request.ctx);
  const decision = await services.idempotency.begin({
    scope: actor.userId,
    key,
    method: request.method,
    route: request.routeOptions.url ?? request.url,
    params: request.params,
    body: request.body,
    statusCode: 201,
  });
  if (decision.kind === 'replay') {
    reply.code(decision.statusCode).header('idempotent-replayed', 'true');
    return decision.body as T;
  }
  return create({ ...request.ctx, idempotency: decision.claim });
}
