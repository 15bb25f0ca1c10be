// Integration credentials (admin): API keys for devices and lab systems, shown once.
import type {
  FastifyPluginAsyncTypebox,
  TypeBoxTypeProvider,
} from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { createOnce, pageParams, type ReplayAudit } from '../request-helpers.js';
import { AppError } from '../../domain/errors.js';
import { RESULT_KINDS } from '../../domain/result.js';
import type { IngestAnswer as IngestAnswerDto } from '../../services/result.service.js';
import { readHl7Body, type Hl7Body } from '../../integrations/hl7-http-body.js';
import { createHl7Receiver } from '../../integrations/hl7-receiver.js';
import { ackFor } from '../../integrations/hl7-results.js';
import multipart from '@fastify/multipart';
import { uploadError } from './documents.routes.js';

/** DICOM files taken in one request (one study's images). */
const MAX_DICOM_FILES = 50;
import {
  errorResponses,
  IdParams,
  literalUnion,
  Name,
  Nullable,
  pageOf,
  PageQuery,
  ResultObservation,
} from '../schemas.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The body as received, on routes that keep it. */
    rawBody: string;
  }
}

const IngestAnswer = Type.Object({
  id: Type.String(),
  status: literalUnion(['matched', 'unmatched', 'discarded'] as const),
  version: Type.Integer(),
  duplicate: Type.Boolean(),
});

/** What a source may say about the animal besides identifiers (for the fallback match). */
const DemographicsFields = {
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  species: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  ownerSurname: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  birthDate: Type.Optional(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' })),
};

const UnmatchedResult = Type.Object({
  id: Type.String(),
  source: Type.String(),
  kind: Type.String(),
  receivedAt: Type.String(),
  identifiers: Type.Array(Type.Object({ system: Type.String(), value: Type.String() })),
  patient: Type.Object(DemographicsFields),
  observations: Type.Array(ResultObservation),
  abnormal: Type.Boolean(),
  version: Type.Integer(),
});

const RESULT_REPLAY: ReplayAudit<IngestAnswerDto> = {
  type: 'result.receive',
  requires: { integration: true },
  entityType: 'Result',
  patientIdOf: () => null,
};

const IntegrationKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String(),
  createdBy: Type.String(),
  lastUsedAt: Nullable(Type.String()),
  revokedAt: Nullable(Type.String()),
});

export const integrationsRoutes: FastifyPluginAsyncTypebox<{
  services: Services;
  maxUploadBytes: number;
}> = async (app, { services, maxUploadBytes }) => {
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

  // Device results: the raw body is kept (signature check, the original kept with the result).
  await app.register(async (ingest) => {
    ingest.decorateRequest('rawBody', '');
    ingest.removeContentTypeParser('application/json');
    ingest.addContentTypeParser(
      'application/json',
      // Results may carry files (PDF reports), base64 in the body.
      { parseAs: 'string', bodyLimit: services.deps.settings.resultMaxBytes },
      (request, body, done) => {
        const text = body as string;
        request.rawBody = text;
        try {
          done(null, JSON.parse(text));
        } catch {
          done(new AppError('invalid', 'The body is not valid JSON.'), undefined);
        }
      },
    );
    ingest.withTypeProvider<TypeBoxTypeProvider>().post(
      '/api/v1/integrations/results',
      {
        schema: {
          headers: Type.Object({
            'x-caretrail-signature': Type.Optional(
              Type.String({ pattern: '^sha256=[0-9a-fA-F]{64}$' }),
            ),
            'idempotency-key': Type.Optional(Type.String({ maxLength: 255 })),
          }),
          body: Type.Object(
            {
              patient: Type.Object(
                {
                  identifier: Type.Optional(
                    Type.Object(
                      {
                        system: Type.String({ minLength: 1, maxLength: 40 }),
                        value: Type.String({ minLength: 1, maxLength: 64 }),
                      },
                      { additionalProperties: false },
                    ),
                  ),
                  ...DemographicsFields,
                },
                { additionalProperties: false },
              ),
              source: Type.String({ minLength: 1, maxLength: 100 }),
              kind: literalUnion(RESULT_KINDS),
              resultId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
              observations: Type.Array(ResultObservation, { minItems: 1, maxItems: 500 }),
              attachments: Type.Optional(
                Type.Array(
                  Type.Object(
                    {
                      filename: Type.String({ minLength: 1, maxLength: 200 }),
                      /** Ignored: the type is read from the bytes. */
                      contentType: Type.Optional(Type.String({ maxLength: 100 })),
                      data: Type.String({ minLength: 4, pattern: '^[A-Za-z0-9+/\\r\\n]+={0,2}$' }),
                    },
                    { additionalProperties: false },
                  ),
                  { maxItems: 10 },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          response: { 201: IngestAnswer, ...errorResponses },
        },
      },
      async (request, reply) => {
        // The signature first, so that even a replay needs the right one.
        await services.results.checkSignature(
          request.ctx,
          request.rawBody,
          request.headers['x-caretrail-signature'],
        );
        const { attachments, ...result } = request.body;
        const input = {
          ...result,
          ...(attachments
            ? {
                attachments: attachments.map((a) => ({
                  filename: a.filename,
                  data: Buffer.from(a.data, 'base64'),
                })),
              }
            : {}),
        };
        return createOnce(services, request, reply, RESULT_REPLAY, (ctx) =>
          services.results.ingest(ctx, input, {
            body: request.rawBody,
            contentType: 'application/json',
          }),
        );
      },
    );
  });

  // HL7 v2 over HTTP: the body is one message, the answer its ACK (AA only once stored).
  await app.register(async (hl7) => {
    hl7.removeAllContentTypeParsers();
    // A message over CARETRAIL_RESULT_MAX_BYTES is answered with an AE ACK, not a JSON 413:
    // the sender speaks HL7. Only its head is kept in memory (see readHl7Body).
    const maxBytes = services.deps.settings.resultMaxBytes;
    hl7.addContentTypeParser(
      ['text/plain', 'x-application/hl7-v2+er7', 'application/hl7-v2'],
      (_request, payload, done) => {
        readHl7Body(payload, maxBytes).then(
          (body) => {
            done(null, body);
          },
          (err: unknown) => {
            done(err instanceof Error ? err : new Error(String(err)));
          },
        );
      },
    );
    // The answer is an HL7 ACK (text), not JSON: no response schema; errors before the message
    // is read (no key, wrong type) keep the JSON error shape.
    const receiver = createHl7Receiver(services);
    hl7.post('/api/v1/integrations/hl7v2', async (request, reply) => {
      if (!request.ctx.actor || request.ctx.actor.kind !== 'integration')
        throw new AppError('not_found', 'Not found.');
      const body = request.body as Hl7Body | undefined;
      if (body?.kind === 'oversize') {
        const reason = `The message is larger than ${maxBytes} bytes.`;
        return reply
          .code(413)
          .header('content-type', 'x-application/hl7-v2+er7')
          .send(ackFor(body.head, 'AE', reason, '207', services.deps.clock.now()));
      }
      const { code, ack } = await receiver.receive(request.ctx, body?.text ?? '');
      return reply
        .code(code === 'AA' ? 200 : code === 'AR' ? 400 : 422)
        .header('content-type', 'x-application/hl7-v2+er7')
        .send(ack);
    });
  });

  // DICOM from imaging devices: one file as application/dicom, or several as multipart parts.
  await app.register(async (dicom) => {
    dicom.removeAllContentTypeParsers();
    await dicom.register(multipart, {
      limits: {
        fileSize: maxUploadBytes + 1,
        files: MAX_DICOM_FILES,
        fields: 0,
        parts: MAX_DICOM_FILES,
        headerPairs: 50,
      },
      throwFileSizeLimit: true,
    });
    dicom.addContentTypeParser('application/dicom', (_request, _payload, done) => {
      done(null);
    });
    dicom.withTypeProvider<TypeBoxTypeProvider>().post(
      '/api/v1/integrations/dicom',
      {
        schema: {
          response: {
            201: Type.Object({
              items: Type.Array(
                Type.Intersect([IngestAnswer, Type.Object({ sopInstanceUid: Type.String() })]),
              ),
            }),
            ...errorResponses,
          },
        },
      },
      async (request, reply) => {
        const items = await services.results.ingestDicom(request.ctx, async (onFile) => {
          try {
            if (!request.isMultipart()) {
              await onFile({
                stream: request.raw,
                filename: undefined,
                declaredType: 'application/dicom',
              });
              return;
            }
            for await (const part of request.parts()) {
              if (part.type !== 'file')
                throw new AppError('invalid', 'Send DICOM files only, one per part.');
              // The reader gave up on this part (a limit was hit before it): the next step of the
              // loop throws why. Reading it would wait for an end that never comes.
              if (part.file.destroyed) continue;
              await onFile({
                stream: part.file,
                filename: part.filename,
                declaredType: part.mimetype,
              });
              if (part.file.truncated)
                throw new AppError(
                  'payload_too_large',
                  `A file is larger than the limit of ${maxUploadBytes} bytes; nothing was stored.`,
                );
            }
          } catch (err) {
            throw uploadError(err, maxUploadBytes);
          }
        });
        return reply.code(201).send({ items });
      },
    );
  });

  app.get(
    '/api/v1/results/:id/original',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object(
          { version: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })) },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const found = await services.results.original(
        request.ctx,
        request.params.id,
        request.query.version,
      );
      // Shown as text, never rendered: the body is whatever a device sent.
      const type = found.contentType.startsWith('application/json')
        ? 'application/json'
        : found.contentType === 'application/dicom+json'
          ? 'application/dicom+json'
          : 'x-application/hl7-v2+er7';
      return reply
        .header('content-type', `${type}; charset=utf-8`)
        .header(
          'content-disposition',
          `attachment; filename="result-${request.params.id}-v${found.version}"`,
        )
        .header('x-result-version', String(found.version))
        .send(found.body);
    },
  );

  app.get(
    '/api/v1/integrations/unmatched',
    {
      schema: {
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: pageOf(UnmatchedResult), ...errorResponses },
      },
    },
    async (request) => services.results.listUnmatched(request.ctx, pageParams(request.query)),
  );

  app.post(
    '/api/v1/integrations/unmatched/:id/assign',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          { patientId: Type.String({ minLength: 1, maxLength: 100 }) },
          { additionalProperties: false },
        ),
        response: { 200: IngestAnswer, ...errorResponses },
      },
    },
    async (request) =>
      services.results.assign(request.ctx, request.params.id, request.body.patientId),
  );

  app.post(
    '/api/v1/integrations/unmatched/:id/discard',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          { reason: Type.String({ minLength: 1, maxLength: 500 }) },
          { additionalProperties: false },
        ),
        response: { 200: IngestAnswer, ...errorResponses },
      },
    },
    async (request) =>
      services.results.discard(request.ctx, request.params.id, request.body.reason),
  );
};
