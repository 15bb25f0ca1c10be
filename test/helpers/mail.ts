// A real SMTP server (smtp-server) on a free local port that keeps every message it receives,
// with the few headers the tests read. A policy may refuse a message (451) or take it and then
// drop the connection before saying so: the sender sees a failure and sends it again.
import type { Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  /** Header names in lower case; folded lines joined. */
  headers: Map<string, string>;
  messageId: string;
  to: string;
  subject: string;
  /** X-Caretrail-Event-Id, or '' when absent. */
  eventId: string;
  /** Recipients of the SMTP envelope (RCPT TO). */
  envelopeTo: string[];
  body: string;
}

/** accept: 250; refuse: 451, nothing kept; drop: kept, then the connection is cut unanswered. */
export type MailOutcome = 'accept' | 'refuse' | 'drop';

export interface MailServer {
  /** smtp://127.0.0.1:port */
  url: string;
  /** Every message received (accepted or dropped), in arrival order; a resend appears twice. */
  messages: ReceivedMail[];
  /** Every DATA transaction, with what the policy made of it. */
  transactions: { messageId: string; outcome: MailOutcome }[];
  close(): Promise<void>;
}

/** Decides the fate of a message; `attempt` counts transactions with its Message-ID. */
export type MailPolicy = (mail: ReceivedMail, attempt: number) => MailOutcome;

/** Splits a raw RFC 5322 message into headers (unfolded, names lower case) and body. */
export function parseMail(raw: string): { headers: Map<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = end === -1 ? raw : raw.slice(0, end);
  const body = end === -1 ? '' : raw.slice(end + 4);
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body };
}

export async function startMailServer(policy: MailPolicy = () => 'accept'): Promise<MailServer> {
  const messages: ReceivedMail[] = [];
  const transactions: MailServer['transactions'] = [];
  /** Client sockets by their port, to cut one mid-conversation. */
  const sockets = new Map<number, Socket>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', callback);
      stream.on('end', () => {
        const { headers, body } = parseMail(Buffer.concat(chunks).toString('utf8'));
        const mail: ReceivedMail = {
          headers,
          messageId: headers.get('message-id') ?? '',
          to: headers.get('to') ?? '',
          subject: headers.get('subject') ?? '',
          eventId: headers.get('x-caretrail-event-id') ?? '',
          envelopeTo: session.envelope.rcptTo.map((r) => r.address),
          body,
        };
        const attempt = transactions.filter((t) => t.messageId === mail.messageId).length + 1;
        const socket = sockets.get(session.remotePort);
        const chosen = policy(mail, attempt);
        // Without the socket at hand, a drop becomes a refusal (the sender retries all the same).
        const outcome = chosen === 'drop' && !socket ? 'refuse' : chosen;
        transactions.push({ messageId: mail.messageId, outcome });
        switch (outcome) {
          case 'accept':
            messages.push(mail);
            callback();
            return;
          case 'refuse':
            callback(Object.assign(new Error('Try again later'), { responseCode: 451 }));
            return;
          case 'drop':
            // The message arrived, but its sender never hears so.
            messages.push(mail);
            socket?.destroy();
            return;
        }
      });
    },
  });
  // Cut connections end with errors on the server side; they are expected here.
  server.on('error', () => undefined);
  server.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort;
    if (port === undefined) return;
    sockets.set(port, socket);
    socket.on('close', () => sockets.delete(port));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  const address = server.server.address();
  if (!address || typeof address === 'string') throw new Error('the SMTP server has no port');
  return {
    url: `smtp://127.0.0.1:${address.port}`,
    messages,
    transactions,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets.values()) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}
