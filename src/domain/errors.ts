// The one error type of the application. Services throw it; the HTTP layer maps `code` to a status.

export type ErrorCode =
  | 'not_found'
  | 'forbidden'
  | 'conflict'
  | 'invalid'
  | 'unauthenticated'
  | 'mfa_required'
  | 'precondition_failed'
  | 'precondition_required'
  | 'idempotency_mismatch'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'too_many_requests'
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

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
