// Device results over the JSON webhook on both engines: matched into the chart, waiting
// unmatched, signed, sent twice, corrected, and audited with the integration key as the actor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { signatureOf } from '../../src/services/result.service.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

interface Answer {
  id: string;
  status: string;
  version: number;
  duplicate: boolean;
}

interface NoteJson {
  id: string;
  kind: string;
  status: string;
  authorId: string;
  body: string;
  addenda: { body: string }[];
  result: {
    id: string;
    version: number;
    abnormal: boolean;
    observations: { code: string; value: number | string; flag?: string }[];
  } | null;
}

const MICROCHIP = '985112345678901';

const cbc = (overrides: Record<string, unknown> = {}) => ({
  patient: { identifier: { system: 'microchip', value: MICROCHIP } },
  source: 'procyte-dx',
  kind: 'lab',
  observations: [
    {
      code: 'HCT',
      display: 'Hematocrit',
      value: 38.2,
      unit: '%',
      referenceRange: '37.3-61.7',
      flag: 'N',
    },
    {
      code: 'WBC',
      display: 'White blood cells',
      value: 19.5,
      unit: 'K/uL',
      referenceRange: '5.05-16.76',
      flag: 'H',
    },
  ],
  ...overrides,
});

describeEachEngine('device results (JSON webhook)', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let nurse: SignedIn;
  let patientId: string;
  let key: { id: string; key: string; secret: string };

  before(async () => {
    h = await startHarness(url());
    admin = await h.newOrganization();
    nurse = await h.newUser(admin, 'nurse');
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: nurse.token,
      body: {
        name: 'Rex',
        species: 'canine',
        identifiers: [{ system: 'microchip', value: MICROCHIP }],
      },
    });
    assert.equal(patient.statusCode, 201, patient.body);
    patientId = patient.json<{ id: string }>().id;
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'ProCyte Dx analyzer' },
    });
    assert.equal(created.statusCode, 201, created.body);
    key = created.json();
  });
  after(async () => {
    await h.close();
  });

  const send = (body: unknown, headers: Record<string, string> = {}, token = key.key) =>
    h.request({ method: 'POST', url: '/api/v1/integrations/results', token, body, headers });

  const notes = async () => {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes`,
      token: nurse.token,
    });
    return res.json<{ items: NoteJson[] }>().items.filter((n) => n.kind === 'result');
  };

  const resultCount = async () =>
    (await h.runtime.db.read.selectFrom('results').select('id').execute()).length;

  test('a result for a known microchip lands in the chart as a final result note with its observations', async () => {
    const res = await send(cbc({ resultId: 'RES-1' }));
    assert.equal(res.statusCode, 201, res.body);
    const answer = res.json<Answer>();
    assert.deepEqual([answer.status, answer.version, answer.duplicate], ['matched', 1, false]);
    const [note] = await notes();
    assert.ok(note, 'a result note');
    assert.equal(note.status, 'final');
    assert.match(note.body, /White blood cells \(WBC\): 19\.5 K\/uL \[5\.05-16\.76\] H/);
    assert.ok(note.result);
    assert.equal(note.result.abnormal, true, 'the abnormal flag is in the data');
    assert.deepEqual(
      note.result.observations.map((o) => [o.code, o.value, o.flag]),
      [
        ['HCT', 38.2, 'N'],
        ['WBC', 19.5, 'H'],
      ],
    );
    const events = await h.runtime.db.read
      .selectFrom('outbox')
      .select('payload')
      .where('topic', '=', 'event')
      .execute();
    assert.ok(
      events.some((e) => (JSON.parse(e.payload) as { type: string }).type === 'result.received'),
      'subscribers hear of it',
    );
  });

  test('the same result sent again is stored once; changed values are a correction, a new version', async () => {
    const before = await resultCount();
    const first = (await send(cbc({ resultId: 'RES-2' }))).json<Answer>();
    const again = (await send(cbc({ resultId: 'RES-2' }))).json<Answer>();
    assert.deepEqual([again.id, again.duplicate, again.version], [first.id, true, 1]);
    assert.equal(await resultCount(), before + 1);
    const corrected = cbc({
      resultId: 'RES-2',
      observations: [{ code: 'HCT', display: 'Hematocrit', value: 41, unit: '%', flag: 'N' }],
    });
    const fixed = (await send(corrected)).json<Answer>();
    assert.deepEqual([fixed.id, fixed.version, fixed.duplicate], [first.id, 2, false]);
    assert.equal(await resultCount(), before + 1, 'still one result');
    const note = (await notes()).find((n) => n.result?.id === first.id);
    assert.ok(note?.result);
    assert.equal(note.result.version, 2);
    assert.equal(note.addenda.length, 1, 'the correction is an addendum, the final note unchanged');
    assert.match(note.addenda[0]?.body ?? '', /Corrected result \(version 2\)/);
  });

  test('with an Idempotency-Key a retry gets the first answer back', async () => {
    const headers = { 'idempotency-key': 'procyte-777' };
    const first = await send(cbc(), headers);
    const retry = await send(cbc(), headers);
    assert.equal(retry.statusCode, 201);
    assert.equal(retry.headers['idempotent-replayed'], 'true');
    assert.equal(retry.json<Answer>().id, first.json<Answer>().id);
  });

  test('a signed body is checked: a wrong signature is 401 and stores nothing', async () => {
    const body = JSON.stringify(cbc({ resultId: 'RES-SIGNED' }));
    const before = await resultCount();
    const bad = await send(body, {
      'content-type': 'application/json',
      'x-caretrail-signature': signatureOf('not the secret', body),
    });
    assert.equal(bad.statusCode, 401, bad.body);
    assert.equal(await resultCount(), before, 'nothing stored');
    const good = await send(body, {
      'content-type': 'application/json',
      'x-caretrail-signature': signatureOf(key.secret, body),
    });
    assert.equal(good.statusCode, 201, good.body);
  });

  test('an unknown microchip waits in the unmatched queue until staff assign it or discard it', async () => {
    const stray = cbc({
      patient: { identifier: { system: 'microchip', value: '900000000000001' } },
    });
    const a = (await send(stray)).json<Answer>();
    const b = (await send({ ...stray, resultId: 'STRAY-2' })).json<Answer>();
    assert.equal(a.status, 'unmatched');
    const queue = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched',
      token: nurse.token,
    });
    assert.equal(queue.statusCode, 200, queue.body);
    const waiting = queue.json<{ items: { id: string; identifiers: { value: string }[] }[] }>()
      .items;
    assert.deepEqual(waiting.map((w) => w.id).sort(), [a.id, b.id].sort());
    const assigned = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${a.id}/assign`,
      token: nurse.token,
      body: { patientId },
    });
    assert.equal(assigned.statusCode, 200, assigned.body);
    assert.ok(
      (await notes()).some((n) => n.result?.id === a.id),
      'now in the chart',
    );
    const discarded = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${b.id}/discard`,
      token: nurse.token,
      body: { reason: 'quality control sample' },
    });
    assert.equal(discarded.statusCode, 200, discarded.body);
    const after = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched',
      token: nurse.token,
    });
    assert.deepEqual(after.json<{ items: unknown[] }>().items, []);
    const twice = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${a.id}/assign`,
      token: nurse.token,
      body: { patientId },
    });
    assert.equal(twice.statusCode, 404, 'an assigned result is no longer in the queue');
  });

  test('a key of another organization never reaches this clinic’s patients', async () => {
    const otherAdmin = await h.newOrganization();
    const other = (
      await h.request({
        method: 'POST',
        url: '/api/v1/integrations/keys',
        token: otherAdmin.token,
        body: { name: 'Other lab' },
      })
    ).json<{ key: string }>();
    const res = await send(cbc({ resultId: 'OTHER-1' }), {}, other.key);
    assert.equal(
      res.json<Answer>().status,
      'unmatched',
      'the same microchip elsewhere is not ours',
    );
    const theirs = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched',
      token: nurse.token,
    });
    assert.ok(
      !theirs.body.includes(res.json<Answer>().id),
      'and it waits in their queue, not ours',
    );
  });

  test('people cannot post results, keys cannot read the queue, and bad results are 400', async () => {
    assert.equal((await send(cbc(), {}, nurse.token)).statusCode, 404);
    const asKey = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched',
      token: key.key,
    });
    assert.equal(asKey.statusCode, 404);
    for (const bad of [
      cbc({ observations: [] }),
      cbc({ kind: 'astrology' }),
      cbc({ observations: [{ code: 'HCT', value: 1, flag: 'VERY-HIGH' }] }),
      cbc({ patient: { identifier: { system: 'horoscope', value: 'X1' } } }),
    ]) {
      const res = await send(bad);
      assert.equal(res.statusCode, 400, res.body);
    }
    const notJson = await send('{"patient": ', { 'content-type': 'application/json' });
    assert.equal(notJson.statusCode, 400);
  });

  test('the original body of each version is kept and readable, byte for byte', async () => {
    const first = JSON.stringify(cbc({ resultId: 'RES-ORIG' }));
    const json = { 'content-type': 'application/json' };
    const answer = (await send(first, json)).json<Answer>();
    const corrected = JSON.stringify(
      cbc({ resultId: 'RES-ORIG', observations: [{ code: 'HCT', value: 41 }] }),
    );
    assert.equal((await send(corrected, json)).json<Answer>().version, 2);
    const read = (query = '') =>
      h.request({
        method: 'GET',
        url: `/api/v1/results/${answer.id}/original${query}`,
        token: nurse.token,
      });
    const v1 = await read('?version=1');
    assert.equal(v1.statusCode, 200, v1.body);
    assert.equal(v1.body, first);
    assert.match(String(v1.headers['content-type']), /^application\/json/);
    assert.match(String(v1.headers['content-disposition']), /^attachment/);
    const current = await read();
    assert.deepEqual([current.body, current.headers['x-result-version']], [corrected, '2']);
    assert.equal((await read('?version=3')).statusCode, 404);
    // Another organization's staff do not learn that it exists.
    const other = await h.newOrganization();
    const stranger = await h.request({
      method: 'GET',
      url: `/api/v1/results/${answer.id}/original`,
      token: other.token,
    });
    assert.equal(stranger.statusCode, 404);
  });

  test('results are audited with the integration key as the actor, named in the access report', async () => {
    const audit = await h.request({
      method: 'GET',
      url: `/api/v1/audit?patientId=${patientId}&limit=500`,
      token: admin.token,
    });
    const events = audit.json<{
      items: { type: string; actor: { role: string | null; userId: string | null } }[];
    }>().items;
    const received = events.filter((e) => e.type === 'result.receive');
    assert.ok(received.length > 0);
    assert.ok(received.every((e) => e.actor.role === 'integration'));
    const report = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/access-report?limit=500`,
      token: admin.token,
    });
    assert.ok(report.body.includes('ProCyte Dx analyzer'), 'the key’s name is who did it');
    // The key's account authors the notes but is no staff member and cannot sign in.
    const users = await h.request({ method: 'GET', url: '/api/v1/users', token: admin.token });
    assert.ok(!users.body.includes('ProCyte Dx analyzer'));
    const [note] = await notes();
    const login = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: `integration-${key.id}@integrations.invalid`, password: '!' },
    });
    assert.equal(login.statusCode, 401);
    assert.ok(note);
  });

  test('a late re-send of an old version is a duplicate, not a correction back', async () => {
    const v1 = (await send(cbc({ resultId: 'RES-LATE' }))).json<Answer>();
    const changed = cbc({ resultId: 'RES-LATE', observations: [{ code: 'HCT', value: 40 }] });
    assert.equal((await send(changed)).json<Answer>().version, 2);
    const late = (await send(cbc({ resultId: 'RES-LATE' }))).json<Answer>();
    assert.deepEqual([late.id, late.version, late.duplicate], [v1.id, 1, true]);
  });

  test('a resultId re-sent for another patient is refused; another key’s equal id is its own result', async () => {
    const first = (await send(cbc({ resultId: 'RES-MOVE' }))).json<Answer>();
    const elsewhere = await send(
      cbc({
        resultId: 'RES-MOVE',
        patient: { identifier: { system: 'microchip', value: '900000000000777' } },
        observations: [{ code: 'HCT', value: 12 }],
      }),
    );
    assert.equal(elsewhere.statusCode, 409, elsewhere.body);
    const second = (
      await h.request({
        method: 'POST',
        url: '/api/v1/integrations/keys',
        token: admin.token,
        body: { name: 'Second analyzer' },
      })
    ).json<{ key: string }>();
    const theirs = await send(
      cbc({ resultId: 'RES-MOVE', observations: [{ code: 'HCT', value: 99 }] }),
      {},
      second.key,
    );
    const answer = theirs.json<Answer>();
    assert.notEqual(answer.id, first.id, 'one device cannot rewrite another one’s result');
    assert.equal(answer.version, 1);
  });

  test('a correction of a discarded result puts it back in the queue', async () => {
    const stray = cbc({
      resultId: 'RES-DISCARDED',
      patient: { identifier: { system: 'microchip', value: '900000000000888' } },
    });
    const queued = (await send(stray)).json<Answer>();
    const discarded = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${queued.id}/discard`,
      token: nurse.token,
      body: { reason: 'quality control sample' },
    });
    assert.equal(discarded.statusCode, 200);
    const fixed = (
      await send({ ...stray, observations: [{ code: 'HCT', value: 44 }] })
    ).json<Answer>();
    assert.deepEqual([fixed.status, fixed.version], ['unmatched', 2]);
    const queue = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched',
      token: nurse.token,
    });
    assert.ok(queue.body.includes(queued.id));
  });

  test('signatures are checked before replays, and many signed results at once all land', async () => {
    const body = JSON.stringify(cbc({ resultId: 'RES-SIGNED-REPLAY' }));
    const headers = { 'content-type': 'application/json', 'idempotency-key': 'signed-replay' };
    const good = await send(body, {
      ...headers,
      'x-caretrail-signature': signatureOf(key.secret, body),
    });
    assert.equal(good.statusCode, 201);
    const forged = await send(body, {
      ...headers,
      'x-caretrail-signature': signatureOf('guess', body),
    });
    assert.equal(forged.statusCode, 401, 'a replay needs the right signature too');
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_v, i) => {
        const text = JSON.stringify(cbc({ resultId: `RES-BURST-${i}` }));
        return send(text, {
          'content-type': 'application/json',
          'x-caretrail-signature': signatureOf(key.secret, text),
        });
      }),
    );
    assert.deepEqual(
      [...new Set(answers.map((a) => a.statusCode))],
      [201],
      answers
        .map((a) => a.body)
        .join('\n')
        .slice(0, 500),
    );
  });
});
