// Maps AppError codes (and Fastify's own request errors) to statuses and the one error shape.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isConnectionError } from '../store/database.js';
import { isAppError, type ErrorCode } from '../domain/errors.js';

export const STATUS_OF: Record<ErrorCode, number> = {
  invalid: 400,
  unauthenticated: 401,
  mfa_required: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  consent_required: 409,
  precondition_failed: 412,
  request_timeout: 408,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_mismatch: 422,
  precondition_required: 428,
  too_many_requests: 429,
  range_not_satisfiable: 416,
  retrieval_pending: 409,
  insufficient_storage: 507,
  unavailable: 503,
};

export function sendError(
  reply: FastifyReply,
  status: number,
  code: string,
  message: string,
): FastifyReply {
  // Refused before its body was read to the end (a full disk mid-upload, a size limit): the rest
  // of the body would be read as the next request, so the connection ends with this answer, and
  // says so, so that the client does not send its next request on it.
  if (!reply.request.raw.complete) reply.header('connection', 'close');
  return reply.code(status).send({ error: { code, message, requestId: reply.request.id } });
}

function validationMessage(err: FastifyError): string {
  const first = err.validation?.[0];
  if (!first) return 'The request is not valid.';
  const where = `${err.validationContext ?? 'request'}${first.instancePath.replace(/\//g, '.')}`;
  const params: Record<string, unknown> = first.params;
  if (first.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
    return `${where} has an unknown field "${params.additionalProperty.slice(0, 64)}".`;
  }
  if (first.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    return `${where} must be one of: ${params.allowedValues.join(', ')}.`;
  }
  return `${where} ${first.message ?? 'is not valid'}.`;
}

/** Fastify's request-level errors (parsing, size, media type) that are the client's fault. */
function frameworkError(
  err: FastifyError,
): { status: number; code: ErrorCode; message: string } | null {
  if (err.validation) return { status: 400, code: 'invalid', message: validationMessage(err) };
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'payload_too_large', message: 'The request body is too large.' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        code: 'unsupported_media_type',
        message: 'Send the body as application/json.',
      };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'invalid', message: 'The JSON body is empty.' };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return {
        status: 400,
        code: 'invalid',
        message: 'The Content-Length header does not match the body.',
      };
    default:
      break;
  }
  if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return { status: 400, code: 'invalid', message: 'The body is not valid JSON.' };
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, code: 'invalid', message: 'The request could not be read.' };
  }
  return null;
}

export function errorHandler(
  err: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (isAppError(err)) {
    if (err.retryAfterSeconds !== undefined)
      reply.header('retry-after', String(err.retryAfterSeconds));
    if (err.code === 'unavailable') request.log.warn({ err }, 'service unavailable');
    // A client that stopped sending mid-body: answer and close, rather than wait for the rest.
    if (err.code === 'request_timeout') reply.header('connection', 'close');
    return sendError(reply, STATUS_OF[err.code], err.code, err.message);
  }
  const known = frameworkError(err);
  if (known) return sendError(reply, known.status, known.code, known.message);
  if (isConnectionError(err)) {
    // PostgreSQL went away under a read outside a unit of work (a session lookup, a list):
    // the same clear 503 as a write gets, not a 500.
    request.log.warn({ code: err.code }, 'database not reachable');
    reply.header('retry-after', '5');
    return sendError(
      reply,
      503,
      'unavailable',
      'The database is not reachable; try again shortly.',
    );
  }
  request.log.error({ err }, 'unhandled error');
  return sendError(
    reply,
    500,
    'internal',
    'Something went wrong on our side. It was logged; quote the request id if it persists.',
  );
}
