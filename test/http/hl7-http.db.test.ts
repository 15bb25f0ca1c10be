// HL7 v2 results over HTTP on both engines: a sample message becomes a result note and is
// acknowledged AA; a re-sent one is answered again and stored once; a corrected one is a new
// version; messages we cannot take get AR or AE with the reason.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Hl7Message } from '@medplum/core';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'hl7');
const sample = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

describeEachEngine('HL7 v2 results over HTTP', ({ url }) => {
  let h: Harness;
  let nurse: SignedIn;
  let patientId: string;
  let key: string;

  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    nurse = await h.newUser(admin, 'nurse');
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: nurse.token,
      body: {
        name: 'Rex',
        species: 'canine',
        identifiers: [{ system: 'microchip', value: '985112345678901' }],
      },
    });
    patientId = patient.json<{ id: string }>().id;
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'ProCyte Dx' },
    });
    key = created.json<{ key: string }>().key;
  });
  after(async () => {
    await h.close();
  });

  const post = (message: string, token = key, type = 'x-application/hl7-v2+er7') =>
    h.runtime.app.inject({
      method: 'POST',
      url: '/api/v1/integrations/hl7v2',
      headers: { authorization: `Bearer ${token}`, 'content-type': type },
      payload: message,
    });

  const ackOf = (body: string) => {
    const ack = Hl7Message.parse(body);
    return {
      code: ack.getSegment('MSA')?.getField(1).toString(),
      controlId: ack.getSegment('MSA')?.getField(2).toString(),
      error: ack.getSegment('ERR')?.toString() ?? null,
    };
  };

  const resultNotes = async () => {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes`,
      token: nurse.token,
    });
    return res
      .json<{ items: { kind: string; addenda: unknown[]; result: { version: number } | null }[] }>()
      .items.filter((n) => n.kind === 'result');
  };

  test('an ORU^R01 for a known microchip is stored, then acknowledged AA', async () => {
    const res = await post(sample('idexx-procyte-2.5.1.hl7'));
    assert.equal(res.statusCode, 200, res.body);
    assert.match(String(res.headers['content-type']), /hl7-v2/);
    assert.deepEqual(ackOf(res.body), { code: 'AA', controlId: 'PCY-000123', error: null });
    const notes = await resultNotes();
    assert.equal(notes.length, 1);
  });

  test('the same message re-sent (its ACK was lost) is answered AA again and stored once', async () => {
    const res = await post(sample('idexx-procyte-2.5.1.hl7'));
    assert.equal(ackOf(res.body).code, 'AA');
    assert.equal((await resultNotes()).length, 1);
  });

  test('a corrected message (OBX-11 = C, same result id) becomes version 2 of the same result', async () => {
    const res = await post(sample('corrected-2.5.1.hl7'));
    assert.equal(ackOf(res.body).code, 'AA', res.body);
    const notes = await resultNotes();
    assert.equal(notes.length, 1, 'still one result');
    const [note] = notes;
    assert.ok(note);
    assert.equal(note.result?.version, 2);
    assert.equal(note.addenda.length, 1);
  });

  test('messages we cannot take are refused with AR or AE and the reason, and store nothing', async () => {
    const before = (await h.runtime.db.read.selectFrom('results').select('id').execute()).length;
    const cases: [string, string, number, RegExp][] = [
      ['bad/adt-a01.hl7', 'AR', 400, /not supported/],
      ['bad/wrong-encoding.hl7', 'AR', 400, /encoding characters/],
      ['bad/no-control-id.hl7', 'AR', 400, /MSH-10/],
      ['bad/no-pid.hl7', 'AE', 422, /no PID/],
    ];
    for (const [file, code, status, reason] of cases) {
      const res = await post(sample(file));
      assert.equal(res.statusCode, status, `${file}: ${res.body}`);
      const ack = ackOf(res.body);
      assert.equal(ack.code, code, file);
      assert.match(ack.error ?? '', reason, file);
    }
    const reused = sample('idexx-procyte-2.5.1.hl7').replace('|38.2|', '|39.9|');
    const res = await post(reused);
    assert.equal(ackOf(res.body).code, 'AE', 'a control id reused for another message');
    const after = (await h.runtime.db.read.selectFrom('results').select('id').execute()).length;
    assert.equal(after, before);
  });

  test('only integration keys may post, and only HL7 text', async () => {
    assert.equal((await post(sample('idexx-procyte-2.5.1.hl7'), nurse.token)).statusCode, 404);
    assert.equal(
      (await post(sample('idexx-procyte-2.5.1.hl7'), key, 'application/json')).statusCode,
      415,
    );
  });
});
