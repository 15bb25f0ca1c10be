// Documents: kinds, safe filenames, which content types a browser may show inline, and Range.
import { AppError } from './errors.js';

export const DOCUMENT_KINDS = [
  'xray',
  'imaging',
  'lab',
  'photo',
  'video',
  'report',
  'form',
  'other',
] as const;
export type DocumentKind = (typeof DOCUMENT_KINDS)[number];

export type DocumentStatus = 'active' | 'deleted' | 'purged';
export type PreviewStatus = 'pending' | 'ready' | 'unsupported' | 'failed';

/**
 * A filename safe to store and to send back: the last path component only, no control or
 * reserved characters, no leading dots, at most 200 characters.
 */
export function safeFilename(raw: string | undefined | null): string {
  const last = (raw ?? '').split(/[/\\]/).pop() ?? '';
  const cleaned = last
    .normalize('NFC')
    // eslint-disable-next-line no-control-regex -- control characters are what is removed
    .replace(/[\u0000-\u001f\u007f-\u009f<>:"|?*]/g, '')
    .replace(/^[.\s]+/, '')
    .trim()
    .slice(0, 200);
  return cleaned === '' ? 'file' : cleaned;
}

/** Types a browser may display inline; everything else downloads as an attachment. */
const INLINE_TYPES = new Set([
  'image/jpeg',
  'image/png',
  'image/gif',
  'image/webp',
  'image/avif',
  'application/pdf',
  'video/mp4',
  'video/webm',
  'audio/mpeg',
  'text/plain',
]);

/** RFC 6266 Content-Disposition with an ASCII fallback and the UTF-8 name. */
export function contentDisposition(filename: string, contentType: string): string {
  const disposition = INLINE_TYPES.has(contentType) ? 'inline' : 'attachment';
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${disposition}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

export interface ParsedRange {
  start: number;
  end: number;
}

/**
 * One `bytes=` range of a `size`-byte file; null when absent or when several ranges are asked
 * for (answered with the whole file, as RFC 9110 allows). Unsatisfiable ranges are a 416.
 */
export function parseRange(header: string | undefined, size: number): ParsedRange | null {
  if (header === undefined) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) {
    if (/^bytes=.*,/.test(header.trim())) return null;
    throw new AppError('invalid', 'The Range header must look like "bytes=0-1023".');
  }
  const [, from = '', to = ''] = match;
  if (from === '' && to === '') {
    throw new AppError('invalid', 'The Range header must look like "bytes=0-1023".');
  }
  let start: number;
  let end: number;
  if (from === '') {
    const suffix = Number(to);
    if (suffix === 0) throw rangeNotSatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(from);
    end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
    if (to !== '' && Number(to) < start) {
      throw new AppError('invalid', 'The Range header ends before it starts.');
    }
  }
  if (start >= size) throw rangeNotSatisfiable(size);
  return { start, end };
}

function rangeNotSatisfiable(size: number): AppError {
  return new AppError(
    'range_not_satisfiable',
    `The requested range is outside the file (${size} bytes).`,
  );
}
