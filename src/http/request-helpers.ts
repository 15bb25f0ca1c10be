// Helpers shared by routes: If-Match versions and Idempotency-Key replay for creating POSTs.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.js';
import type { PatientCapability } from '../domain/access.js';
import type { Permission } from '../domain/roles.js';
import type { RequestContext } from '../services/context.js';
import type { Services } from '../services/services.js';
import { DEFAULT_LIMIT } from '../services/pagination.js';

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

/** What a replayed response discloses, for its audit event. */
export interface ReplayAudit<T> {
  type: string;
  /**
   * Needed to see the stored record again (someone who lost it gets no replay): the patient
   * capability for patient records, else the organization role permission.
   */
  requires:
    | { capability: PatientCapability }
    | { permission: Permission }
    /** Device ingest: the integration key that sent it. */
    | { integration: true };
  entityType: string;
  patientIdOf: (body: T) => string | null;
}

/**
 * Runs a creating request once per Idempotency-Key: a replay answers with the stored response
 * (and is audited as a read), a first attempt runs `create` with a context that stores the
 * response in the same transaction; a failed attempt frees the key for a corrected retry.
 */
export async function createOnce<T extends { id: string; version?: number }>(
  services: Services,
  request: FastifyRequest,
  reply: FastifyReply,
  replayAudit: ReplayAudit<T>,
  create: (ctx: RequestContext) => Promise<T>,
  /** What identifies the request when its body is a stream (uploads): replaces the body. */
  fingerprint?: unknown,
): Promise<T> {
  const key = request.headers['idempotency-key'];
  reply.code(201);
  if (typeof key !== 'string') return create(request.ctx);
  // Signed-in people and integration keys alike: each has its own key space.
  const actor = request.ctx.actor;
  if (!actor) throw new AppError('unauthenticated', 'Sign in first.');
  const decision = await services.idempotency.begin({
    scope: actor.userId,
    key,
    method: request.method,
    route: request.routeOptions.url ?? request.url,
    params: request.params,
    body: fingerprint ?? request.body,
    statusCode: 201,
  });
  if (decision.kind === 'replay') {
    const body = decision.body as T;
    await services.idempotency.recordReplay(request.ctx, {
      type: replayAudit.type,
      requires: replayAudit.requires,
      patientId: replayAudit.patientIdOf(body),
      entity: { type: replayAudit.entityType, id: body.id, version: body.version ?? null },
    });
    reply.code(decision.statusCode).header('idempotent-replayed', 'true');
    // A streamed body not read yet: a small one is read and discarded first, so the client
    // finishes sending and gets the stored answer (answering mid-upload and closing makes many
    // clients see EPIPE instead of it); a large one is dropped with the connection.
    if (fingerprint !== undefined && !(await drainSmallBody(request)))
      reply.header('connection', 'close');
    return body;
  }
  try {
    return await create({ ...request.ctx, idempotency: decision.claim });
  } catch (err) {
    await services.idempotency.release(decision.claim);
    throw err;
  }
}

/** Bodies up to this size are drained before a replayed upload is answered. */
const REPLAY_DRAIN_BYTES = 16 * 1024 * 1024;

/** Reads and discards a declared body of at most REPLAY_DRAIN_BYTES; false when it is larger. */
async function drainSmallBody(request: FastifyRequest): Promise<boolean> {
  const declared = Number(request.headers['content-length'] ?? NaN);
  if (!Number.isFinite(declared) || declared > REPLAY_DRAIN_BYTES) return false;
  if (request.raw.readableEnded) return true;
  try {
    let read = 0;
    for await (const chunk of request.raw) read += (chunk as Buffer).length;
    return read <= REPLAY_DRAIN_BYTES;
  } catch {
    return false;
  }
}

/** A list query's paging, with the default limit applied. */
export function pageParams(query: { limit?: number; cursor?: string }): {
  limit: number;
  cursor?: string;
} {
  return {
    limit: query.limit ?? DEFAULT_LIMIT,
    ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
  };
}
