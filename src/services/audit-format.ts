// Turns a stream of stored audit rows into CSV or FHIR NDJSON text chunks (for HTTP and CLI).
import { csvCell, csvHeader, csvRow, fhirAuditEvent } from '../domain/audit-export.js';
import { auditEventFromRow } from '../store/audit.store.js';
import type { AuditEventRow } from '../store/tables.js';

export async function* formatAuditRows(
  rows: AsyncIterable<AuditEventRow>,
  format: 'csv' | 'fhir',
): AsyncGenerator<string> {
  if (format === 'csv') yield csvHeader();
  let chunk = '';
  for await (const row of rows) {
    const event = auditEventFromRow(row);
    chunk += format === 'csv' ? csvRow(event) : `${JSON.stringify(fhirAuditEvent(event))}\n`;
    // Hand out ~64 KiB at a time: fewer writes, still constant memory.
    if (chunk.length >= 65536) {
      yield chunk;
      chunk = '';
    }
  }
  yield chunk;
}

/**
 * csvRow(auditEventFromRow(rowFromArray(r))) straight from a row array in CHAIN_COLUMNS order
 * (exports write millions): the same cells, without the intermediate objects. A test keeps the
 * two byte-identical.
 */
export function csvRowFromArray(r: readonly unknown[]): string {
  const cell = (i: number) => csvCell(r[i] as string | number | null);
  const entity = r[12] !== null;
  const detail = r[17] === null ? '' : csvCell(JSON.stringify(JSON.parse(r[17] as string)));
  return (
    `${cell(0)},${cell(1)},${cell(2)},${cell(3)},${cell(4)},${cell(5)},${cell(6)},${cell(7)},` +
    `${cell(8)},${cell(9)},${cell(10)},${cell(11)},${cell(12)},${entity ? cell(13) : ''},` +
    `${entity ? cell(14) : ''},${cell(15)},${cell(16)},${detail},${cell(18)},${cell(19)}\r\n`
  );
}

/** CSV text (header first) in ~64 KiB chunks from pages of row arrays. */
export async function* csvFromRowPages(pages: AsyncIterable<unknown[][]>): AsyncGenerator<string> {
  // The header goes out with the first rows: the first pull starts reading (and so takes the
  // export's snapshot) before anything is handed out.
  let chunk = csvHeader();
  for await (const rows of pages) {
    for (const r of rows) chunk += csvRowFromArray(r);
    if (chunk.length >= 65536) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}
