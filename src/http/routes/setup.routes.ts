// First-run setup: the API behind the printed one-time link (the web app's /setup page).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { Email, errorResponses, Name, Password, User } from '../schemas.js';

export const setupRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.post(
    '/api/v1/setup',
    {
      config: { public: true },
      schema: {
        body: Type.Object(
          {
            token: Type.String({ minLength: 10, maxLength: 200 }),
            organizationName: Name,
            name: Name,
            email: Email,
            password: Password,
          },
          { additionalProperties: false },
        ),
        response: { 201: User, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { token, ...rest } = request.body;
      const user = await services.setup.createAdmin(request.ctx, { ...rest, setupToken: token });
      return reply.code(201).send(user);
    },
  );
};
