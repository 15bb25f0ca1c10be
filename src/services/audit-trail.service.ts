// The audit trail as a product: signed checkpoints, verification, search, export, the patient's
// access report and the unusual-access rule.
import type { AuditSigner } from '../audit-signing-key.js';
import type { AuditAction, AuditOutcome } from '../domain/audit.js';
import { GENESIS_CHAIN } from '../domain/audit.js';
import { ChainVerifier, withContentCheck, type VerifyResult } from '../domain/audit-verify.js';
import { firstAlteredEvent } from '../store/audit-content-check.js';
import { AppError } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import {
  auditEventFromRow,
  accessReportRows,
  auditHead,
  distinctPatientsSeen,
  lastAuditSeq,
  firstAuditSeq,
  insertCheckpoint,
  latestCheckpoint,
  listCheckpoints,
  scanAuditChain,
  scanAuditLinks,
  searchAuditEvents,
  streamAuditEvents,
  type AuditFilter,
} from '../store/audit.store.js';
import type { AuditEventRow, Tx } from '../store/tables.js';
import { audited, auditedRead, recordRefusal } from './audit.service.js';
import { accessPatient } from './access.js';
import { requireStaff, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { mailAdmins } from './mail.js';
import { decodeSeqCursor, toPage, type Page, idAfter } from './pagination.js';

/** Logs at least this long are verified on several threads (SQLite). */
const PARALLEL_VERIFY_FROM = 50_000;

export interface AuditTrailSettings {
  checkpointEveryEvents: number;
  checkpointEveryMs: number;
  alertDistinctPatients: number;
  alertWindowMinutes: number;
}

export interface AuditSearch {
  patientId?: string;
  actorId?: string;
  action?: AuditAction;
  outcome?: AuditOutcome;
  type?: string;
  from?: string;
  to?: string;
}

export interface AuditEventView {
  seq: number;
  id: string;
  occurredAt: string;
  action: string;
  type: string;
  outcome: string;
  actor: {
    userId: string | null;
    role: string | null;
    organizationId: string | null;
    ip: string | null;
    userAgent: string | null;
  };
  patientId: string | null;
  entity: { type: string; id: string | null; version: number | null } | null;
  purpose: string | null;
  requestId: string | null;
  detail: Record<string, unknown> | null;
  hash: string;
  chain: string;
}

export interface AccessReportEntry {
  at: string;
  action: string;
  type: string;
  outcome: string;
  actor: { name: string | null; role: string | null; organization: string | null };
}

export function toAuditEventView(row: AuditEventRow): AuditEventView {
  const { event, hash, chain } = auditEventFromRow(row);
  return { ...event, hash, chain };
}

function checkRange(search: AuditSearch): void {
  for (const [name, value] of [
    ['from', search.from],
    ['to', search.to],
  ] as const) {
    if (value !== undefined && Number.isNaN(Date.parse(value))) {
      throw new AppError(
        'invalid',
        `${name} must be an ISO 8601 date or time, e.g. 2026-01-31T00:00:00Z.`,
      );
    }
  }
  if (
    search.from !== undefined &&
    search.to !== undefined &&
    Date.parse(search.from) >= Date.parse(search.to)
  ) {
    throw new AppError('invalid', '"from" must be earlier than "to".');
  }
}

/** ISO strings in the stored form, so comparisons against occurred_at are exact. */
function normalizedRange(search: AuditSearch): Pick<AuditFilter, 'from' | 'to'> {
  return {
    ...(search.from !== undefined ? { from: new Date(search.from).toISOString() } : {}),
    ...(search.to !== undefined ? { to: new Date(search.to).toISOString() } : {}),
  };
}

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

export function createAuditTrailService(
  deps: ServiceDeps,
  signer: AuditSigner,
  settings: AuditTrailSettings,
) {
  const { db, clock, log } = deps;

  /**
   * Signs the chain head when enough events or time have passed since the last checkpoint, but
   * only after recomputing every event since that checkpoint: a signature vouches for the events
   * it covers, so rows rewritten in between are never signed over.
   */
  async function checkpointIfDue(force = false): Promise<number | null> {
    const reader: Tx = db.read;
    const head = await auditHead(reader);
    const last = await latestCheckpoint(reader);
    if (head.seq === 0 || (last && last.seq >= head.seq)) return null;
    const now = clock.now();
    const due =
      force ||
      !last ||
      head.seq - last.seq >= settings.checkpointEveryEvents ||
      now.getTime() - Date.parse(last.createdAt) >= settings.checkpointEveryMs;
    if (!due) return null;
    if (head.seq - (last?.seq ?? 0) > 2 * settings.checkpointEveryEvents) {
      // Checkpoints are signed at least every N events: a longer unsigned stretch means some
      // were deleted. Signing now would vouch for whatever was rewritten meanwhile.
      log.fatal(
        { lastCheckpoint: last?.seq ?? 0, head: head.seq },
        'AUDIT TRAIL BROKEN: signed checkpoints are missing; not signing further',
      );
      return null;
    }
    if (last && !signer.verify(last)) {
      log.fatal(
        { seq: last.seq },
        'AUDIT TRAIL BROKEN: the latest checkpoint is not signed by this key; not signing further',
      );
      return null;
    }
    const verifier = new ChainVerifier(
      [],
      () => true,
      last ? { seq: last.seq, chain: last.chain } : { seq: 0, chain: GENESIS_CHAIN },
    );
    let chain: string | null = null;
    for await (const row of streamAuditEvents(reader, {
      afterSeq: last?.seq ?? 0,
      pageSize: 5000,
    })) {
      if (row.seq > head.seq) break;
      if (!verifier.push(auditEventFromRow(row))) break;
      chain = row.chain_hash;
    }
    const result = verifier.finish(head.seq);
    if (!result.ok || chain === null || chain !== head.chain) {
      log.fatal(
        { firstBadSequence: result.firstBadSequence, reason: result.reason },
        'AUDIT TRAIL BROKEN: not signing a checkpoint over events that do not verify',
      );
      return null;
    }
    await db.write((tx) =>
      insertCheckpoint(
        tx,
        signer.sign({ seq: head.seq, chain: head.chain, createdAt: now.toISOString() }),
      ),
    );
    return head.seq;
  }

  /**
   * Recomputes every retained event's hash and chain, from genesis or from the signed checkpoint
   * just before the first retained event (archived segments), and checks every checkpoint.
   */
  /**
   * Events are scanned up to the head read at the start, so requests committing meanwhile do not
   * look like tampering. Rows beyond the head are checked afterwards: the highest stored seq is
   * read before the head row, and a legitimate append moves both in one transaction.
   */
  async function withRowsBeyondHeadCheck(result: VerifyResult): Promise<VerifyResult> {
    if (!result.ok) return result;
    const stored = await lastAuditSeq(db.read);
    const head = await auditHead(db.read);
    if (stored <= head.seq) return result;
    return {
      ...result,
      ok: false,
      firstBadSequence: head.seq + 1,
      reason: `events after ${head.seq} were added behind the log's back`,
    };
  }

  async function verifyChain(options: { parallelFrom?: number } = {}): Promise<VerifyResult> {
    const reader: Tx = db.read;
    const checkpoints = await listCheckpoints(reader);
    const first = await firstAuditSeq(reader);
    const head = await auditHead(reader);
    let start = { seq: 0, chain: GENESIS_CHAIN };
    if (first !== null && first > 1) {
      const anchor = checkpoints.find((c) => c.seq === first - 1);
      if (!anchor || !signer.verify(anchor)) {
        return {
          ok: false,
          checked: 0,
          firstBadSequence: 1,
          reason: `events 1–${first - 1} are missing and no signed checkpoint covers their end`,
          lastGoodCheckpoint: null,
        };
      }
      start = { seq: anchor.seq, chain: anchor.chain };
    }
    const verifier = new ChainVerifier(
      checkpoints,
      (c) => signer.verify(c),
      start,
      2 * settings.checkpointEveryEvents,
    );
    const sqliteFile = db.sqliteFile;
    if (
      sqliteFile !== null &&
      head.seq - start.seq >= (options.parallelFrom ?? PARALLEL_VERIFY_FROM)
    ) {
      // Large SQLite logs: worker threads recompute event hashes by range while this thread
      // walks the chain links (seq, hash, chain); the earlier failure of the two wins.
      const content = firstAlteredEvent(sqliteFile, start.seq + 1, head.seq);
      scan: for await (const batch of scanAuditLinks(sqliteFile, start.seq, head.seq)) {
        for (const [seq, hash, chain] of batch)
          if (!verifier.pushLink(seq, hash, chain)) break scan;
      }
      return withRowsBeyondHeadCheck(withContentCheck(verifier.finish(head.seq), await content));
    }
    scan: for await (const batch of scanAuditChain(db, start.seq, head.seq)) {
      for (const event of batch) if (!verifier.push(event)) break scan;
    }
    return withRowsBeyondHeadCheck(verifier.finish(head.seq));
  }

  async function verify(ctx: RequestContext): Promise<VerifyResult> {
    return auditedRead(
      deps,
      ctx,
      { action: 'E', type: 'audit.verify', permission: 'audit.read', hideForbidden: true },
      async (record) => {
        const result = await verifyChain();
        record.detail = {
          ok: result.ok,
          checked: result.checked,
          firstBadSequence: result.firstBadSequence,
        };
        return result;
      },
    );
  }

  async function search(
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
        const rows = await searchAuditEvents(db.read, filterFor(actor.organizationId, query), {
          beforeSeq,
          limit: page.limit + 1,
        });
        const result = toPage(rows, page.limit, (r) => [String(r.seq)], toAuditEventView);
        record.detail = { count: result.items.length, filters: Object.keys(query).sort() };
        return result;
      },
    );
  }

  function filterFor(organizationId: string, query: AuditSearch): AuditFilter {
    return {
      organizationId,
      ...(query.patientId !== undefined ? { patientId: query.patientId } : {}),
      ...(query.actorId !== undefined ? { actorUserId: query.actorId } : {}),
      ...(query.action !== undefined ? { action: query.action } : {}),
      ...(query.outcome !== undefined ? { outcome: query.outcome } : {}),
      ...(query.type !== undefined ? { type: query.type } : {}),
      ...normalizedRange(query),
    };
  }

  /**
   * Starts an export: the export itself is audited (committed) before the first row leaves, then
   * rows stream page by page in constant memory.
   */
  async function exportEvents(
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
    return streamAuditEvents(db.read, { filter, pageSize: 2000 });
  }

  async function accessReport(
    ctx: RequestContext,
    patientId: string,
    page: { limit: number; cursor?: string },
  ): Promise<Page<AccessReportEntry>> {
    const beforeSeq = decodeSeqCursor(page.cursor);
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
          clock.now(),
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

  /**
   * The unusual-access rule: a user who read more than N distinct patients within M minutes
   * raises one alert per window. Runs after the read was answered; failures are logged only.
   */
  async function checkUnusualAccess(userId: string, organizationId: string): Promise<boolean> {
    const now = clock.now();
    const since = new Date(now.getTime() - settings.alertWindowMinutes * 60_000).toISOString();
    const distinct = await distinctPatientsSeen(db.read, userId, since);
    if (distinct <= settings.alertDistinctPatients) return false;
    return db
      .write(async (tx) => {
        const recent = await tx
          .selectFrom('audit_alerts')
          .select('id')
          .where('user_id', '=', userId)
          .where('rule', '=', 'many_patients')
          .where('created_at', '>=', since)
          .executeTakeFirst();
        if (recent) return false;
        const id = uuidv7(now.getTime());
        const detail = {
          distinctPatients: distinct,
          windowMinutes: settings.alertWindowMinutes,
          threshold: settings.alertDistinctPatients,
        };
        await tx
          .insertInto('audit_alerts')
          .values({
            id,
            organization_id: organizationId,
            user_id: userId,
            rule: 'many_patients',
            detail: JSON.stringify(detail),
            created_at: now.toISOString(),
          })
          .execute();
        log.warn(
          { alertId: id, organizationId, userId, rule: 'many_patients', ...detail },
          'unusual access: the organization admins are notified',
        );
        await mailAdmins(tx, now, deps.vault, organizationId, {
          subject: 'Unusual access to patient records',
          text: `A user of your organization (user id ${userId}) opened ${distinct} different patient records within ${settings.alertWindowMinutes} minutes (threshold ${settings.alertDistinctPatients}).\n\nThe alert (${id}) and the accesses are in the audit trail: ${deps.settings.publicUrl}/\n`,
        });
        return true;
      })
      .finally(() => deps.onOutbox?.());
  }

  async function listAlerts(ctx: RequestContext, page: { limit: number; cursor?: string }) {
    const beforeId = idAfter(page.cursor);
    return auditedRead(
      deps,
      ctx,
      { action: 'R', type: 'audit.alerts', permission: 'audit.read', hideForbidden: true },
      async (record) => {
        const actor = requireStaff(ctx);
        let q = db.read
          .selectFrom('audit_alerts')
          .selectAll()
          .where('organization_id', '=', actor.organizationId)
          .orderBy('id', 'desc')
          .limit(page.limit + 1);
        if (beforeId !== null) q = q.where('id', '<', beforeId);
        const rows = await q.execute();
        const result = toPage(
          rows,
          page.limit,
          (r) => [r.id],
          (r) => ({
            id: r.id,
            userId: r.user_id,
            rule: r.rule,
            detail: JSON.parse(r.detail) as Record<string, unknown>,
            createdAt: r.created_at,
          }),
        );
        record.detail = { count: result.items.length };
        return result;
      },
    );
  }

  return {
    checkpointIfDue,
    verifyChain,
    verify,
    search,
    exportEvents,
    accessReport,
    checkUnusualAccess,
    listAlerts,
    recordRefusal: (
      ctx: RequestContext,
      request: { method: string; route: string; statusCode: number },
    ) => recordRefusal(deps, ctx, request),
  };
}

export type AuditTrailService = ReturnType<typeof createAuditTrailService>;
