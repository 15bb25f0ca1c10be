// Care-team sharing: shares and invitations, owner consents, break-glass, and "my patients".
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { createOnce, pageParams, type ReplayAudit } from '../request-helpers.js';
import type {
  Consent as ConsentDto,
  CreatedShare as CreatedShareDto,
} from '../../services/sharing.service.js';
import { CONSENT_METHODS } from '../../services/sharing.service.js';
import {
  Email,
  errorResponses,
  IdParams,
  literalUnion,
  Name,
  Nullable,
  pageOf,
  PageQuery,
  Password,
  Patient,
  ShareAccess,
  ShareRole,
  User,
} from '../schemas.js';

const Time = Type.String({ minLength: 10, maxLength: 40 });

const Share = Type.Object({
  id: Type.String(),
  patientId: Type.String(),
  email: Type.String(),
  role: ShareRole,
  access: ShareAccess,
  expiresAt: Nullable(Type.String()),
  consentId: Nullable(Type.String()),
  status: literalUnion(['active', 'pending', 'expired', 'revoked'] as const),
  createdAt: Type.String(),
  createdBy: Type.String(),
  revokedAt: Nullable(Type.String()),
});

const CreatedShare = Type.Intersect([
  Share,
  Type.Object({
    invitation: Nullable(Type.Object({ expiresAt: Type.String() })),
  }),
]);

const ConsentMethod = literalUnion(CONSENT_METHODS);

const Consent = Type.Object({
  id: Type.String(),
  patientId: Type.String(),
  granteeEmail: Type.String(),
  purpose: Type.String(),
  scope: ShareAccess,
  method: ConsentMethod,
  consentedBy: Type.Object({ ownerId: Nullable(Type.String()), userId: Nullable(Type.String()) }),
  documentId: Nullable(Type.String()),
  recordedBy: Type.String(),
  createdAt: Type.String(),
  expiresAt: Nullable(Type.String()),
  revokedAt: Nullable(Type.String()),
  revokedBy: Nullable(Type.String()),
  status: literalUnion(['active', 'expired', 'revoked'] as const),
  version: Type.Integer(),
});

const ConsentWithHistory = Type.Intersect([
  Consent,
  Type.Object({
    history: Type.Array(
      Type.Object({
        version: Type.Integer(),
        change: Type.String(),
        actorId: Type.String(),
        at: Type.String(),
      }),
    ),
  }),
]);

const ListQuery = Type.Object(PageQuery, { additionalProperties: false });

// A share's answer holds no secret (the invitation link goes only by mail), so it can be
// stored for replays.
const SHARE_REPLAY: ReplayAudit<CreatedShareDto> = {
  type: 'share.create',
  requires: { capability: 'shares.manage' },
  entityType: 'Share',
  patientIdOf: (s) => s.patientId,
};

const CONSENT_REPLAY: ReplayAudit<ConsentDto> = {
  type: 'consent.create',
  requires: { capability: 'consents.read' },
  entityType: 'Consent',
  patientIdOf: (c) => c.patientId,
};

export const sharingRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  const { sharing } = services;

  app.post(
    '/api/v1/patients/:id/shares',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          { email: Email, role: ShareRole, access: ShareAccess, expiresAt: Type.Optional(Time) },
          { additionalProperties: false },
        ),
        response: { 201: CreatedShare, ...errorResponses },
      },
    },
    async (request, reply) =>
      createOnce(services, request, reply, SHARE_REPLAY, (ctx) =>
        sharing.create(ctx, request.params.id, request.body),
      ),
  );

  app.get(
    '/api/v1/patients/:id/shares',
    {
      schema: {
        params: IdParams,
        querystring: ListQuery,
        response: { 200: pageOf(Share), ...errorResponses },
      },
    },
    async (request) => sharing.list(request.ctx, request.params.id, pageParams(request.query)),
  );

  app.delete(
    '/api/v1/patients/:id/shares/:shareId',
    {
      schema: {
        params: Type.Object(
          {
            id: Type.String({ minLength: 1, maxLength: 100 }),
            shareId: Type.String({ minLength: 1, maxLength: 100 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Share, ...errorResponses },
      },
    },
    async (request) => sharing.revoke(request.ctx, request.params.id, request.params.shareId),
  );

  app.post(
    '/api/v1/invitations/:token/accept',
    {
      config: { public: true, secretInUrl: true },
      schema: {
        params: Type.Object(
          { token: Type.String({ minLength: 10, maxLength: 200 }) },
          { additionalProperties: false },
        ),
        body: Type.Object({ name: Name, password: Password }, { additionalProperties: false }),
        response: { 200: User, ...errorResponses },
      },
    },
    async (request) => sharing.acceptInvitation(request.ctx, request.params.token, request.body),
  );

  app.post(
    '/api/v1/patients/:id/consents',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          {
            granteeEmail: Email,
            purpose: Type.String({ minLength: 1, maxLength: 500 }),
            scope: ShareAccess,
            method: ConsentMethod,
            expiresAt: Type.Optional(Time),
            ownerId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
            documentId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: Consent, ...errorResponses },
      },
    },
    async (request, reply) =>
      createOnce(services, request, reply, CONSENT_REPLAY, (ctx) =>
        sharing.recordConsent(ctx, request.params.id, request.body),
      ),
  );

  app.get(
    '/api/v1/patients/:id/consents',
    {
      schema: {
        params: IdParams,
        querystring: ListQuery,
        response: { 200: pageOf(Consent), ...errorResponses },
      },
    },
    async (request) =>
      sharing.listConsents(request.ctx, request.params.id, pageParams(request.query)),
  );

  app.get(
    '/api/v1/consents/:id',
    { schema: { params: IdParams, response: { 200: ConsentWithHistory, ...errorResponses } } },
    async (request) => sharing.getConsent(request.ctx, request.params.id),
  );

  app.post(
    '/api/v1/consents/:id/revoke',
    { schema: { params: IdParams, response: { 200: Consent, ...errorResponses } } },
    async (request) => sharing.revokeConsent(request.ctx, request.params.id),
  );

  app.post(
    '/api/v1/patients/:id/break-glass',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          { reason: Type.String({ minLength: 1, maxLength: 1000 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            id: Type.String(),
            patientId: Type.String(),
            expiresAt: Type.String(),
            access: Type.Object({
              via: Type.String(),
              role: Type.String(),
              write: Type.Boolean(),
              expiresAt: Nullable(Type.String()),
            }),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => sharing.breakGlass(request.ctx, request.params.id, request.body),
  );

  app.get(
    '/api/v1/me/patients',
    { schema: { querystring: ListQuery, response: { 200: pageOf(Patient), ...errorResponses } } },
    async (request) => services.patients.listShared(request.ctx, pageParams(request.query)),
  );
};
