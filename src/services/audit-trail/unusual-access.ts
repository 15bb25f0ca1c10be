// The unusual-access rule and the alerts it raises.
import { uuidv7 } from '../../domain/ids.js';
import { distinctPatientsSeen } from '../../store/audit.store.js';
import { auditedRead } from '../audit.service.js';
import { requireStaff, type RequestContext } from '../context.js';
import { mailAdmins } from '../mail.js';
import { idAfter, toPage } from '../pagination.js';
import type { ServiceDeps } from '../deps.js';
import type { AuditTrailDeps } from './model.js';
import { awaitAuditSealed } from '../../audit-sealing/index.js';

/**
 * The unusual-access rule: a user who read more than N distinct patients within M minutes
 * raises one alert per window. Runs after the read was answered; failures are logged only.
 */
export async function checkUnusualAccess(
  { deps, settings }: AuditTrailDeps,
  userId: string,
  organizationId: string,
): Promise<boolean> {
  const { db, clock, log } = deps;
  const now = clock.now();
  const since = new Date(now.getTime() - settings.alertWindowMinutes * 60_000).toISOString();
  // The read that triggered this check counts (src/audit-sealing/).
  await awaitAuditSealed(deps);
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

export async function listAlerts(
  deps: ServiceDeps,
  ctx: RequestContext,
  page: { limit: number; cursor?: string },
) {
  const beforeId = idAfter(page.cursor);
  return auditedRead(
    deps,
    ctx,
    { action: 'R', type: 'audit.alerts', permission: 'audit.read', hideForbidden: true },
    async (record) => {
      const actor = requireStaff(ctx);
      let q = deps.db.read
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
