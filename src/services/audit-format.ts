// Turns a stream of stored audit rows into CSV or FHIR NDJSON text chunks (for HTTP and CLI).
import { csvHeader, csvRow, fhirAuditEvent } from '../domain/audit-export.js';
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
  if (chunk !== '') yield chunk;
}
