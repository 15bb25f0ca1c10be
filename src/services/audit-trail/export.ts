// Exporting the trail (HTTP and `caretrail audit export`): audited first, then streamed.
import { streamAuditEvents, type AuditFilter } from '../../store/audit.store.js';
import type { AuditEventRow } from '../../store/tables.js';
import { auditedRead } from '../audit.service.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { checkRange, filterFor, normalizedRange, type AuditSearch } from './model.js';

/**
 * Starts an export: the export itself is audited (committed) before the first row leaves, then
 * rows stream page by page in constant memory.
 */
export async function exportEvents(
  deps: ServiceDeps,
  ctx: RequestContext | null,
  query: AuditSearch,
): Promise<AsyncGenerator<AuditEventRow>> {
  checkRange(query);
  const filter: AuditFilter = ctx?.actor
    ? // People outside any organization are refused by the permission check below.
      filterFor(ctx.actor.organizationId ?? '', query)
    : {
        ...(query.patientId !== undefined ? { patientId: query.patientId } : {}),
        ...(query.actorId !== undefined ? { actorUserId: query.actorId } : {}),
        ...(query.action !== undefined ? { action: query.action } : {}),
        ...(query.outcome !== undefined ? { outcome: query.outcome } : {}),
        ...normalizedRange(query),
      };
  if (ctx) {
    await auditedRead(
      deps,
      ctx,
      {
        action: 'E',
        type: 'audit.export',
        permission: ctx.actor ? 'audit.read' : undefined,
        hideForbidden: true,
      },
      async (record) => {
        record.detail = { filters: Object.keys(query).sort() };
        return Promise.resolve();
      },
    );
  }
  return streamAuditEvents(deps.db.read, { filter, pageSize: 2000 });
}
