// HL7 v2 over MLLP: the listener on CARETRAIL_MLLP_PORT, its messages stored as the integration
// key named by CARETRAIL_MLLP_KEY_ID (MLLP itself carries no credentials; the port is reached by
// the clinic's devices on its own network), over TLS with CARETRAIL_MLLP_TLS.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { AppError } from '../domain/errors.js';
import type { RequestContext } from '../services/context.js';
import type { Services } from '../services/services.js';
import { readCaFile, tlsServerOptions, type TlsReloader } from '../tls-credentials.js';
import { createHl7Receiver } from './hl7-receiver.js';
import { ackFor } from './hl7-results.js';
import {
  decodeMessage,
  startMllpListener,
  type Frame,
  type MllpListener,
} from './mllp-listener.js';

const STATUS_OF = { AA: 200, AE: 422, AR: 400 } as const;

export async function startMllpEndpoint(
  services: Services,
  config: Pick<
    Config,
    | 'mllpHost'
    | 'mllpPort'
    | 'mllpKeyId'
    | 'resultMaxBytes'
    | 'mllpIdleSeconds'
    | 'mllpTls'
    | 'mllpTlsCa'
  >,
  log: Logger,
  tls: TlsReloader | null = null,
): Promise<MllpListener> {
  if (config.mllpPort === null) throw new Error('CARETRAIL_MLLP_PORT is not set.');
  if (config.mllpTls && tls === null)
    throw new AppError('invalid', 'CARETRAIL_MLLP_TLS needs the TLS certificate and key.');
  // Client certificates: the CA file is read at start and at every reload.
  const clientCa = () => (config.mllpTlsCa === '' ? {} : { ca: readCaFile(config.mllpTlsCa) });
  if (config.mllpKeyId === '')
    throw new AppError(
      'invalid',
      'CARETRAIL_MLLP_KEY_ID must name the integration key MLLP messages are stored as.',
    );
  // Refuse to start with a key that does not exist or was revoked: better than AR to every
  // message. A key revoked later is checked again on every message.
  await services.integrationKeys.actorForKeyId(config.mllpKeyId).catch(() => {
    throw new AppError(
      'invalid',
      'CARETRAIL_MLLP_KEY_ID names no live integration key (create one, then set its id).',
    );
  });
  const receiver = createHl7Receiver(services);
  const clock = services.deps.clock;

  async function answer(
    frame: Frame,
    ctx: RequestContext,
  ): Promise<{ code: keyof typeof STATUS_OF; ack: string }> {
    if (frame.kind === 'oversize') {
      const reason = `The message is larger than ${config.resultMaxBytes} bytes.`;
      return {
        code: 'AE',
        ack: ackFor(decodeMessage(frame.head), 'AE', reason, '207', clock.now()),
      };
    }
    if (frame.kind === 'truncated') {
      const reason = 'The frame was cut off: another began before its end (FS CR).';
      return {
        code: 'AR',
        ack: ackFor(decodeMessage(frame.head), 'AR', reason, '100', clock.now()),
      };
    }
    const text = decodeMessage(frame.bytes);
    try {
      ctx.actor = await services.integrationKeys.actorForKeyId(config.mllpKeyId);
    } catch {
      const reason = 'The integration key of this listener was revoked.';
      return { code: 'AR', ack: ackFor(text, 'AR', reason, '207', clock.now()) };
    }
    try {
      return await receiver.receive(ctx, text);
    } catch (err) {
      // The database is unreachable or the like: the sender keeps the message and retries.
      log.error(
        { err: { name: (err as Error).name, code: (err as AppError).code } },
        'mllp store failed',
      );
      const reason = 'The result could not be stored now; send it again later.';
      return { code: 'AE', ack: ackFor(text, 'AE', reason, '207', clock.now()) };
    }
  }

  return startMllpListener({
    host: config.mllpHost,
    port: config.mllpPort,
    maxBytes: config.resultMaxBytes,
    idleMs: config.mllpIdleSeconds * 1000,
    tls:
      config.mllpTls && tls
        ? {
            options: {
              ...tlsServerOptions(tls.material()),
              ...clientCa(),
              requestCert: config.mllpTlsCa !== '',
              rejectUnauthorized: config.mllpTlsCa !== '',
            },
            register(server) {
              tls.add(server, clientCa);
            },
          }
        : null,
    log,
    async handle(frame, peer) {
      const ctx: RequestContext = {
        requestId: randomUUID(),
        ip: peer.address,
        userAgent: 'mllp',
        actor: null,
        auditCount: { n: 0 },
      };
      const { code, ack } = await answer(frame, ctx);
      // Like an HTTP request, every message leaves one audit event, refused ones included.
      if (ctx.auditCount.n === 0)
        await services.auditTrail
          .recordRefusal(ctx, { method: 'MLLP', route: 'mllp', statusCode: STATUS_OF[code] })
          .catch((err: unknown) => {
            log.error({ err: { name: (err as Error).name } }, 'mllp refusal not audited');
          });
      log.info({ requestId: ctx.requestId, peer: peer.address, ack: code }, 'mllp message');
      return ack;
    },
  });
}
