// A webhook receiver on a free local port, as a customer would run one: endpoints at
// /hooks/<name>, each checking the signature with its subscription's secret and the timestamp's
// freshness, then answering as its policy says (200, 500, no answer at all, or a reset socket).
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

export type Answer = 'ok' | 'error' | 'hang' | 'reset';

/** The JSON body Caretrail posts. */
export interface ReceivedEvent {
  id: string;
  type: string;
  occurredAt: string;
  organizationId: string;
  patientId: string;
  data: Record<string, string | number>;
}

export interface Endpoint {
  name: string;
  url: string;
  /** The secret from the subscription's creation answer; until set, every request is refused. */
  secret: string | null;
  /** Events answered with 200, in arrival order (a redelivery appears twice). */
  accepted: ReceivedEvent[];
  /** Every request that passed the checks, with the answer it got. */
  requests: { eventId: string; answer: Answer }[];
}

export type Policy = (event: ReceivedEvent, attempt: number) => Answer;

export interface WebhookReceiver {
  /** Declares /hooks/<name>; its attempt numbers count requests per event id. */
  endpoint(name: string, policy: Policy): Endpoint;
  /** Requests that failed a check, one line each: every one is a defect of the sender. */
  problems: string[];
  close(): Promise<void>;
}

export interface ReceiverOptions {
  /** Largest accepted distance between the signed timestamp and now. */
  maxSkewMs?: number;
  /** A further check before answering (say, that the event's subject is visible); null is fine. */
  check?: (event: ReceivedEvent) => Promise<string | null>;
}

function isEvent(value: unknown): value is ReceivedEvent {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.id === 'string' &&
    typeof v.type === 'string' &&
    typeof v.occurredAt === 'string' &&
    typeof v.organizationId === 'string' &&
    typeof v.patientId === 'string' &&
    typeof v.data === 'object' &&
    v.data !== null
  );
}

/** The problem with a request, or the event it carries. */
function verify(
  endpoint: Endpoint,
  req: http.IncomingMessage,
  body: string,
  maxSkewMs: number,
): string | ReceivedEvent {
  if (req.method !== 'POST') return `method ${req.method ?? '?'}`;
  if (req.headers['content-type'] !== 'application/json') return 'content-type is not JSON';
  if (endpoint.secret === null) return 'a request before the subscription existed';
  const timestamp = req.headers['x-caretrail-timestamp'];
  const signature = req.headers['x-caretrail-signature'];
  const eventId = req.headers['x-caretrail-event-id'];
  if (typeof timestamp !== 'string' || !/^\d{1,12}$/.test(timestamp)) return 'no timestamp';
  if (typeof signature !== 'string') return 'no signature';
  const skew = Math.abs(Date.now() - Number(timestamp) * 1000);
  if (skew > maxSkewMs) return `timestamp ${timestamp} is ${skew} ms away from now`;
  const expected = Buffer.from(
    `sha256=${createHmac('sha256', endpoint.secret).update(`${timestamp}.${body}`).digest('hex')}`,
  );
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return 'signature does not match';
  let event: unknown;
  try {
    event = JSON.parse(body);
  } catch {
    return 'body is not JSON';
  }
  if (!isEvent(event)) return 'body is not an event';
  if (event.id !== eventId) return `event id header ${String(eventId)} ≠ body ${event.id}`;
  if (req.headers['x-caretrail-event-type'] !== event.type) return 'event type header ≠ body';
  return event;
}

export async function startWebhookReceiver(
  options: ReceiverOptions = {},
): Promise<WebhookReceiver> {
  const maxSkewMs = options.maxSkewMs ?? 5_000;
  const endpoints = new Map<string, { endpoint: Endpoint; policy: Policy }>();
  const problems: string[] = [];

  async function respond(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: string,
  ): Promise<void> {
    const name = /^\/hooks\/([\w-]+)$/.exec(req.url ?? '')?.[1] ?? '';
    const known = endpoints.get(name);
    if (!known) {
      problems.push(`request to unknown path ${req.url ?? '?'}`);
      res.writeHead(404).end();
      return;
    }
    const { endpoint, policy } = known;
    const verified = verify(endpoint, req, body, maxSkewMs);
    const problem =
      typeof verified === 'string' ? verified : ((await options.check?.(verified)) ?? null);
    if (problem !== null || typeof verified === 'string') {
      problems.push(`${name}: ${problem ?? 'unverified'}`);
      res.writeHead(400).end();
      return;
    }
    const attempt = endpoint.requests.filter((r) => r.eventId === verified.id).length + 1;
    const answer = policy(verified, attempt);
    endpoint.requests.push({ eventId: verified.id, answer });
    switch (answer) {
      case 'ok':
        endpoint.accepted.push(verified);
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        return;
      case 'error':
        res.writeHead(500, { 'content-type': 'text/plain' }).end('receiver is having a bad day');
        return;
      case 'hang':
        // Never answer: the sender's timeout has to end the attempt.
        return;
      case 'reset':
        req.socket.destroy();
        return;
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      respond(req, res, Buffer.concat(chunks).toString('utf8')).catch((err: unknown) => {
        problems.push(`receiver failed: ${String(err)}`);
        res.destroy();
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('the receiver has no port');
  const base = `http://127.0.0.1:${address.port}`;

  return {
    endpoint(name, policy) {
      if (endpoints.has(name)) throw new Error(`endpoint ${name} exists`);
      const endpoint: Endpoint = {
        name,
        url: `${base}/hooks/${name}`,
        secret: null,
        accepted: [],
        requests: [],
      };
      endpoints.set(name, { endpoint, policy });
      return endpoint;
    },
    problems,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => {
          if (err) reject(err);
          else resolve();
        });
      }),
  };
}
