// Documents and images: streamed multipart uploads, new versions, ranged downloads, thumbnails,
// soft delete, restore and retention purge.
import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  contentDisposition,
  DOCUMENT_KINDS,
  parseRange,
  type DocumentKind,
  type ParsedRange,
} from '../../domain/document.js';
import { AppError, isAppError } from '../../domain/errors.js';
import type {
  Document as DocumentDto,
  Download,
  IncomingFile,
  UploadFields,
} from '../../services/document.service.js';
import type { Services } from '../../services/services.js';
import { createOnce, optionalVersion, type ReplayAudit } from '../request-helpers.js';
import {
  Document,
  DocumentKind as DocumentKindSchema,
  DocumentVersion,
  errorResponses,
  IdParams,
  Nullable,
  PageQuery,
  pageOf,
  SharedWith,
  Visibility as VisibilitySchema,
} from '../schemas.js';
import { CARE_ROLES, VISIBILITIES, type CareRole, type Visibility } from '../../domain/access.js';

const DOCUMENT_CREATE_REPLAY: ReplayAudit<DocumentDto> = {
  type: 'document.create',
  requires: { capability: 'documents.read' },
  entityType: 'Document',
  patientIdOf: (d) => d.patientId,
};

interface Options {
  services: Services;
  maxUploadBytes: number;
}

const VersionParams = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 100 }),
    version: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  },
  { additionalProperties: false },
);

/** Errors of the multipart reader as the one error shape; nothing half-stored remains. */
export function uploadError(err: unknown, maxUploadBytes: number): unknown {
  if (isAppError(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : '';
  if (code === 'FST_REQ_FILE_TOO_LARGE')
    return new AppError(
      'payload_too_large',
      `The file is larger than the limit of ${maxUploadBytes} bytes; nothing was stored.`,
    );
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT')
    return new AppError(
      'invalid',
      'Send one "file" part and at most a title, a kind, a visibility and sharedWith.',
    );
  if (code === 'FST_INVALID_MULTIPART_CONTENT_TYPE')
    return new AppError('unsupported_media_type', 'Send the upload as multipart/form-data.');
  // Thrown by the multipart reader before any part is read (found by the fuzzer: it was a 500).
  if (/^Multipart: Boundary not found/.test(message))
    return new AppError(
      'invalid',
      'The multipart/form-data Content-Type names no boundary; nothing was stored.',
    );
  if (
    /Unexpected end of (form|multipart)|aborted|Part terminated|Malformed/i.test(message) ||
    code === 'ECONNRESET' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE'
  )
    return new AppError(
      'invalid',
      'The upload was cut off before it finished; nothing was stored. Send it again.',
    );
  return err;
}

/** Reads the multipart parts: the file goes to `onFile` (streamed), the fields are returned. */
async function readMultipart(
  request: FastifyRequest,
  maxUploadBytes: number,
  onFile: (file: IncomingFile) => Promise<void>,
): Promise<UploadFields> {
  const fields: UploadFields = {};
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      if (part.fieldname !== 'file') {
        part.file.resume();
        throw new AppError(
          'invalid',
          `Unexpected file part "${part.fieldname.slice(0, 40)}"; name it "file".`,
        );
      }
      // Browsers percent-encode quotes and line breaks in multipart filenames (HTML spec).
      const filename = part.filename.replace(/%(22|0D|0A)/gi, (_m, hex: string) =>
        String.fromCharCode(parseInt(hex, 16)),
      );
      // A client that goes away mid-file does not end the part stream by itself: fail it, so
      // the store removes what it had written.
      const file = part.file;
      const abort = () => {
        if (!request.raw.complete) file.destroy(new Error('Request aborted'));
      };
      request.raw.socket.once('close', abort);
      try {
        await onFile({ stream: file, filename, declaredType: part.mimetype });
        if (file.truncated)
          throw new AppError(
            'payload_too_large',
            `The file is larger than the limit of ${maxUploadBytes} bytes; nothing was stored.`,
          );
      } finally {
        request.raw.socket.off('close', abort);
      }
      continue;
    }
    const value = typeof part.value === 'string' ? part.value : '';
    if (part.fieldname === 'title') {
      if (value.length > 300 || value.includes('\u0000'))
        throw new AppError('invalid', 'title must be at most 300 characters of text.');
      fields.title = value;
    } else if (part.fieldname === 'kind') {
      if (!(DOCUMENT_KINDS as readonly string[]).includes(value))
        throw new AppError('invalid', `kind must be one of: ${DOCUMENT_KINDS.join(', ')}.`);
      fields.kind = value as DocumentKind;
    } else if (part.fieldname === 'visibility') {
      if (!(VISIBILITIES as readonly string[]).includes(value))
        throw new AppError('invalid', `visibility must be one of: ${VISIBILITIES.join(', ')}.`);
      fields.visibility = value as Visibility;
    } else if (part.fieldname === 'sharedWith') {
      // A comma-separated list of care roles, e.g. "trainer,walker" (empty: none).
      const roles = value === '' ? [] : value.split(',').map((r) => r.trim());
      if (!roles.every((r) => (CARE_ROLES as readonly string[]).includes(r)))
        throw new AppError(
          'invalid',
          `sharedWith must list care roles separated by commas: ${CARE_ROLES.join(', ')}.`,
        );
      fields.sharedWith = [...new Set(roles)] as CareRole[];
    } else {
      throw new AppError('invalid', `Unknown field "${part.fieldname.slice(0, 40)}".`);
    }
  }
  return fields;
}

/** The filename from a request's own Content-Disposition header (raw-body uploads). */
function headerFilename(request: FastifyRequest): string | undefined {
  const header = request.headers['content-disposition'];
  if (header === undefined) return undefined;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1]);
    } catch {
      return undefined;
    }
  }
  return /filename="?([^";]+)"?/i.exec(header)?.[1];
}

function sendDownload(reply: FastifyReply, download: Download): FastifyReply {
  reply
    .header('content-type', download.contentType)
    .header('content-disposition', contentDisposition(download.filename, download.contentType))
    .header('accept-ranges', 'bytes')
    .header('etag', `"${download.sha256}"`)
    .header('x-content-sha256', download.sha256)
    .header('x-document-version', String(download.version))
    // The file is shown as what it is, never run as a page of this site.
    .header(
      'content-security-policy',
      "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
    );
  const range = download.range;
  if (range) {
    reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${download.size}`)
      .header('content-length', String(range.end - range.start + 1));
  } else {
    reply.code(200).header('content-length', String(download.size));
  }
  return reply.send(download.stream);
}

/** Range parsing that remembers the size, for the Content-Range of a 416 answer. */
function rangeReader(request: FastifyRequest, reply: FastifyReply) {
  return (size: number): ParsedRange | null => {
    try {
      return parseRange(request.headers.range, size);
    } catch (err) {
      if (isAppError(err) && err.code === 'range_not_satisfiable')
        reply.header('content-range', `bytes */${size}`);
      throw err;
    }
  };
}

/** Upload routes: no body parser but multipart and a pass-through for raw file bodies. */
const uploadRoutes: FastifyPluginAsyncTypebox<Options> = async (
  app,
  { services, maxUploadBytes },
) => {
  app.removeAllContentTypeParsers();
  await app.register(multipart, {
    limits: {
      // One byte more than allowed: the encrypting stream then sees the excess and refuses
      // (busboy alone would cut the file at the limit and report it only sometimes).
      fileSize: maxUploadBytes + 1,
      files: 1,
      fields: 6,
      fieldSize: 1000,
      parts: 8,
      headerPairs: 50,
    },
    throwFileSizeLimit: true,
    // Larger buffers between the socket, the multipart parser and the file stream: fewer
    // pauses while a big file streams through encryption to disk.
    highWaterMark: 1024 * 1024,
    fileHwm: 1024 * 1024,
  });
  // Any other type is a raw file body, streamed as it arrives (PUT content).
  app.addContentTypeParser('*', (_request, _payload, done) => {
    done(null);
  });

  app.post(
    '/api/v1/patients/:id/documents',
    { schema: { params: IdParams, response: { 201: Document, ...errorResponses } } },
    async (request, reply) => {
      if (!request.isMultipart())
        throw new AppError(
          'unsupported_media_type',
          'Upload the file as multipart/form-data with a "file" part (and optional "title", "kind").',
        );
      // With an Idempotency-Key, a retried upload (same key, same size) answers with the
      // document the first attempt stored, without storing the file twice.
      const document = await createOnce(
        services,
        request,
        reply,
        DOCUMENT_CREATE_REPLAY,
        (ctx) =>
          services.documents.create(ctx, request.params.id, (onFile) =>
            readMultipart(request, maxUploadBytes, onFile).catch((err: unknown) => {
              throw uploadError(err, maxUploadBytes);
            }),
          ),
        { upload: true, contentLength: request.headers['content-length'] ?? null },
      );
      reply.header('location', `/api/v1/documents/${document.id}`);
      reply.header('etag', `"${document.version}"`);
      return document;
    },
  );

  app.put(
    '/api/v1/documents/:id/content',
    { schema: { params: IdParams, response: { 200: Document, ...errorResponses } } },
    async (request, reply) => {
      const declared = Number(request.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > maxUploadBytes && !request.isMultipart()) {
        reply.header('connection', 'close');
        throw new AppError(
          'payload_too_large',
          `The file is larger than the limit of ${maxUploadBytes} bytes; nothing was stored.`,
        );
      }
      const document = await services.documents.replaceContent(
        request.ctx,
        request.params.id,
        optionalVersion(request),
        async (onFile) => {
          try {
            if (request.isMultipart()) {
              const fields = await readMultipart(request, maxUploadBytes, onFile);
              if (Object.keys(fields).length > 0)
                throw new AppError('invalid', 'A new version takes only a "file" part.');
              return;
            }
            const type = request.headers['content-type'];
            await onFile({
              stream: request.raw,
              filename: headerFilename(request),
              declaredType: typeof type === 'string' ? type : undefined,
            });
          } catch (err) {
            if (isAppError(err) && err.code === 'payload_too_large')
              reply.header('connection', 'close');
            throw uploadError(err, maxUploadBytes);
          }
        },
      );
      reply.header('etag', `"${document.version}"`);
      return document;
    },
  );
};

export const documentsRoutes: FastifyPluginAsyncTypebox<Options> = async (app, options) => {
  const { services } = options;
  await app.register(uploadRoutes, options);

  app.get(
    '/api/v1/patients/:id/documents',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object(
          { ...PageQuery, includeDeleted: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
        response: { 200: pageOf(Document), ...errorResponses },
      },
    },
    async (request) => {
      const { limit = 50, cursor, includeDeleted } = request.query;
      return services.documents.list(request.ctx, request.params.id, {
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
        ...(includeDeleted !== undefined ? { includeDeleted } : {}),
      });
    },
  );

  app.get(
    '/api/v1/documents/:id',
    { schema: { params: IdParams, response: { 200: Document, ...errorResponses } } },
    async (request, reply) => {
      const document = await services.documents.get(request.ctx, request.params.id);
      reply.header('etag', `"${document.version}"`);
      return document;
    },
  );

  /** The content of the current version, or of version `version`, with Range support. */
  const download = async (
    request: FastifyRequest,
    reply: FastifyReply,
    id: string,
    version: number | undefined,
  ) =>
    sendDownload(
      reply,
      await services.documents.openContent(request.ctx, id, version, rangeReader(request, reply)),
    );

  app.get('/api/v1/documents/:id/content', { schema: { params: IdParams } }, (request, reply) =>
    download(request, reply, request.params.id, undefined),
  );

  app.get(
    '/api/v1/documents/:id/versions',
    {
      schema: {
        params: IdParams,
        response: { 200: Type.Object({ items: Type.Array(DocumentVersion) }), ...errorResponses },
      },
    },
    async (request) => services.documents.versions(request.ctx, request.params.id),
  );

  app.get(
    '/api/v1/documents/:id/versions/:version/content',
    { schema: { params: VersionParams } },
    (request, reply) => download(request, reply, request.params.id, request.params.version),
  );

  app.get(
    '/api/v1/documents/:id/thumbnail',
    { schema: { params: IdParams } },
    async (request, reply) => {
      const image = await services.documents.thumbnail(request.ctx, request.params.id);
      return reply
        .header('content-type', 'image/jpeg')
        .header('content-security-policy', "default-src 'none'; sandbox")
        .send(image);
    },
  );

  app.patch(
    '/api/v1/documents/:id',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          {
            title: Type.Optional(Nullable(Type.String({ maxLength: 300 }))),
            kind: Type.Optional(DocumentKindSchema),
            visibility: Type.Optional(VisibilitySchema),
            sharedWith: Type.Optional(SharedWith),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Document, ...errorResponses },
      },
    },
    async (request) => services.documents.updateInfo(request.ctx, request.params.id, request.body),
  );

  app.delete(
    '/api/v1/documents/:id',
    { schema: { params: IdParams, response: { 200: Document, ...errorResponses } } },
    async (request) => services.documents.remove(request.ctx, request.params.id),
  );

  app.post(
    '/api/v1/documents/:id/restore',
    { schema: { params: IdParams, response: { 200: Document, ...errorResponses } } },
    async (request) => services.documents.restore(request.ctx, request.params.id),
  );

  app.post(
    '/api/v1/documents/:id/purge',
    {
      schema: {
        params: IdParams,
        body: Type.Object(
          { reason: Type.String({ minLength: 3, maxLength: 500 }) },
          { additionalProperties: false },
        ),
        response: { 200: Document, ...errorResponses },
      },
    },
    async (request) =>
      services.documents.purge(request.ctx, request.params.id, request.body.reason),
  );
};
