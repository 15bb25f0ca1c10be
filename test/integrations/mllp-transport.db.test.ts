// The MLLP connection itself, on both engines: a sender silent for the idle limit is
// disconnected (and the log says so without patient data), and MLLP over TLS: a TLS sender gets
// its AA ACK, a plain-TCP sender on the TLS port gets nothing and stores nothing, a renewed
// certificate is served after a reload, and with a client CA only senders holding a certificate
// it signed are heard.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMllpEndpoint } from '../../src/integrations/mllp-endpoint.js';
import type { MllpListener } from '../../src/integrations/mllp-listener.js';
import { createTlsReloader, type TlsReloader } from '../../src/tls-credentials.js';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import { issueCertificate, makeCa, sClient, type TestCertificate } from '../helpers/tls.js';

const VT = '\u000b';
const END = '\u001c\r';
const CHIP = '985112345678902';

function oru(controlId: string, resultId: string): string {
  return [
    `MSH|^~\\&|TLSLAB|LAB|CARETRAIL|CLINIC|20261204101500||ORU^R01^ORU_R01|${controlId}|P|2.5.1`,
    `PID|1||${CHIP}^^^MICROCHIP^MC||BISCUIT^DOG||20200301|F`,
    `OBR|1|ORD-${resultId}|${resultId}|CBC^Complete blood count^LAB|||20261204100500||||||||||||||||LAB|F`,
    `OBX|1|NM|HCT^Hematocrit^LAB||41.0|%|37.3-61.7|N|||F`,
    '',
  ].join('\r');
}

/** A sender on an open socket (TCP or TLS): writes bytes, collects MSA-1 of framed answers. */
function sender(socket: net.Socket) {
  let received = '';
  let closedAt: number | null = null;
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
  socket.on('close', () => (closedAt = Date.now()));
  socket.on('error', () => {
    // a refused handshake or a reset: the test looks at what was (not) answered
  });
  const acks = () =>
    received
      .split(END)
      .filter((a) => a.startsWith(VT))
      .map((a) => /\rMSA\|([A-Z]{2})\|/.exec(a)?.[1] ?? '?');
  return {
    socket,
    send: (text: string) => socket.write(`${VT}${text}${END}`),
    acks,
    closedAt: () => closedAt,
    async waitFor(accept: () => boolean, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!accept() && Date.now() < deadline) await sleep(10);
    },
  };
}

async function connectTcp(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return sender(socket);
}

async function connectTls(port: number, options: tls.ConnectionOptions) {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
  const peer = sender(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return { ...peer, protocol: () => socket.getProtocol() };
}

describeEachEngine('MLLP connections: idle limit and TLS', ({ url }) => {
  let h: Harness;
  let keyId: string;
  let dir: string;
  let ca: TestCertificate;
  let caPem: Buffer;
  let reloader: TlsReloader;
  let plain: MllpListener;
  let secure: MllpListener;
  const listeners: MllpListener[] = [];
  const certFile = () => path.join(dir, 'mllp.crt');
  const keyFile = () => path.join(dir, 'mllp.key');
  const settings = {
    mllpHost: '127.0.0.1',
    mllpPort: 0,
    resultMaxBytes: 256 * 1024,
    mllpIdleSeconds: 1,
    mllpTls: false,
    mllpTlsCa: '',
  };
  const stored = async (resultId: string) =>
    (
      await h.runtime.db.read
        .selectFrom('results')
        .select('id')
        .where('integration_key_id', '=', keyId)
        .where('source_result_id', '=', resultId)
        .execute()
    ).length;
  const mllpLogs = () => h.logs.filter((l) => l.includes('mllp') || l.includes('MLLP'));

  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: admin.token,
      body: {
        name: 'Biscuit',
        species: 'canine',
        identifiers: [{ system: 'microchip', value: CHIP }],
      },
    });
    assert.equal(patient.statusCode, 201, patient.body);
    const key = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'TLS analyser' },
    });
    keyId = key.json<{ id: string }>().id;
    dir = tempDir('caretrail-mllp-tls-');
    ca = await makeCa(dir);
    caPem = fs.readFileSync(ca.certFile);
    const first = await issueCertificate(dir, ca, 'first');
    fs.copyFileSync(first.certFile, certFile());
    fs.copyFileSync(first.keyFile, keyFile());
    reloader = createTlsReloader(
      { certFile: certFile(), keyFile: keyFile() },
      h.runtime.services.deps.log,
    );
    const log = h.runtime.services.deps.log;
    plain = await startMllpEndpoint(h.runtime.services, { ...settings, mllpKeyId: keyId }, log);
    secure = await startMllpEndpoint(
      h.runtime.services,
      { ...settings, mllpKeyId: keyId, mllpTls: true, mllpIdleSeconds: 300 },
      log,
      reloader,
    );
    listeners.push(plain, secure);
  });
  after(async () => {
    for (const l of listeners) await l.close();
    await h.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a connection that sends nothing for the idle limit is closed', async () => {
    const started = Date.now();
    const idle = await connectTcp(plain.port);
    const busy = await connectTcp(plain.port);
    // The busy one sends a message after 700 ms: its ACK starts the count again.
    await sleep(700);
    busy.send(oru('IDLE-1', 'RES-IDLE-1'));
    await idle.waitFor(() => idle.closedAt() !== null, 5000);
    const idleFor = (idle.closedAt() ?? Infinity) - started;
    assert.ok(idleFor >= 950 && idleFor < 3000, `closed after ${idleFor} ms`);
    await busy.waitFor(() => busy.acks().length === 1);
    assert.deepEqual(busy.acks(), ['AA']);
    assert.equal(busy.closedAt(), null, 'the busy connection is still open');
    await busy.waitFor(() => busy.closedAt() !== null, 5000);
    const busyFor = (busy.closedAt() ?? Infinity) - started;
    assert.ok(busyFor >= 1650, `the busy one lasted ${busyFor} ms`);
    const lines = mllpLogs().filter((l) => l.includes('mllp connection idle: closed'));
    assert.equal(lines.length, 2, mllpLogs().join(''));
    for (const line of lines) {
      assert.match(line, /"idleSeconds":1/);
      assert.doesNotMatch(line, /BISCUIT|Biscuit|985112345678902/);
    }
  });

  test('over TLS a sender gets its AA and the result is stored', async () => {
    const peer = await connectTls(secure.port, { ca: caPem });
    try {
      assert.equal(peer.protocol(), 'TLSv1.3');
      peer.send(oru('TLS-1', 'RES-TLS-1'));
      await peer.waitFor(() => peer.acks().length === 1);
      assert.deepEqual(peer.acks(), ['AA']);
    } finally {
      peer.socket.destroy();
    }
    assert.equal(await stored('RES-TLS-1'), 1);
  });

  test('a plain-TCP sender on the TLS port gets no answer and nothing is stored', async () => {
    const peer = await connectTcp(secure.port);
    peer.send(oru('PLAIN-1', 'RES-PLAIN-1'));
    await peer.waitFor(() => peer.closedAt() !== null, 5000);
    assert.notEqual(peer.closedAt(), null, 'the server hung up');
    assert.deepEqual(peer.acks(), []);
    assert.equal(await stored('RES-PLAIN-1'), 0);
    assert.ok(mllpLogs().some((l) => l.includes('mllp TLS handshake failed')));
    assert.ok(!mllpLogs().some((l) => l.includes('BISCUIT')), 'no message content in the log');
  });

  test('a reload serves the renewed certificate on the MLLP port', async () => {
    const second = await issueCertificate(dir, ca, 'second');
    fs.copyFileSync(second.certFile, certFile());
    fs.copyFileSync(second.keyFile, keyFile());
    assert.equal(reloader.reload(), true);
    const shake = await sClient(secure.port, ['-CAfile', ca.certFile]);
    assert.equal(shake.fingerprint, second.fingerprint, shake.output);
    const peer = await connectTls(secure.port, { ca: caPem });
    try {
      peer.send(oru('TLS-2', 'RES-TLS-2'));
      await peer.waitFor(() => peer.acks().length === 1);
      assert.deepEqual(peer.acks(), ['AA']);
    } finally {
      peer.socket.destroy();
    }
  });

  test('with a client CA, only senders holding a certificate it signed are heard', async () => {
    const clientCa = await makeCa(tempDirIn(dir), 'Clinic devices CA');
    const device = await issueCertificate(path.dirname(clientCa.certFile), clientCa, 'device');
    const stranger = await issueCertificate(dir, ca, 'stranger');
    const mutual = await startMllpEndpoint(
      h.runtime.services,
      {
        ...settings,
        mllpKeyId: keyId,
        mllpTls: true,
        mllpTlsCa: clientCa.certFile,
        mllpIdleSeconds: 300,
      },
      h.runtime.services.deps.log,
      reloader,
    );
    listeners.push(mutual);
    const known = await connectTls(mutual.port, {
      ca: caPem,
      cert: fs.readFileSync(device.certFile),
      key: fs.readFileSync(device.keyFile),
    });
    try {
      known.send(oru('MTLS-1', 'RES-MTLS-1'));
      await known.waitFor(() => known.acks().length === 1);
      assert.deepEqual(known.acks(), ['AA']);
    } finally {
      known.socket.destroy();
    }
    // Without a certificate, or with one of another CA: the server ends the handshake (under
    // TLS 1.3 the client may believe it connected and write first), nothing is answered or stored.
    for (const [label, options] of [
      ['no certificate', {}],
      [
        'another CA',
        { cert: fs.readFileSync(stranger.certFile), key: fs.readFileSync(stranger.keyFile) },
      ],
    ] as const) {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: mutual.port,
        servername: 'localhost',
        ca: caPem,
        ...options,
      });
      const peer = sender(socket);
      socket.once('secureConnect', () => {
        peer.send(oru(`MTLS-${label}`, `RES-MTLS-${label}`));
      });
      await peer.waitFor(() => peer.closedAt() !== null, 5000);
      assert.notEqual(peer.closedAt(), null, `${label}: the server hung up`);
      assert.deepEqual(peer.acks(), [], label);
      assert.equal(await stored(`RES-MTLS-${label}`), 0, label);
    }
  });
});

function tempDirIn(parent: string): string {
  return fs.mkdtempSync(path.join(parent, 'ca-'));
}
