// Patients and their owners.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import type { Patient as PatientDto } from '../../services/patient.service.js';
import { createOnce, requiredVersion, type ReplayAudit } from '../request-helpers.js';
import {
  errorResponses,
  IdParams,
  pageOf,
  PageQuery,
  Patient,
  PatientCreate,
  PatientPatch,
} from '../schemas.js';

const PATIENT_REPLAY: ReplayAudit<PatientDto> = {
  type: 'patient.create',
  requires: { capability: 'patient.read' },
  entityType: 'Patient',
  patientIdOf: (p) => p.id,
};

export const patientsRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.post(
    '/api/v1/patients',
    { schema: { body: PatientCreate, response: { 201: Patient, ...errorResponses } } },
    async (request, reply) => {
      const result = await createOnce(services, request, reply, PATIENT_REPLAY, (ctx) =>
        services.patients.create(ctx, request.body),
      );
      reply.header('etag', `"${result.version}"`);
      return result;
    },
  );

  app.get(
    '/api/v1/patients',
    {
      schema: {
        querystring: Type.Object(
          {
            q: Type.Optional(Type.String({ maxLength: 200 })),
            identifier: Type.Optional(Type.String({ minLength: 3, maxLength: 200 })),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: pageOf(Patient), ...errorResponses },
      },
    },
    async (request) => {
      const { q, identifier, limit = 50, cursor } = request.query;
      return services.patients.search(request.ctx, {
        limit,
        ...(q !== undefined ? { q } : {}),
        ...(identifier !== undefined ? { identifier } : {}),
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );

  app.get(
    '/api/v1/patients/:id',
    { schema: { params: IdParams, response: { 200: Patient, ...errorResponses } } },
    async (request, reply) => {
      const patient = await services.patients.get(request.ctx, request.params.id);
      reply.header('etag', `"${patient.version}"`);
      return patient;
    },
  );

  app.patch(
    '/api/v1/patients/:id',
    {
      schema: {
        params: IdParams,
        body: PatientPatch,
        response: { 200: Patient, ...errorResponses },
      },
    },
    async (request, reply) => {
      const patient = await services.patients.update(
        request.ctx,
        request.params.id,
        requiredVersion(request),
        request.body,
      );
      reply.header('etag', `"${patient.version}"`);
      return patient;
    },
  );
};
