// A patient's access report: who read or changed the record, and when.
import { accessReportRows } from '../../store/audit.store.js';
import { accessPatient } from '../access.js';
import { audited } from '../audit.service.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { decodeSeqCursor, toPage, type Page } from '../pagination.js';
import type { AccessReportEntry } from './model.js';
import { awaitAuditSealed } from '../../audit-sealing/index.js';

/** Event types an owner's access report names as they are; others read "record.read/change". */
const OWNER_VISIBLE_TYPES = new Set([
  'patient.read',
  'patient.search',
  'patient.list-shared',
  'patient.update',
  'patient.access-report',
  'break-glass.open',
  'share.create',
  'share.revoke',
  'invitation.accept',
  'consent.create',
  'consent.revoke',
]);

export async function accessReport(
  deps: ServiceDeps,
  ctx: RequestContext,
  patientId: string,
  page: { limit: number; cursor?: string },
): Promise<Page<AccessReportEntry>> {
  const beforeSeq = decodeSeqCursor(page.cursor);
  // Every access committed before this request is in the report (src/audit-sealing/).
  await awaitAuditSealed(deps);
  return audited(
    deps,
    ctx,
    {
      action: 'R',
      type: 'patient.access-report',
      patientId,
      entity: { type: 'Patient', id: patientId, version: null },
    },
    async (tx, record) => {
      const { access } = await accessPatient(
        tx,
        ctx,
        patientId,
        'access_report.read',
        record,
        deps.clock.now(),
      );
      const rows = await accessReportRows(tx, patientId, { beforeSeq, limit: page.limit + 1 });
      // The owner learns who accessed the record and when, not which internal notes or files
      // exist: outside the organization, event types other than these become generic.
      const outside = access.via !== 'organization';
      const typeOf = (r: { type: string; action: string }) =>
        !outside || OWNER_VISIBLE_TYPES.has(r.type)
          ? r.type
          : r.action === 'R'
            ? 'record.read'
            : 'record.change';
      const result = toPage(
        rows,
        page.limit,
        (r) => [String(r.seq)],
        (r) => ({
          at: r.at,
          action: r.action,
          type: typeOf(r),
          outcome: r.outcome,
          actor: { name: r.actorName, role: r.actorRole, organization: r.organization },
        }),
      );
      record.detail = { count: result.items.length };
      return result;
    },
  );
}
