// Wires every use case once, with plain functions and objects.
import type { AuditSigner } from '../audit-signing-key.js';
import { createAuditTrailService, type AuditTrailSettings } from './audit-trail.service.js';
import { createAuthService } from './auth.service.js';
import type { ServiceDeps } from './deps.js';
import { createIdempotencyService } from './idempotency.service.js';
import { createNoteService } from './note.service.js';
import { createPatientService } from './patient.service.js';
import { createSetupService } from './setup.service.js';
import { createUserService } from './user.service.js';
import { createDocumentService } from './document.service.js';
import { createSubscriptionService } from './subscription.service.js';
import { createSharingService } from './sharing.service.js';
import { createIntegrationKeyService } from './integration-key.service.js';
import { createResultService } from './result.service.js';
import { createBackupsService } from '../replication/backups.service.js';

/** How often one user's recent reads are counted for the unusual-access rule. */
export const ALERT_CHECK_INTERVAL_MS = 2000;

export function createServices(
  deps: ServiceDeps,
  audit: { signer: AuditSigner; settings: AuditTrailSettings },
) {
  const auditTrail = createAuditTrailService(deps, audit.signer, audit.settings);
  // The unusual-access rule runs after committed patient reads, off the request's path, at most
  // once per user every few seconds (it counts from the database, so all instances agree).
  const lastCheck = new Map<string, number>();
  const pending = new Set<string>();
  const check = (userId: string, organizationId: string) => {
    lastCheck.set(userId, Date.now());
    auditTrail.checkUnusualAccess(userId, organizationId).catch((err: unknown) => {
      deps.log.error({ err }, 'unusual-access check failed');
    });
  };
  deps.onPatientRead = (ctx) => {
    const actor = ctx.actor;
    // The rule watches staff; people outside an organization reach only patients shared with them.
    if (!actor || actor.organizationId === null || actor.kind !== 'user') return;
    const organizationId = actor.organizationId;
    const wait = (lastCheck.get(actor.userId) ?? 0) + ALERT_CHECK_INTERVAL_MS - Date.now();
    if (wait <= 0) {
      check(actor.userId, organizationId);
      return;
    }
    // Reads in between are counted by one trailing check at the end of the interval.
    if (pending.has(actor.userId)) return;
    pending.add(actor.userId);
    setTimeout(() => {
      pending.delete(actor.userId);
      check(actor.userId, organizationId);
    }, wait).unref();
    if (lastCheck.size > 10_000) lastCheck.clear();
  };
  const integrationKeys = createIntegrationKeyService(deps);
  const documents = createDocumentService(deps);
  return {
    deps,
    auditTrail,
    auth: createAuthService(deps),
    users: createUserService(deps),
    setup: createSetupService(deps),
    patients: createPatientService(deps),
    notes: createNoteService(deps),
    documents,
    subscriptions: createSubscriptionService(deps),
    sharing: createSharingService(deps),
    integrationKeys,
    results: createResultService(deps, integrationKeys.secretOf, documents),
    idempotency: createIdempotencyService(deps),
    backups: createBackupsService(deps),
  };
}

export type Services = ReturnType<typeof createServices>;
