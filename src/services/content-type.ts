// The content type of an upload, from its first bytes: a client's label is never trusted.
import { fileTypeFromBuffer } from 'file-type';

export const GENERIC_TYPE = 'application/octet-stream';

function looksLikeText(head: Buffer): boolean {
  if (head.length === 0 || head.includes(0)) return false;
  // A cut in the middle of a multi-byte character at the end of the sample is fine.
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head);
  const bad = (text.match(/\uFFFD/g) ?? []).length;
  return bad <= 1;
}

export async function sniffContentType(head: Buffer): Promise<string> {
  const found = await fileTypeFromBuffer(head);
  if (found) return found.mime;
  return looksLikeText(head) ? 'text/plain' : GENERIC_TYPE;
}
