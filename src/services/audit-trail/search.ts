// Searching the trail: a staff member's organization's events, newest first.
import { auditEventFromRow, searchAuditEvents } from '../../store/audit.store.js';
import type { AuditEventRow } from '../../store/tables.js';
import { auditedRead } from '../audit.service.js';
import { requireStaff, type RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { decodeSeqCursor, toPage, type Page } from '../pagination.js';
import { awaitAuditSealed } from '../../audit-sealing/index.js';
import { checkRange, filterFor, type AuditEventView, type AuditSearch } from './model.js';

export function toAuditEventView(row: AuditEventRow): AuditEventView {
  const { event, hash, chain } = auditEventFromRow(row);
  return { ...event, hash, chain };
}

export async function searchAuditTrail(
  deps: ServiceDeps,
  ctx: RequestContext,
  query: AuditSearch,
  page: { limit: number; cursor?: string },
): Promise<Page<AuditEventView>> {
  checkRange(query);
  const beforeSeq = decodeSeqCursor(page.cursor);
  return auditedRead(
    deps,
    ctx,
    { action: 'E', type: 'audit.search', permission: 'audit.read', hideForbidden: true },
    async (record) => {
      const actor = requireStaff(ctx);
      await awaitAuditSealed(deps);
      const rows = await searchAuditEvents(deps.db.read, filterFor(actor.organizationId, query), {
        beforeSeq,
        limit: page.limit + 1,
      });
      const result = toPage(rows, page.limit, (r) => [String(r.seq)], toAuditEventView);
      record.detail = { count: result.items.length, filters: Object.keys(query).sort() };
      return result;
    },
  );
}
