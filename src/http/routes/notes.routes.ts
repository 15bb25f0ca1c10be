// Notes: drafts, finalization, addenda and history.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { AppError } from '../../domain/errors.js';
import type { Services } from '../../services/services.js';
import type { Note as NoteDto } from '../../services/note.service.js';
import {
  createOnce,
  optionalVersion,
  requiredVersion,
  type ReplayAudit,
} from '../request-helpers.js';
import {
  Addendum,
  errorResponses,
  IdParams,
  Note,
  NoteBody,
  NoteCreate,
  NotePatch,
  NoteRevision,
  pageOf,
  PageQuery,
} from '../schemas.js';

const NOTE_CREATE_REPLAY: ReplayAudit<NoteDto> = {
  type: 'note.create',
  requires: { capability: 'notes.read' },
  entityType: 'Note',
  patientIdOf: (n) => n.patientId,
};
const ADDENDUM_REPLAY: ReplayAudit<NoteDto> = {
  type: 'note.addendum',
  requires: { capability: 'notes.read' },
  entityType: 'Note',
  patientIdOf: (n) => n.patientId,
};

/** `{}` or `{ at: "<ISO time>" }`, or no body at all. */
function releaseBody(body: unknown): { at?: string } {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw new AppError('invalid', 'The body must be a JSON object like {"at": "<ISO time>"}.');
  const { at, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined)
    throw new AppError('invalid', `body has an unknown field "${unknown.slice(0, 64)}".`);
  if (at === undefined) return {};
  if (typeof at !== 'string' || at.length > 40)
    throw new AppError('invalid', 'at must be a date and time (ISO 8601).');
  return { at };
}

export const notesRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.post(
    '/api/v1/patients/:id/notes',
    { schema: { params: IdParams, body: NoteCreate, response: { 201: Note, ...errorResponses } } },
    async (request, reply) => {
      const note = await createOnce(services, request, reply, NOTE_CREATE_REPLAY, (ctx) =>
        services.notes.create(ctx, request.params.id, request.body),
      );
      reply.header('etag', `"${note.version}"`);
      return note;
    },
  );

  app.get(
    '/api/v1/patients/:id/notes',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(Note), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor } = request.query;
      return services.notes.list(request.ctx, request.params.id, {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
    },
  );

  app.get(
    '/api/v1/notes/:id',
    { schema: { params: IdParams, response: { 200: Note, ...errorResponses } } },
    async (request, reply) => {
      const note = await services.notes.get(request.ctx, request.params.id);
      reply.header('etag', `"${note.version}"`);
      return note;
    },
  );

  app.patch(
    '/api/v1/notes/:id',
    { schema: { params: IdParams, body: NotePatch, response: { 200: Note, ...errorResponses } } },
    async (request, reply) => {
      const note = await services.notes.update(
        request.ctx,
        request.params.id,
        requiredVersion(request),
        request.body,
      );
      reply.header('etag', `"${note.version}"`);
      return note;
    },
  );

  app.post(
    '/api/v1/notes/:id/finalize',
    { schema: { params: IdParams, response: { 200: Note, ...errorResponses } } },
    async (request, reply) => {
      const note = await services.notes.finalize(
        request.ctx,
        request.params.id,
        optionalVersion(request),
      );
      reply.header('etag', `"${note.version}"`);
      return note;
    },
  );

  app.post(
    '/api/v1/notes/:id/addenda',
    {
      schema: {
        params: IdParams,
        body: Type.Object({ body: NoteBody }, { additionalProperties: false }),
        response: { 201: Note, ...errorResponses },
      },
    },
    async (request, reply) =>
      createOnce(services, request, reply, ADDENDUM_REPLAY, (ctx) =>
        services.notes.addAddendum(ctx, request.params.id, request.body),
      ),
  );

  app.post(
    '/api/v1/notes/:id/release',
    { schema: { params: IdParams, response: { 200: Note, ...errorResponses } } },
    async (request, reply) => {
      // The body is optional (a bare POST releases now, or after the clinic's delay), which a
      // body schema cannot say; it is checked here instead.
      const note = await services.notes.release(
        request.ctx,
        request.params.id,
        releaseBody(request.body),
      );
      reply.header('etag', `"${note.version}"`);
      return note;
    },
  );

  app.post(
    '/api/v1/notes/:id/addenda/:addendumId/release',
    {
      schema: {
        params: Type.Object(
          { id: IdParams.properties.id, addendumId: IdParams.properties.id },
          { additionalProperties: false },
        ),
        response: { 200: Note, ...errorResponses },
      },
    },
    async (request, reply) => {
      // The body is optional, as for a note's release.
      const note = await services.notes.releaseAddendum(
        request.ctx,
        request.params.id,
        request.params.addendumId,
        releaseBody(request.body),
      );
      reply.header('etag', `"${note.version}"`);
      return note;
    },
  );

  app.get(
    '/api/v1/notes/:id/history',
    {
      schema: {
        params: IdParams,
        response: {
          200: Type.Object({ items: Type.Array(NoteRevision), addenda: Type.Array(Addendum) }),
          ...errorResponses,
        },
      },
    },
    async (request) => services.notes.history(request.ctx, request.params.id),
  );
};
