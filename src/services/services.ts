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

export function createServices(
  deps: ServiceDeps,
  audit: { signer: AuditSigner; settings: AuditTrailSettings },
) {
  const auditTrail = createAuditTrailService(deps, audit.signer, audit.settings);
  // The unusual-access rule runs after each committed patient read, off the request's path.
  deps.onPatientRead = (ctx, _patientId) => {
    const actor = ctx.actor;
    if (!actor) return;
    auditTrail.checkUnusualAccess(actor.userId, actor.organizationId).catch((err: unknown) => {
      deps.log.error({ err }, 'unusual-access check failed');
    });
  };
  return {
    deps,
    auditTrail,
    auth: createAuthService(deps),
    users: createUserService(deps),
    setup: createSetupService(deps),
    patients: createPatientService(deps),
    notes: createNoteService(deps),
    idempotency: createIdempotencyService(deps),
  };
}

export type Services = ReturnType<typeof createServices>;
