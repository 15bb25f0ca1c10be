// HL7 v2 ORU^R01 results stored per second over MLLP (a real TCP listener, the library client
// @medplum/hl7 Hl7Client), against the same results posted as JSON to the webhook
// (POST /api/v1/integrations/results) over HTTP with the same number of senders, in the same run.
// Each sender has one message in flight, as MLLP senders do: send, wait for the ACK, send the next.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Hl7Message } from '@medplum/core';
import { Hl7Client, type Hl7ErrorEvent } from '@medplum/hl7';
import BetterSqlite3 from 'better-sqlite3';
import { api, startServer, type ServerProcess } from '../test/helpers/process.js';
import { BENCH_PASSWORD, clinicWithPatient } from './lib.js';

const CHIP = '985112345678901';
const ANSWER_TIMEOUT_MS = 20_000;

export interface MllpBenchResult {
  connections: number;
  /** Webhook results answered 201 (stored, matched) per second. */
  webhookPerSecond: number;
  /** MLLP results answered AA per second. */
  mllpPerSecond: number;
  /** Every request or message sent (warm-up included), and what the server stored. */
  webhookSent: number;
  webhookStored: number;
  mllpSent: number;
  mllpAa: number;
  mllpNonAa: number;
  mllpStored: number;
}

/** The port of the server's MLLP listener, from its start-up log line. */
async function mllpPortOf(server: ServerProcess, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = /"port":(\d+)[^\n]*"msg":"MLLP listener started"/.exec(server.output());
    if (match?.[1]) return Number(match[1]);
    if (server.child.exitCode !== null || server.child.signalCode !== null || Date.now() > deadline)
      throw new Error(`the MLLP listener did not start:\n${server.output()}`);
    await sleep(50);
  }
}

/** Resolves once `port` accepts a TCP connection. */
async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await sleep(50);
  }
}

async function adminToken(server: ServerProcess): Promise<string> {
  const admin = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: 'admin@bench.test', password: BENCH_PASSWORD },
  });
  if (admin.status !== 200) throw new Error(`admin login answered ${admin.status}`);
  return admin.json.token;
}

async function stop(server: ServerProcess): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null)
    server.child.kill('SIGTERM');
  await server.exited;
}

interface Prepared {
  server: ServerProcess;
  dbFile: string;
  mllpPort: number;
  /** The integration key (bearer token for the webhook). */
  key: string;
}

/**
 * A clinic with a chipped patient and an integration key in a fresh data dir, served by a server
 * started with the MLLP listener acting as that key (the key must exist before the listener
 * starts, so the server is started twice).
 */
async function prepare(dataDir: string): Promise<Prepared> {
  fs.mkdirSync(dataDir);
  const dbFile = path.join(dataDir, 'caretrail.db');
  const env = {
    CARETRAIL_DATA_DIR: dataDir,
    CARETRAIL_DATABASE_URL: `sqlite:${dbFile}`,
  };
  let keyId: string;
  let key: string;
  const first = await startServer(env);
  try {
    const { token: vetToken } = await clinicWithPatient(first, env, dataDir);
    const patient = await api(first.baseUrl, 'POST', '/api/v1/patients', {
      token: vetToken,
      body: {
        name: 'Rex',
        species: 'canine',
        owners: [{ name: 'Bench Owner' }],
        identifiers: [{ system: 'microchip', value: CHIP }],
      },
    });
    if (patient.status !== 201) throw new Error(`patient create answered ${patient.status}`);
    const created = await api<{ id: string; key: string }>(
      first.baseUrl,
      'POST',
      '/api/v1/integrations/keys',
      { token: await adminToken(first), body: { name: 'Bench analyser' } },
    );
    if (created.status !== 201) throw new Error(`key create answered ${created.status}`);
    ({ id: keyId, key } = created.json);
  } finally {
    await stop(first);
  }
  // Port 0: the listener picks a free port and logs it.
  const server = await startServer({
    ...env,
    CARETRAIL_MLLP_PORT: '0',
    CARETRAIL_MLLP_KEY_ID: keyId,
  });
  try {
    const mllpPort = await mllpPortOf(server);
    await waitForPort(mllpPort);
    return { server, dbFile, mllpPort, key };
  } catch (err) {
    await stop(server);
    throw err;
  }
}

/**
 * Runs `senders` loops of `sendOne` (each awaits its answer before sending again) for
 * `warmupSeconds`, then `seconds`; returns how many answers `sendOne` counted ok in that window
 * and the window's length. Every answer is awaited before it returns.
 */
async function drive(
  senders: number,
  warmupSeconds: number,
  seconds: number,
  sendOne: (sender: number) => Promise<boolean>,
): Promise<{ ok: number; elapsed: number }> {
  let ok = 0;
  let measuring = false;
  let stopping = false;
  const failures: Error[] = [];
  // A sender that fails stops the others and the clock at once rather than after the whole run.
  const abort = new AbortController();
  const loop = async (sender: number) => {
    try {
      while (!stopping) if ((await sendOne(sender)) && measuring) ok++;
    } catch (err) {
      failures.push(err instanceof Error ? err : new Error(String(err)));
      stopping = true;
      abort.abort();
    }
  };
  const loops = Promise.all(Array.from({ length: senders }, (_, i) => loop(i)));
  const wait = (ms: number) =>
    sleep(ms, undefined, { signal: abort.signal }).catch(() => undefined);
  await wait(warmupSeconds * 1000);
  measuring = true;
  const started = process.hrtime.bigint();
  await wait(seconds * 1000);
  measuring = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  stopping = true;
  await loops;
  if (failures[0]) throw failures[0];
  return { ok, elapsed };
}

interface Sender {
  /** Sends one result from sender `i` and waits for its answer: true when it was stored. */
  sendOne(i: number): Promise<boolean>;
  close(): Promise<void>;
}

function post(
  agent: http.Agent,
  base: URL,
  key: string,
  body: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        path: '/api/v1/integrations/results',
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** JSON results to the webhook from `connections` keep-alive HTTP clients; each must be 201. */
function webhookSender(p: Prepared, connections: number): Sender & { sent: () => number } {
  const base = new URL(p.server.baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  let n = 0;
  return {
    sent: () => n,
    async sendOne() {
      const id = ++n;
      const body = JSON.stringify({
        patient: { identifier: { system: 'microchip', value: CHIP } },
        source: 'bench',
        kind: 'lab',
        resultId: `RES-${id}`,
        observations: [
          {
            code: 'HCT',
            display: 'Hematocrit',
            value: '38.2',
            unit: '%',
            referenceRange: '37.3-61.7',
            flag: 'N',
          },
        ],
      });
      const { status, text } = await post(agent, base, p.key, body);
      const answer =
        status === 201 ? (JSON.parse(text) as { status: string; duplicate: boolean }) : null;
      if (answer?.status !== 'matched' || answer.duplicate)
        throw new Error(`webhook result ${id} answered ${status}: ${text}`);
      return true;
    },
    async close() {
      agent.destroy();
      return Promise.resolve();
    },
  };
}

function oru(n: number): string {
  return [
    `MSH|^~\\&|BENCH|LAB|CARETRAIL|CLINIC|20261123101500||ORU^R01^ORU_R01|BENCH-${n}|P|2.5.1`,
    `PID|1||${CHIP}^^^MICROCHIP^MC||REX^DOG||20190301|M`,
    `OBR|1|ORD-${n}|RES-${n}|CBC^Complete blood count^LAB|||20261123100500||||||||||||||||LAB|F`,
    'OBX|1|NM|HCT^Hematocrit^LAB||38.2|%|37.3-61.7|N|||F',
    'OBX|2|NM|WBC^White blood cells^LAB||19.5|K/uL|5.05-16.76|H|||F',
  ].join('\r');
}

/** MSA-1 and MSA-3 of an ACK. */
function msa(ack: Hl7Message): { code: string; text: string } {
  // getField is typed as always present; a field missing at the end is undefined at run time.
  const field = (i: number) =>
    (ack.getSegment('MSA')?.getField(i) as { toString(): string } | undefined)?.toString() ?? '';
  return { code: field(1), text: field(3) };
}

/** ORU^R01 messages over `connections` MLLP connections (Hl7Client); AA counts as stored. */
async function mllpSender(
  p: Prepared,
  connections: number,
): Promise<
  Sender & { stats: () => { sent: number; aa: number; nonAa: number; firstNonAa: string } }
> {
  const clients = Array.from(
    { length: connections },
    () => new Hl7Client({ host: '127.0.0.1', port: p.mllpPort, connectTimeout: 5000 }),
  );
  const clientErrors: string[] = [];
  for (const c of clients)
    c.addEventListener('error', (event: Hl7ErrorEvent) => {
      clientErrors.push(event.error.message);
    });
  let n = 0;
  let aa = 0;
  let nonAa = 0;
  let firstNonAa = '';
  try {
    await Promise.all(clients.map((c) => c.connect()));
  } catch (err) {
    await Promise.all(clients.map((c) => c.close()));
    throw err;
  }
  return {
    stats: () => {
      if (clientErrors.length > 0)
        throw new Error(`${clientErrors.length} MLLP client errors, first: ${clientErrors[0]}`);
      return { sent: n, aa, nonAa, firstNonAa };
    },
    async sendOne(i) {
      const id = ++n;
      const client = clients[i];
      if (!client) throw new Error(`no MLLP client ${i}`);
      // Our own timeout: sendAndWait's timeoutMs timer is not cleared when the ACK arrives, so
      // every message would leave a live timer behind.
      let timer: NodeJS.Timeout | undefined;
      const ack = await Promise.race([
        client.sendAndWait(Hl7Message.parse(oru(id))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`no ACK for BENCH-${id} within ${ANSWER_TIMEOUT_MS} ms`));
          }, ANSWER_TIMEOUT_MS);
        }),
      ]).finally(() => {
        clearTimeout(timer);
      });
      const { code, text } = msa(ack);
      if (code === 'AA') {
        aa++;
        return true;
      }
      nonAa++;
      firstNonAa ||= `BENCH-${id}: ${code} ${text}`;
      return false;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}

/** Results rows in the stored database (read after the server stopped): count and how many matched. */
function storedResults(dbFile: string): { total: number; matched: number } {
  const db = new BetterSqlite3(dbFile, { readonly: true });
  try {
    return db
      .prepare(
        "select count(*) as total, coalesce(sum(status = 'matched'), 0) as matched from results",
      )
      .get() as { total: number; matched: number };
  } finally {
    db.close();
  }
}

export async function mllpBench(options: {
  seconds: number;
  connections: number;
}): Promise<MllpBenchResult> {
  const { seconds, connections } = options;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-bench-mllp-'));
  const running: ServerProcess[] = [];
  const senders: Sender[] = [];
  try {
    // Each transport gets its own fresh data dir and an identically configured server.
    const hook = await prepare(path.join(dir, 'webhook'));
    running.push(hook.server);
    const listener = await prepare(path.join(dir, 'mllp'));
    running.push(listener.server);
    const webhook = webhookSender(hook, connections);
    senders.push(webhook);
    const mllp = await mllpSender(listener, connections);
    senders.push(mllp);

    // The two transports take turns in slices of about 1.5 s (webhook first, then MLLP first,
    // ...), so that other load on the machine weighs on both alike; each gets `seconds` in all.
    // The first slice of each warms up for 1 s, later ones for 0.25 s.
    const rounds = Math.max(1, Math.round(seconds / 1.5));
    const totals = { webhook: { ok: 0, elapsed: 0 }, mllp: { ok: 0, elapsed: 0 } };
    for (let round = 0; round < rounds; round++) {
      const order =
        round % 2 === 0 ? (['webhook', 'mllp'] as const) : (['mllp', 'webhook'] as const);
      for (const transport of order) {
        const sender = transport === 'webhook' ? webhook : mllp;
        const r = await drive(connections, round === 0 ? 1 : 0.25, seconds / rounds, (i) =>
          sender.sendOne(i),
        );
        totals[transport].ok += r.ok;
        totals[transport].elapsed += r.elapsed;
      }
    }
    const stats = mllp.stats();
    await Promise.all(senders.splice(0).map((s) => s.close()));
    await Promise.all(running.map(stop));
    const webhookStored = storedResults(hook.dbFile);
    const mllpStored = storedResults(listener.dbFile);

    if (stats.nonAa > 0)
      throw new Error(
        `${stats.nonAa} of ${stats.sent} MLLP messages were not answered AA; first: ${stats.firstNonAa}`,
      );
    if (webhookStored.total !== webhook.sent() || webhookStored.matched !== webhook.sent())
      throw new Error(
        `webhook: ${webhook.sent()} results answered 201, ${webhookStored.total} stored (${webhookStored.matched} matched)`,
      );
    if (mllpStored.total !== stats.aa || mllpStored.matched !== stats.aa)
      throw new Error(
        `MLLP: ${stats.aa} messages answered AA, ${mllpStored.total} results stored (${mllpStored.matched} matched)`,
      );
    return {
      connections,
      webhookPerSecond: totals.webhook.ok / totals.webhook.elapsed,
      mllpPerSecond: totals.mllp.ok / totals.mllp.elapsed,
      webhookSent: webhook.sent(),
      webhookStored: webhookStored.total,
      mllpSent: stats.sent,
      mllpAa: stats.aa,
      mllpNonAa: stats.nonAa,
      mllpStored: mllpStored.total,
    };
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    await Promise.all(running.map(stop));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
