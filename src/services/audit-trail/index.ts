// The audit trail as a product: signed checkpoints, verification, search, export, the patient's
// access report and the unusual-access rule. The use cases are plain functions in this folder;
// createAuditTrailService binds them to the application's dependencies and the signing key.
import type { AuditSigner } from '../../audit-signing-key.js';
import type { VerifyResult } from '../../domain/audit-verify.js';
import { recordRefusal } from '../audit.service.js';
import type { RequestContext } from '../context.js';
import type { ServiceDeps } from '../deps.js';
import { accessReport } from './access-report.js';
import { checkpointIfDue } from './checkpoint.js';
import { exportCsv, exportEvents } from './export.js';
import type { AuditSearch, AuditTrailSettings } from './model.js';
import { searchAuditTrail } from './search.js';
import { checkUnusualAccess, listAlerts } from './unusual-access.js';
import { verify, verifyChain } from './verify.js';

export type {
  AccessReportEntry,
  AuditEventView,
  AuditSearch,
  AuditTrailDeps,
  AuditTrailSettings,
} from './model.js';
export { toAuditEventView } from './search.js';
export { auditTrailSettingsOf } from './model.js';

export function createAuditTrailService(
  deps: ServiceDeps,
  signer: AuditSigner,
  settings: AuditTrailSettings,
) {
  const trail = { deps, signer, settings };
  return {
    checkpointIfDue: (force = false) => checkpointIfDue(trail, force),
    verifyChain: (options: { parallelFrom?: number } = {}): Promise<VerifyResult> =>
      verifyChain(trail, options),
    verify: (ctx: RequestContext) => verify(trail, ctx),
    search: (ctx: RequestContext, query: AuditSearch, page: { limit: number; cursor?: string }) =>
      searchAuditTrail(deps, ctx, query, page),
    exportEvents: (ctx: RequestContext | null, query: AuditSearch) =>
      exportEvents(deps, ctx, query),
    exportCsv: (ctx: RequestContext | null, query: AuditSearch) => exportCsv(trail, ctx, query),
    accessReport: (
      ctx: RequestContext,
      patientId: string,
      page: { limit: number; cursor?: string },
    ) => accessReport(deps, ctx, patientId, page),
    checkUnusualAccess: (userId: string, organizationId: string) =>
      checkUnusualAccess(trail, userId, organizationId),
    listAlerts: (ctx: RequestContext, page: { limit: number; cursor?: string }) =>
      listAlerts(deps, ctx, page),
    recordRefusal: (
      ctx: RequestContext,
      request: { method: string; route: string; statusCode: number },
    ) => recordRefusal(deps, ctx, request),
  };
}

export type AuditTrailService = ReturnType<typeof createAuditTrailService>;
