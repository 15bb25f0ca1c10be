// HL7 v2 over MLLP on both engines, talking to our listener with the library client
// (@medplum/hl7 Hl7Client) and, for framing faults, with a bare TCP socket: every sample message
// is stored and acknowledged AA; a sender that disconnects before its ACK and re-sends is stored
// once; several messages in one read and one message over many reads are all answered; cut-off
// and over-long frames are answered AR/AE and store nothing; a burst of 10,000 results with 30%
// duplicates stores each result once.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Hl7Message } from '@medplum/core';
import { Hl7Client } from '@medplum/hl7';
import { startMllpEndpoint } from '../../src/integrations/mllp-endpoint.js';
import type { MllpListener } from '../../src/integrations/mllp-listener.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { awaitAuditSealed } from '../../src/audit-sealing/index.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'hl7');
const sample = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');
const VENDOR_SAMPLES = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.hl7'));
const MAX_BYTES = 256 * 1024;
const LISTENER = {
  mllpHost: '127.0.0.1',
  resultMaxBytes: MAX_BYTES,
  mllpIdleSeconds: 300,
  mllpTls: false,
  mllpTlsCa: '',
};
const VT = '\u000b';
const END = '\u001c\r';

/** A message of ours: its own control id (MSH-10) and result id (OBR-3). */
function oru(controlId: string, resultId: string, chip: string, hct = '38.2'): string {
  return [
    `MSH|^~\\&|BURST|LAB|CARETRAIL|CLINIC|20261123101500||ORU^R01^ORU_R01|${controlId}|P|2.5.1`,
    `PID|1||${chip}^^^MICROCHIP^MC||REX^DOG||20190301|M`,
    `OBR|1|ORD-${resultId}|${resultId}|CBC^Complete blood count^LAB|||20261123100500||||||||||||||||LAB|F`,
    `OBX|1|NM|HCT^Hematocrit^LAB||${hct}|%|37.3-61.7|N|||F`,
    `OBX|2|NM|WBC^White blood cells^LAB||19.5|K/uL|5.05-16.76|H|||F`,
    '',
  ].join('\r');
}

const ackOf = (message: Hl7Message | string) => {
  const ack = typeof message === 'string' ? Hl7Message.parse(message) : message;
  // getField is typed as always present; a field missing at the end is undefined at run time.
  const field = (n: number) =>
    (ack.getSegment('MSA')?.getField(n) as { toString(): string } | undefined)?.toString();
  return { code: field(1), controlId: field(2), text: field(3) ?? '' };
};

/** A bare TCP peer: writes whatever bytes a test wants and collects the framed answers. */
async function rawPeer(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('utf8');
  });
  const answers = () =>
    received
      .split(END)
      .filter((a) => a.startsWith(VT))
      .map((a) => ackOf(a.slice(1)));
  return {
    socket,
    write: (data: string | Buffer) =>
      new Promise<void>((resolve, reject) => {
        socket.write(data, (err) => {
          if (err) reject(err);
          else resolve();
        });
      }),
    async waitForAnswers(n: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (answers().length < n && Date.now() < deadline) await sleep(10);
      return answers();
    },
    close: () => {
      socket.destroy();
    },
  };
}

describeEachEngine('HL7 v2 over MLLP', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let nurse: SignedIn;
  let patientId: string;
  let keyId: string;
  let keyUserId: string;
  let listener: MllpListener;
  const chip = '985112345678901';

  const client = () =>
    new Hl7Client({ host: '127.0.0.1', port: listener.port, connectTimeout: 5000 });
  // Our own timeout: @medplum/hl7 4.5.2's `timeoutMs` timer is not cleared when the ACK arrives,
  // and when it fires it forgets a later message with the same MSH-10 on that connection (a
  // re-send), whose ACK is then never matched.
  const send = async (c: Hl7Client, text: string) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return ackOf(
        await Promise.race([
          c.sendAndWait(Hl7Message.parse(text)),
          new Promise<never>((_resolve, reject) => {
            timer = setTimeout(() => {
              reject(new Error('no ACK within 60 s'));
            }, 60_000);
          }),
        ]),
      );
    } finally {
      clearTimeout(timer);
    }
  };

  const resultRows = () =>
    h.runtime.db.read
      .selectFrom('results')
      .select(['id', 'source_result_id', 'status', 'current_version'])
      .where('integration_key_id', '=', keyId)
      .execute();
  const resultWith = async (resultId: string) =>
    (await resultRows()).filter((r) => r.source_result_id === resultId);

  before(async () => {
    h = await startHarness(url());
    admin = await h.newOrganization();
    nurse = await h.newUser(admin, 'nurse');
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: nurse.token,
      body: { name: 'Rex', species: 'canine', identifiers: [{ system: 'microchip', value: chip }] },
    });
    patientId = patient.json<{ id: string }>().id;
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'Reference lab (MLLP)' },
    });
    keyId = created.json<{ id: string }>().id;
    const row = await h.runtime.db.read
      .selectFrom('integration_keys')
      .select('user_id')
      .where('id', '=', keyId)
      .executeTakeFirstOrThrow();
    keyUserId = row.user_id;
    listener = await startMllpEndpoint(
      h.runtime.services,
      { ...LISTENER, mllpPort: 0, mllpKeyId: keyId },
      h.runtime.services.deps.log,
    );
  });
  after(async () => {
    await listener.close();
    await h.close();
  });

  test('the listener does not start without a live integration key', async () => {
    const config = { ...LISTENER, mllpPort: 0 };
    const log = h.runtime.services.deps.log;
    await assert.rejects(
      startMllpEndpoint(h.runtime.services, { ...config, mllpKeyId: '' }, log),
      /CARETRAIL_MLLP_KEY_ID/,
    );
    await assert.rejects(
      startMllpEndpoint(h.runtime.services, { ...config, mllpKeyId: 'no-such-key' }, log),
      /no live integration key/,
    );
  });

  test('sample messages of several versions and vendors are stored, then acknowledged AA', async () => {
    const c = client();
    try {
      for (const name of VENDOR_SAMPLES) {
        const text = sample(name);
        const ack = await send(c, text);
        const controlId = Hl7Message.parse(text).getSegment('MSH')?.getField(10).toString();
        assert.deepEqual([ack.code, ack.controlId], ['AA', controlId], `${name}: ${ack.text}`);
      }
    } finally {
      await c.close();
    }
    // Rex's CBC (then its correction: version 2 of the same result) and his radiograph report
    // reach his chart; the other two name animals not on record here and wait in the queue.
    const stored = new Map(
      (await resultRows()).map((r) => [r.source_result_id, [r.status, r.current_version]]),
    );
    assert.deepEqual(Object.fromEntries(stored), {
      'RES-5501': ['matched', 2],
      'IMG-3141': ['matched', 1],
      'VS2-9001-1': ['unmatched', 1],
      'AN-778': ['unmatched', 1],
    });
    const notes = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes?limit=100`,
      token: nurse.token,
    });
    const results = notes
      .json<{ items: { kind: string; result: { observations: { flag?: string }[] } | null }[] }>()
      .items.filter((n) => n.kind === 'result');
    assert.equal(results.length, 2);
    const flags = results.flatMap((n) => n.result?.observations.map((o) => o.flag) ?? []);
    assert.ok(flags.includes('H') && flags.includes('LL'), 'abnormal flags are carried');
  });

  test('a sender that disconnects before its ACK and sends again is stored once', async () => {
    const text = oru('DISC-1', 'RES-DISC', chip);
    const peer = await rawPeer(listener.port);
    await peer.write(`${VT}${text}${END}`);
    peer.close();
    // The message is stored even though nobody is left to hear the ACK.
    const deadline = Date.now() + 10_000;
    while ((await resultWith('RES-DISC')).length === 0 && Date.now() < deadline) await sleep(20);
    const c = client();
    try {
      const again = await send(c, text);
      assert.deepEqual([again.code, again.controlId], ['AA', 'DISC-1']);
    } finally {
      await c.close();
    }
    const rows = await resultWith('RES-DISC');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.current_version, 1);
  });

  test('several messages in one TCP write are each stored and answered, in order', async () => {
    const peer = await rawPeer(listener.port);
    try {
      const texts = [1, 2, 3].map((i) => oru(`MULTI-${i}`, `RES-MULTI-${i}`, chip));
      await peer.write(texts.map((t) => `${VT}${t}${END}`).join(''));
      const answers = await peer.waitForAnswers(3);
      assert.deepEqual(
        answers.map((a) => [a.code, a.controlId]),
        [
          ['AA', 'MULTI-1'],
          ['AA', 'MULTI-2'],
          ['AA', 'MULTI-3'],
        ],
      );
      for (const i of [1, 2, 3]) assert.equal((await resultWith(`RES-MULTI-${i}`)).length, 1);
    } finally {
      peer.close();
    }
  });

  test('one message split across many TCP reads (its FS and CR apart) is stored once', async () => {
    const peer = await rawPeer(listener.port);
    try {
      const frame = Buffer.from(`${VT}${oru('SPLIT-1', 'RES-SPLIT', chip)}${END}`);
      const cuts = [1, 17, 60, frame.length - 1];
      let from = 0;
      for (const cut of [...cuts, frame.length]) {
        await peer.write(frame.subarray(from, cut));
        await sleep(30);
        from = cut;
      }
      const [answer] = await peer.waitForAnswers(1);
      assert.deepEqual([answer?.code, answer?.controlId], ['AA', 'SPLIT-1']);
      assert.equal((await resultWith('RES-SPLIT')).length, 1);
    } finally {
      peer.close();
    }
  });

  test('a frame cut off by the sender’s disconnect stores nothing and gets no ACK', async () => {
    const peer = await rawPeer(listener.port);
    const text = oru('CUT-1', 'RES-CUT', chip);
    await peer.write(`${VT}${text.slice(0, text.length - 40)}`);
    await sleep(100);
    peer.close();
    await sleep(200);
    assert.deepEqual(await resultWith('RES-CUT'), []);
    // The listener still serves the next connection.
    const c = client();
    try {
      assert.equal((await send(c, oru('CUT-2', 'RES-CUT-2', chip))).code, 'AA');
    } finally {
      await c.close();
    }
  });

  test('a frame cut off by the start of the next is answered AR; the next is stored', async () => {
    const peer = await rawPeer(listener.port);
    try {
      const cut = oru('TRUNC-1', 'RES-TRUNC-1', chip);
      await peer.write(
        `${VT}${cut.slice(0, 150)}${VT}${oru('TRUNC-2', 'RES-TRUNC-2', chip)}${END}`,
      );
      const answers = await peer.waitForAnswers(2);
      assert.deepEqual(
        answers.map((a) => [a.code, a.controlId]),
        [
          ['AR', 'TRUNC-1'],
          ['AA', 'TRUNC-2'],
        ],
      );
      assert.match(answers[0]?.text ?? '', /cut off/);
      assert.deepEqual(await resultWith('RES-TRUNC-1'), []);
      assert.equal((await resultWith('RES-TRUNC-2')).length, 1);
    } finally {
      peer.close();
    }
  });

  test('a message over the size limit is answered AE and not stored; the connection goes on', async () => {
    const c = client();
    try {
      const huge = `${oru('HUGE-1', 'RES-HUGE', chip)}NTE|1||${'x'.repeat(MAX_BYTES)}\r`;
      const ack = await send(c, huge);
      assert.deepEqual([ack.code, ack.controlId], ['AE', 'HUGE-1']);
      assert.match(ack.text, /larger than/);
      assert.deepEqual(await resultWith('RES-HUGE'), []);
      assert.equal((await send(c, oru('HUGE-2', 'RES-HUGE-2', chip))).code, 'AA');
    } finally {
      await c.close();
    }
  });

  test('messages we cannot read or accept get AR/AE with the reason, and store nothing', async () => {
    const before = (await resultRows()).length;
    const peer = await rawPeer(listener.port);
    try {
      const bad = ['adt-a01.hl7', 'wrong-encoding.hl7', 'no-control-id.hl7', 'no-pid.hl7'].map(
        (name) => sample(path.join('bad', name)),
      );
      await peer.write(bad.map((t) => `${VT}${t}${END}`).join(''));
      const answers = await peer.waitForAnswers(bad.length);
      assert.deepEqual(
        answers.map((a) => a.code),
        ['AR', 'AR', 'AR', 'AE'],
      );
      assert.ok(
        answers.every((a) => a.text.length > 0),
        'every refusal says why',
      );
    } finally {
      peer.close();
    }
    assert.equal((await resultRows()).length, before);
  });

  test('every message is audited with the integration key as the actor, refusals included', async () => {
    // Read as the audit search reads: after what was committed is sealed (PostgreSQL).
    await awaitAuditSealed(h.runtime.services.deps);
    const events = await h.runtime.db.read
      .selectFrom('audit_events')
      .select(['type', 'outcome', 'actor_user_id'])
      .where('actor_user_id', '=', keyUserId)
      .execute();
    assert.ok(events.some((e) => e.type === 'result.receive' && e.outcome === 'success'));
    assert.ok(events.some((e) => e.type === 'result.receive.replay'));
    assert.ok(
      events.some((e) => e.outcome !== 'success'),
      'refused messages leave an event too',
    );
    assert.ok(events.every((e) => e.actor_user_id === keyUserId));
  });

  test('a burst of 10,000 results with 30% duplicates stores each result once', async () => {
    const chips = Array.from({ length: 20 }, (_, i) => `9850000000${String(i).padStart(5, '0')}`);
    const burstPatients: string[] = [];
    for (const [i, c] of chips.entries()) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: nurse.token,
        body: {
          name: `Burst ${i}`,
          species: 'feline',
          identifiers: [{ system: 'microchip', value: c }],
        },
      });
      assert.equal(res.statusCode, 201);
      burstPatients.push(res.json<{ id: string }>().id);
    }
    const unique = 7000;
    const messages: string[] = [];
    for (let i = 0; i < unique; i++)
      messages.push(oru(`B-${i}`, `RES-B-${i}`, chips[i % 20] ?? ''));
    // 1,500 re-sends of the same message (lost ACK) and 1,500 new messages with a result
    // already stored (same OBR-3, same values).
    for (let i = 0; i < 1500; i++)
      messages.push(oru(`B-${i * 4}`, `RES-B-${i * 4}`, chips[(i * 4) % 20] ?? ''));
    for (let i = 0; i < 1500; i++)
      messages.push(oru(`B-again-${i}`, `RES-B-${i * 4 + 1}`, chips[(i * 4 + 1) % 20] ?? ''));
    // A fixed shuffle (seeded), so a failure can be replayed.
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = messages.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [messages[i], messages[j]] = [messages[j] ?? '', messages[i] ?? ''];
    }
    const codes = new Map<string, number>();
    let next = 0;
    const connections = 8;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        const c = client();
        try {
          for (let m = messages[next++]; m !== undefined; m = messages[next++]) {
            const { code } = await send(c, m);
            codes.set(code ?? '?', (codes.get(code ?? '?') ?? 0) + 1);
          }
        } finally {
          await c.close();
        }
      }),
    );
    assert.deepEqual(Object.fromEntries(codes), { AA: 10_000 });
    const rows = (await resultRows()).filter((r) => r.source_result_id?.startsWith('RES-B-'));
    assert.equal(rows.length, unique);
    assert.ok(rows.every((r) => r.status === 'matched' && r.current_version === 1));
    // One note per result on the burst patients' charts: no duplicate reached a chart.
    const notes = await h.runtime.db.read
      .selectFrom('notes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('kind', '=', 'result')
      .where('patient_id', 'in', burstPatients)
      .executeTakeFirstOrThrow();
    assert.equal(Number(String(notes.n)), unique);
  });
});
