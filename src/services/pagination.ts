// Opaque cursors for keyset pagination.
import { AppError } from '../domain/errors.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export function encodeCursor(parts: readonly string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

/** Decodes a cursor made by encodeCursor with `size` parts; anything else is a 400. */
export function decodeCursor(cursor: string, size: number): string[] {
  try {
    const parts: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parts) &&
      parts.length === size &&
      parts.every((p) => typeof p === 'string')
    ) {
      return parts;
    }
  } catch {
    // reported below
  }
  throw new AppError('invalid', 'The cursor is not valid; start again from the first page.');
}

/** Trims a page fetched with limit + 1 rows and derives the next cursor from its last row. */
export function toPage<R, T>(
  rows: R[],
  limit: number,
  cursorOf: (row: R) => readonly string[],
  map: (row: R) => T,
): Page<T> {
  const hasMore = rows.length > limit;
  const pageRows = hasMore ? rows.slice(0, limit) : rows;
  const last = pageRows[pageRows.length - 1];
  return {
    items: pageRows.map(map),
    nextCursor: hasMore && last !== undefined ? encodeCursor(cursorOf(last)) : null,
  };
}

/** A cursor holding an audit sequence number (newest-first lists). */
export function decodeSeqCursor(cursor: string | undefined): number | null {
  if (cursor === undefined) return null;
  const seq = Number(decodeCursor(cursor, 1)[0]);
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new AppError('invalid', 'The cursor is not valid; start again from the first page.');
  }
  return seq;
}

/** The id a one-key cursor (newest-first or id-ordered lists) continues from, or null. */
export function idAfter(cursor: string | undefined): string | null {
  return cursor === undefined ? null : (decodeCursor(cursor, 1)[0] ?? null);
}
