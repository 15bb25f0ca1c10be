// The Backups page's figures (admins): replication per part, the last drill, warnings.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { errorResponses, literalUnion, Nullable } from '../schemas.js';

const ReplicaPart = Type.Object({
  state: literalUnion(['ok', 'behind', 'unreachable'] as const),
  lagSeconds: Type.Number(),
  lastError: Nullable(Type.String()),
  /** What the part reports besides (generation, last shipped, last snapshot, retention…). */
  details: Type.Record(Type.String(), Type.Unknown()),
});

const Counts = Type.Object({ notes: Type.Integer(), documents: Type.Integer() });

/** `DrillResult` of src/replication/drill.ts. */
const Drill = Type.Object({
  engine: literalUnion(['sqlite', 'postgres'] as const),
  replica: Type.String(),
  mode: literalUnion(['async', 'sync'] as const),
  startedAt: Type.String(),
  loadSeconds: Type.Number(),
  acknowledged: Counts,
  missing: Counts,
  rpoSeconds: Type.Number(),
  rtoSeconds: Type.Number(),
  restoreSeconds: Type.Number(),
  restoredTo: Nullable(Type.String()),
  audit: Type.Object({ ok: Type.Boolean(), message: Type.String() }),
  files: Type.Object({ checked: Type.Integer(), ok: Type.Integer(), bad: Type.Integer() }),
  objectives: Type.Object({ rpoSeconds: Type.Number(), rtoSeconds: Type.Number() }),
  passed: Type.Boolean(),
  problems: Type.Array(Type.String()),
});

const BackupsStatus = Type.Object({
  replication: literalUnion(['off', 'ok', 'degraded'] as const),
  parts: Type.Record(Type.String(), ReplicaPart),
  lastDrill: Nullable(Drill),
  warnings: Type.Array(Type.String()),
});

export const backupsRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.get(
    '/api/v1/admin/backups',
    { schema: { response: { 200: BackupsStatus, ...errorResponses } } },
    async (request) => services.backups.status(request.ctx),
  );
};
