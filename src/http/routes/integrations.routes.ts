// Integration credentials (admin): API keys for devices and lab systems, shown once.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { pageParams } from '../request-helpers.js';
import { errorResponses, IdParams, Name, Nullable, pageOf, PageQuery } from '../schemas.js';

const IntegrationKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String(),
  createdBy: Type.String(),
  lastUsedAt: Nullable(Type.String()),
  revokedAt: Nullable(Type.String()),
});

export const integrationsRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  const keys = services.integrationKeys;

  app.post(
    '/api/v1/integrations/keys',
    {
      schema: {
        body: Type.Object({ name: Name }, { additionalProperties: false }),
        response: {
          201: Type.Intersect([
            IntegrationKey,
            Type.Object({ key: Type.String(), secret: Type.String() }),
          ]),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => reply.code(201).send(await keys.create(request.ctx, request.body)),
  );

  app.get(
    '/api/v1/integrations/keys',
    {
      schema: {
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(IntegrationKey), ...errorResponses },
      },
    },
    async (request) => keys.list(request.ctx, pageParams(request.query)),
  );

  app.delete(
    '/api/v1/integrations/keys/:id',
    { schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      await keys.revoke(request.ctx, request.params.id);
      return reply.code(204).send(null);
    },
  );
};
