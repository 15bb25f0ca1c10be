// Wires every use case once, with plain functions and objects.
import { createAuthService } from './auth.service.js';
import type { ServiceDeps } from './deps.js';
import { createIdempotencyService } from './idempotency.service.js';
import { createNoteService } from './note.service.js';
import { createPatientService } from './patient.service.js';
import { createSetupService } from './setup.service.js';
import { createUserService } from './user.service.js';

export function createServices(deps: ServiceDeps) {
  return {
    deps,
    auth: createAuthService(deps),
    users: createUserService(deps),
    setup: createSetupService(deps),
    patients: createPatientService(deps),
    notes: createNoteService(deps),
    idempotency: createIdempotencyService(deps),
  };
}

export type Services = ReturnType<typeof createServices>;
