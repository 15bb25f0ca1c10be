// Sign-in, sign-out, the current user and TOTP enrolment.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { clearSessionCookie, setSessionCookie } from '../session-cookie.js';
import { Email, errorResponses, IdParams, Nullable, Password, User } from '../schemas.js';

const LoginBody = Type.Object(
  { email: Email, password: Password, totp: Type.Optional(Type.String({ maxLength: 10 })) },
  { additionalProperties: false },
);

const CurrentSession = Type.Object({
  expiresAt: Type.String(),
  idleTimeoutMinutes: Type.Integer(),
  user: User,
});

export const authRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.post(
    '/api/v1/auth/login',
    {
      config: { public: true },
      schema: {
        body: LoginBody,
        response: {
          200: Type.Object({ token: Type.String(), expiresAt: Type.String(), user: User }),
          ...errorResponses,
        },
      },
    },
    async (request) => services.auth.login(request.ctx, request.body),
  );

  app.post(
    '/api/v1/auth/logout',
    { schema: { response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      await services.auth.logout(request.ctx);
      clearSessionCookie(request, reply, services.deps.settings.publicUrl);
      return reply.code(204).send(null);
    },
  );

  // The web app's sign-in: the token goes into an HttpOnly cookie and never into the page.
  app.post(
    '/api/v1/auth/session',
    {
      config: { public: true },
      schema: { body: LoginBody, response: { 200: CurrentSession, ...errorResponses } },
    },
    async (request, reply) => {
      const { token, expiresAt, user } = await services.auth.login(request.ctx, request.body);
      setSessionCookie(request, reply, services.deps.settings.publicUrl, token);
      return { expiresAt, idleTimeoutMinutes: services.auth.idleTimeoutMinutes, user };
    },
  );

  app.get(
    '/api/v1/auth/session',
    { schema: { response: { 200: CurrentSession, ...errorResponses } } },
    async (request) => services.auth.currentSession(request.ctx),
  );

  app.get(
    '/api/v1/me',
    { schema: { response: { 200: User, ...errorResponses } } },
    async (request) => services.users.me(request.ctx),
  );

  app.get(
    '/api/v1/me/sessions',
    {
      schema: {
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                id: Type.String(),
                createdAt: Type.String(),
                lastSeenAt: Type.String(),
                expiresAt: Type.String(),
                ip: Nullable(Type.String()),
                userAgent: Nullable(Type.String()),
                current: Type.Boolean(),
              }),
            ),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => ({ items: await services.auth.listSessions(request.ctx) }),
  );

  app.delete(
    '/api/v1/me/sessions/:id',
    { schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      await services.auth.revokeMySession(request.ctx, request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/me/mfa/totp',
    {
      schema: {
        response: {
          200: Type.Object({ secret: Type.String(), otpauthUrl: Type.String() }),
          ...errorResponses,
        },
      },
    },
    async (request) => services.auth.startTotpEnrolment(request.ctx),
  );

  app.post(
    '/api/v1/me/mfa/totp/verify',
    {
      schema: {
        body: Type.Object(
          { code: Type.String({ pattern: '^\\d{6}$' }), password: Password },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ enabled: Type.Boolean() }), ...errorResponses },
      },
    },
    async (request) => services.auth.verifyTotpEnrolment(request.ctx, request.body),
  );
};
