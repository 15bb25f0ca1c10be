// Notification subscriptions (email or signed webhook) and their delivery status.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import {
  Delivery,
  Email,
  errorResponses,
  EventType,
  IdParams,
  Nullable,
  PageQuery,
  pageOf,
  Subscription,
} from '../schemas.js';

export const subscriptionsRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.post(
    '/api/v1/subscriptions',
    {
      schema: {
        body: Type.Object(
          {
            events: Type.Array(EventType, { minItems: 1, maxItems: 10 }),
            patientId: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 100 }))),
            email: Type.Optional(Email),
            webhookUrl: Type.Optional(Type.String({ minLength: 8, maxLength: 2000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({ ...Subscription.properties, secret: Nullable(Type.String()) }),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const { subscription, secret } = await services.subscriptions.create(
        request.ctx,
        request.body,
      );
      reply.code(201);
      return { ...subscription, secret };
    },
  );

  app.get(
    '/api/v1/subscriptions',
    {
      schema: {
        response: { 200: Type.Object({ items: Type.Array(Subscription) }), ...errorResponses },
      },
    },
    async (request) => services.subscriptions.list(request.ctx),
  );

  app.delete(
    '/api/v1/subscriptions/:id',
    { schema: { params: IdParams } },
    async (request, reply) => {
      await services.subscriptions.remove(request.ctx, request.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/subscriptions/:id/deliveries',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(Delivery), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor } = request.query;
      return services.subscriptions.deliveries(request.ctx, request.params.id, {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );
};
