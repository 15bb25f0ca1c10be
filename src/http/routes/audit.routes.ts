// The audit trail: search, CSV export, verification, alerts, and a patient's access report.
import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuditSearch } from '../../services/audit-trail.service.js';
import type { Services } from '../../services/services.js';
import { errorResponses, IdParams, literalUnion, Nullable, pageOf, PageQuery } from '../schemas.js';

const Timestamp = Type.String({ minLength: 4, maxLength: 40 });
const Filters = {
  patientId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  actorId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  action: Type.Optional(literalUnion(['C', 'R', 'U', 'D', 'E'] as const)),
  outcome: Type.Optional(literalUnion(['success', 'failure', 'denied', 'error'] as const)),
  type: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  from: Type.Optional(Timestamp),
  to: Type.Optional(Timestamp),
};

const AuditEventView = Type.Object({
  seq: Type.Integer(),
  id: Type.String(),
  occurredAt: Type.String(),
  action: Type.String(),
  type: Type.String(),
  outcome: Type.String(),
  actor: Type.Object({
    userId: Nullable(Type.String()),
    role: Nullable(Type.String()),
    organizationId: Nullable(Type.String()),
    ip: Nullable(Type.String()),
    userAgent: Nullable(Type.String()),
  }),
  patientId: Nullable(Type.String()),
  entity: Nullable(
    Type.Object({
      type: Type.String(),
      id: Nullable(Type.String()),
      version: Nullable(Type.Integer()),
    }),
  ),
  purpose: Nullable(Type.String()),
  requestId: Nullable(Type.String()),
  detail: Nullable(Type.Record(Type.String(), Type.Unknown())),
  hash: Type.String(),
  chain: Type.String(),
});

const VerifyResult = Type.Object({
  ok: Type.Boolean(),
  checked: Type.Integer(),
  firstBadSequence: Nullable(Type.Integer()),
  reason: Nullable(Type.String()),
  lastGoodCheckpoint: Nullable(Type.Integer()),
  // PostgreSQL: events committed but not yet sealed into the chain when verification ended.
  unsealed: Type.Optional(
    Type.Object({ count: Type.Integer(), oldestAt: Nullable(Type.String()) }),
  ),
});

const AccessReportEntry = Type.Object({
  at: Type.String(),
  action: Type.String(),
  type: Type.String(),
  outcome: Type.String(),
  actor: Type.Object({
    name: Nullable(Type.String()),
    role: Nullable(Type.String()),
    organization: Nullable(Type.String()),
  }),
});

const Alert = Type.Object({
  id: Type.String(),
  userId: Type.String(),
  rule: Type.String(),
  detail: Type.Record(Type.String(), Type.Unknown()),
  createdAt: Type.String(),
});

function searchOf(query: Record<string, unknown>): AuditSearch {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(Filters)) if (query[key] !== undefined) out[key] = query[key];
  return out;
}

export const auditRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.get(
    '/api/v1/audit',
    {
      schema: {
        querystring: Type.Object({ ...Filters, ...PageQuery }, { additionalProperties: false }),
        response: { 200: pageOf(AuditEventView), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor } = request.query;
      return services.auditTrail.search(request.ctx, searchOf(request.query), {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );

  app.get(
    '/api/v1/audit/export.csv',
    {
      schema: {
        querystring: Type.Object(Filters, { additionalProperties: false }),
        // 200 is a CSV stream, not JSON: no schema to serialize it with.
        response: { 200: Type.Unknown(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const csv = await services.auditTrail.exportCsv(request.ctx, searchOf(request.query));
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', 'attachment; filename="caretrail-audit.csv"')
        .send(Readable.from(csv));
    },
  );

  app.get(
    '/api/v1/audit/verify',
    { schema: { response: { 200: VerifyResult, ...errorResponses } } },
    async (request) => services.auditTrail.verify(request.ctx),
  );

  app.get(
    '/api/v1/audit/alerts',
    {
      schema: {
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(Alert), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor } = request.query;
      return services.auditTrail.listAlerts(request.ctx, {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );

  app.get(
    '/api/v1/patients/:id/access-report',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(AccessReportEntry), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor } = request.query;
      return services.auditTrail.accessReport(request.ctx, request.params.id, {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );
};
