// Staff accounts (admin only).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import type { User as UserDto } from '../../services/user.service.js';
import { createOnce, type ReplayAudit } from '../request-helpers.js';
import {
  Email,
  errorResponses,
  IdParams,
  Name,
  pageOf,
  PageQuery,
  Password,
  Role,
  User,
} from '../schemas.js';

const USER_REPLAY: ReplayAudit<UserDto> = {
  type: 'user.create',
  requires: { permission: 'users.manage' },
  entityType: 'User',
  patientIdOf: () => null,
};

export const usersRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.post(
    '/api/v1/users',
    {
      schema: {
        body: Type.Object(
          { email: Email, name: Name, role: Role, password: Password },
          { additionalProperties: false },
        ),
        response: { 201: User, ...errorResponses },
      },
    },
    async (request, reply) =>
      createOnce(services, request, reply, USER_REPLAY, (ctx) =>
        services.users.create(ctx, request.body),
      ),
  );

  app.get(
    '/api/v1/users',
    {
      schema: {
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(User), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor } = request.query;
      return services.users.list(request.ctx, {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );

  app.patch(
    '/api/v1/users/:id',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          {
            role: Type.Optional(Role),
            disabled: Type.Optional(Type.Boolean()),
            name: Type.Optional(Name),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: User, ...errorResponses },
      },
    },
    async (request) => services.users.update(request.ctx, request.params.id, request.body),
  );

  app.post(
    '/api/v1/users/:id/logout',
    {
      schema: {
        params: IdParams,
        response: { 200: Type.Object({ sessionsEnded: Type.Integer() }), ...errorResponses },
      },
    },
    async (request) => services.users.forceLogout(request.ctx, request.params.id),
  );
};
