// The one error type of the application. Services throw it; the HTTP layer maps `code` to a status.

export type ErrorCode =
  | 'not_found'
  | 'forbidden'
  | 'conflict'
  | 'consent_required'
  | 'invalid'
  | 'unauthenticated'
  | 'mfa_required'
  | 'precondition_failed'
  | 'precondition_required'
  | 'idempotency_mismatch'
  | 'payload_too_large'
  | 'request_timeout'
  | 'unsupported_media_type'
  | 'too_many_requests'
  | 'range_not_satisfiable'
  | 'retrieval_pending'
  | 'insufficient_storage'
  | 'unavailable';

export class AppError extends Error {
  readonly code: ErrorCode;
  /** Seconds the caller should wait before retrying (too_many_requests, unavailable). */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { retryAfterSeconds?: number }) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

export const notFound = (what = 'Resource'): AppError =>
  new AppError('not_found', `${what} not found.`);

/** Optimistic concurrency: the record moved on since the caller read it. */
export const staleVersion = (what: string, current?: number): AppError =>
  new AppError(
    'precondition_failed',
    `This ${what} was changed by someone else${current === undefined ? '' : ` (now version ${current})`}; reload and try again.`,
  );

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
