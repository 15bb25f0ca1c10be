// The Fastify application: request context, authentication, validation, errors and routes.
import { randomUUID } from 'node:crypto';
import type { ServerOptions } from 'node:https';
import { Ajv } from 'ajv';
import Fastify, {
  LogController,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchema,
} from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { AppError } from '../domain/errors.js';
import type { RequestContext } from '../services/context.js';
import type { Services } from '../services/services.js';
import { errorHandler, sendError } from './error-handler.js';
import { auditRoutes } from './routes/audit.routes.js';
import { authRoutes } from './routes/auth.routes.js';
import { healthRoutes } from './routes/health.routes.js';
import { notesRoutes } from './routes/notes.routes.js';
import { patientsRoutes } from './routes/patients.routes.js';
import { setupRoutes } from './routes/setup.routes.js';
import { usersRoutes } from './routes/users.routes.js';
import { documentsRoutes } from './routes/documents.routes.js';
import { subscriptionsRoutes } from './routes/subscriptions.routes.js';
import { sharingRoutes } from './routes/sharing.routes.js';
import { integrationsRoutes } from './routes/integrations.routes.js';
import { backupsRoutes } from './routes/backups.routes.js';
import { INTEGRATION_KEY_PREFIX } from '../services/integration-key.service.js';
import { createWebApp } from './web-app.js';
import { CSRF_HEADER, csrfHeaderMissing, sessionCookie } from './session-cookie.js';

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
  interface FastifyContextConfig {
    /** Routes that answer without a signed-in user. */
    public?: boolean;
    /** The URL holds a secret (an invitation token): logs show the route pattern instead. */
    secretInUrl?: boolean;
  }
}

export interface AppOptions {
  services: Services;
  log: Logger;
  bodyLimitBytes: number;
  maxUploadBytes: number;
  trustProxy: boolean;
  /** Longest a whole request may take to arrive (CARETRAIL_REQUEST_TIMEOUT_SECONDS). */
  requestTimeoutMs: number;
  /** Most connections open at once (CARETRAIL_MAX_CONNECTIONS). */
  maxConnections: number;
  /** The built web app (index.html and assets); null serves none. */
  webDir: string | null;
  /** Serve HTTPS with these options (certificate, key, protocols); null serves plain HTTP. */
  https: ServerOptions | null;
}

const HSTS = 'max-age=31536000; includeSubDomains';
/** Headers must arrive within 10 s (slowloris), checked every second. */
const SLOW_CLIENT_LIMITS = { headersTimeout: 10_000, connectionsCheckingInterval: 1_000 };

// Bodies are validated strictly (no type coercion, unknown fields rejected); query strings and
// params are text on the wire, so they are coerced ("50" → 50) but otherwise just as strict.
const bodyAjv = new Ajv({
  coerceTypes: false,
  useDefaults: true,
  removeAdditional: false,
  allErrors: false,
  strict: false,
});
const queryAjv = new Ajv({
  coerceTypes: true,
  useDefaults: true,
  removeAdditional: false,
  allErrors: false,
  strict: false,
});

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (header === undefined) return null;
  const match = /^Bearer ([A-Za-z0-9_\-.~+/=]{10,200})$/.exec(header);
  return match?.[1] ?? null;
}

/** Per-request context and the headers every answer carries. */
function startRequest(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id);
  reply.header('cache-control', 'no-store');
  reply.header('x-content-type-options', 'nosniff');
  reply.header('referrer-policy', 'no-referrer');
  reply.header('x-frame-options', 'DENY');
  // Over TLS (served here, or by a trusted proxy that says so): browsers stay on HTTPS.
  if (request.protocol === 'https') reply.header('strict-transport-security', HSTS);
  const userAgent = request.headers['user-agent'];
  request.ctx = {
    requestId: request.id,
    ip: request.ip,
    userAgent: typeof userAgent === 'string' ? userAgent.slice(0, 256) : null,
    actor: null,
    auditCount: { n: 0 },
  };
}

export async function buildApp(options: AppOptions) {
  const { services } = options;
  const app = Fastify({
    loggerInstance: options.log,
    bodyLimit: options.bodyLimitBytes,
    trustProxy: options.trustProxy,
    genReqId: () => randomUUID(),
    // One line per request (on response) instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // Slow and idle clients hold a connection only so long (docs/RELIABILITY.md): headers must
    // arrive within 10 s (slowloris), the whole request within requestTimeoutMs, a socket with
    // nothing moving either way is closed after 2 min, an idle keep-alive one after 72 s (longer
    // than a load balancer's 60 s, so it never reuses a connection we are closing).
    // (HTTPS takes the same http.Server options beside its TLS ones.)
    ...(options.https
      ? { https: { ...options.https, ...SLOW_CLIENT_LIMITS } }
      : { http: SLOW_CLIENT_LIMITS }),
    requestTimeout: options.requestTimeoutMs,
    connectionTimeout: 120_000,
    keepAliveTimeout: 72_000,
    // A URL Fastify cannot even decode still gets its audit event and the one error shape.
    frameworkErrors: (_error, request, reply) => {
      startRequest(request, reply);
      void services.auditTrail
        .recordRefusal(request.ctx, {
          method: request.method,
          route: 'undecodable-url',
          statusCode: 400,
        })
        .finally(() => sendError(reply, 400, 'invalid', 'The request URL is not valid.'));
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Connections beyond the cap are closed on arrival, before file descriptors run out.
  app.server.maxConnections = options.maxConnections;

  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? bodyAjv.compile(schema) : queryAjv.compile(schema),
  );
  app.setErrorHandler(errorHandler);
  // JSON only: a text/plain body is 415, not a string that fails validation later.
  app.removeContentTypeParser('text/plain');
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (text.includes('\u0000') || /\\u0000/i.test(text)) {
      done(new AppError('invalid', 'Text must not contain NUL characters.'), undefined);
      return;
    }
    void parseJson(request, text, done);
  });
  const webApp = createWebApp(options.webDir);
  app.setNotFoundHandler((request, reply) => {
    if (webApp.serve(request, reply)) return reply;
    return sendError(
      reply,
      404,
      'not_found',
      `No route ${request.method} ${request.url.split('?')[0] ?? ''}.`,
    );
  });

  app.decorateRequest('ctx', null as unknown as RequestContext);
  // Every route with its schema (tests walk them: the access matrix, the fuzzer).
  const routes: { method: string; url: string; schema: FastifySchema | undefined }[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat())
      if (method !== 'HEAD') routes.push({ method, url: route.url, schema: route.schema });
  });

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    startRequest(request, reply);
    // NUL bytes are not text: PostgreSQL refuses them, so they stop here for both engines.
    if (/%00/.test(request.url))
      throw new AppError('invalid', 'The URL must not contain NUL characters.');
    if (request.routeOptions.config.public === true || request.routeOptions.url === undefined)
      return;
    let token = bearerToken(request);
    if (token === null) {
      token = sessionCookie(request, services.deps.settings.publicUrl);
      if (token !== null && csrfHeaderMissing(request))
        throw new AppError(
          'forbidden',
          `A change made with the sign-in cookie must carry the ${CSRF_HEADER} header; reload the page and try again.`,
        );
    }
    if (token === null)
      throw new AppError(
        'unauthenticated',
        'Sign in and send the token as "Authorization: Bearer <token>".',
      );
    request.ctx.actor = token.startsWith(INTEGRATION_KEY_PREFIX)
      ? await services.integrationKeys.authenticate(token)
      : await services.auth.authenticate(token);
  });

  // While shutting down, answers of in-flight requests close their keep-alive connection, so the
  // server can stop as soon as the last one is sent.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (request, reply) => {
    if (closing) reply.header('connection', 'close');
    // Exactly one audit event per API request: a request refused before any use case ran (bad
    // input, no or expired token, unknown route) gets its event here, before the answer leaves.
    if (request.url.startsWith('/api/') && request.ctx.auditCount.n === 0) {
      await services.auditTrail.recordRefusal(request.ctx, {
        method: request.method,
        route: request.routeOptions.url ?? 'unknown-route',
        statusCode: reply.statusCode,
      });
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url:
          request.routeOptions.config.secretInUrl === true
            ? request.routeOptions.url
            : request.url.split('?')[0],
        statusCode: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request',
    );
  });

  await app.register(healthRoutes, { services });
  await app.register(setupRoutes, { services });
  await app.register(authRoutes, { services });
  await app.register(usersRoutes, { services });
  await app.register(patientsRoutes, { services });
  await app.register(notesRoutes, { services });
  await app.register(documentsRoutes, { services, maxUploadBytes: options.maxUploadBytes });
  await app.register(subscriptionsRoutes, { services });
  await app.register(sharingRoutes, { services });
  await app.register(integrationsRoutes, { services, maxUploadBytes: options.maxUploadBytes });
  await app.register(auditRoutes, { services });
  await app.register(backupsRoutes, { services });
  return Object.assign(app, { routes: routes });
}
