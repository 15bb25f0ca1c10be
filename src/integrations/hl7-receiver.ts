// One HL7 v2 message in, its ACK out: shared by HTTP (`POST /integrations/hl7v2`) and MLLP.
// AA is sent only once the result is committed; AE names what we understood but cannot accept;
// AR answers what we cannot read.
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../domain/errors.js';
import type { RequestContext } from '../services/context.js';
import type { IdempotencyDecision } from '../services/idempotency.service.js';
import type { IngestAnswer, ResultInput } from '../services/result.service.js';
import type { Services } from '../services/services.js';
import { Hl7Rejection, parseOru, type OruMessage } from './hl7-oru.js';
import { ackFor, messageKey, resultInputOf } from './hl7-results.js';

export type AckCode = 'AA' | 'AE' | 'AR';

export interface Hl7Answer {
  code: AckCode;
  /** The ACK message (segments separated by CR), ready to send. */
  ack: string;
}

/** The route every HL7 message is recorded under, whatever transport brought it. */
const HL7_ROUTE = '/api/v1/integrations/hl7v2';

/** How long a re-send waits for the first copy, still being stored, before answering AE. */
const IN_PROGRESS_WAIT_MS = 10_000;
const IN_PROGRESS_POLL_MS = 50;

export function createHl7Receiver(services: Pick<Services, 'idempotency' | 'results' | 'deps'>) {
  const { idempotency, results } = services;
  const clock = services.deps.clock;

  /**
   * A message re-sent (its ACK was lost, or the sender disconnected first) is answered again and
   * stored once: its control id per sender is the idempotency key. A copy that arrives while the
   * first is still being stored waits for it.
   */
  async function claim(ctx: RequestContext, message: OruMessage, text: string) {
    const actor = ctx.actor;
    if (!actor) throw new AppError('unauthenticated', 'No integration key.');
    const deadline = Date.now() + IN_PROGRESS_WAIT_MS;
    for (;;) {
      try {
        return await idempotency.begin({
          scope: actor.userId,
          key: messageKey(message),
          method: 'POST',
          route: HL7_ROUTE,
          params: {},
          body: text,
          statusCode: 200,
        });
      } catch (err) {
        if (err instanceof AppError && err.code === 'conflict' && Date.now() < deadline) {
          await sleep(IN_PROGRESS_POLL_MS);
          continue;
        }
        throw err;
      }
    }
  }

  async function receive(ctx: RequestContext, text: string): Promise<Hl7Answer> {
    const answer = (code: AckCode, reason: string | null, error: string | null): Hl7Answer => ({
      code,
      ack: ackFor(text, code, reason, error, clock.now()),
    });
    let message: OruMessage;
    let input: ResultInput;
    try {
      message = parseOru(text);
      input = resultInputOf(message);
    } catch (err) {
      if (err instanceof Hl7Rejection) return answer(err.ackCode, err.message, err.errorCode);
      return answer('AR', 'The message could not be read as HL7 v2.', '102');
    }
    let decision: IdempotencyDecision;
    try {
      decision = await claim(ctx, message, text);
    } catch (err) {
      if (err instanceof AppError && err.code === 'idempotency_mismatch')
        return answer('AE', 'MSH-10 was used before for a different message.', '205');
      if (err instanceof AppError && err.code === 'conflict')
        return answer('AE', 'This message is being stored right now; send it again later.', '207');
      throw err;
    }
    if (decision.kind === 'replay') {
      const stored = decision.body as IngestAnswer;
      await idempotency.recordReplay(ctx, {
        type: 'result.receive',
        requires: { integration: true },
        patientId: null,
        entity: { type: 'Result', id: stored.id, version: stored.version },
      });
      return answer('AA', null, null);
    }
    try {
      await results.ingest({ ...ctx, idempotency: decision.claim }, input, {
        body: text,
        contentType: 'x-application/hl7-v2+er7',
      });
    } catch (err) {
      await idempotency.release(decision.claim);
      if (err instanceof AppError && err.code !== 'unavailable')
        return answer('AE', err.message, '207');
      throw err;
    }
    return answer('AA', null, null);
  }

  return { receive };
}

export type Hl7Receiver = ReturnType<typeof createHl7Receiver>;
