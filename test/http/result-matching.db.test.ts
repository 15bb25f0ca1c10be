// Matching results to patients beyond the identifier, on both engines: by name + species + owner
// surname + birth date when the source sends no known identifier (never on a tie, never with a
// part missing, and not at all when switched off); and by the source's own patient id once staff
// have assigned one of its results (per integration key).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

interface Answer {
  id: string;
  status: string;
  version: number;
  duplicate: boolean;
}

let counter = 0;
const result = (patient: Record<string, unknown>) => ({
  patient,
  source: 'VetScan HM5',
  kind: 'lab',
  resultId: `RES-${++counter}`,
  observations: [{ code: 'WBC', value: '19.5', unit: 'K/uL', flag: 'H' }],
});

const BELLA = { name: 'BELLA', species: 'Cat', ownerSurname: 'whitaker', birthDate: '2015-06-12' };

describeEachEngine('result matching', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let nurse: SignedIn;
  let bellaId: string;
  let key: string;
  let otherKey: string;

  const newPatient = async (body: Record<string, unknown>) => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: nurse.token,
      body,
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ id: string }>().id;
  };
  const newKey = async (name: string) => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name },
    });
    return res.json<{ key: string }>().key;
  };
  const send = async (body: unknown, token = key) => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token,
      body,
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<Answer>();
  };
  const patientOf = async (resultId: string) =>
    (
      await h.runtime.db.read
        .selectFrom('results')
        .select('patient_id')
        .where('id', '=', resultId)
        .executeTakeFirstOrThrow()
    ).patient_id;

  before(async () => {
    h = await startHarness(url());
    admin = await h.newOrganization();
    nurse = await h.newUser(admin, 'nurse');
    bellaId = await newPatient({
      name: 'Bella',
      species: 'feline',
      birthDate: '2015-06-12',
      owners: [{ name: 'Jane Whitaker', email: 'jane.whitaker@example.test' }],
    });
    key = await newKey('VetScan HM5');
    otherKey = await newKey('Reference lab');
  });
  after(async () => {
    await h.close();
  });

  test('no identifier: name, species, owner surname and birth date that fit one patient match it', async () => {
    const answer = await send(result(BELLA));
    assert.equal(answer.status, 'matched');
    assert.equal(await patientOf(answer.id), bellaId);
  });

  test('an identifier nobody has falls back to the same four', async () => {
    const answer = await send(
      result({ identifier: { system: 'microchip', value: '900111222333444' }, ...BELLA }),
    );
    assert.equal(answer.status, 'matched');
    assert.equal(await patientOf(answer.id), bellaId);
  });

  test('any of the four missing or different: the result waits in the queue', async () => {
    for (const patient of [
      { ...BELLA, birthDate: undefined },
      { ...BELLA, ownerSurname: 'Whitakers' },
      { ...BELLA, species: 'Dog' },
      { ...BELLA, species: 'Unicorn' },
      { ...BELLA, birthDate: '2015-06-13' },
    ]) {
      const answer = await send(result(patient));
      assert.equal(answer.status, 'unmatched', JSON.stringify(patient));
    }
    const queue = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched?limit=100',
      token: nurse.token,
    });
    const items = queue.json<{ items: { patient: Record<string, string> }[] }>().items;
    assert.ok(
      items.some((i) => i.patient.ownerSurname === 'Whitakers' && i.patient.name === 'BELLA'),
      'staff see what the source said about the animal',
    );
  });

  test('two patients that fit are a tie: never matched automatically', async () => {
    const twin = {
      name: 'Milo',
      species: 'canine',
      birthDate: '2020-01-05',
      owners: [{ name: 'Sam Okafor' }],
    };
    await newPatient(twin);
    const single = await send(
      result({ name: 'Milo', species: 'dog', ownerSurname: 'Okafor', birthDate: '2020-01-05' }),
    );
    assert.equal(single.status, 'matched');
    await newPatient({ ...twin, owners: [{ name: 'Ada Okafor' }] });
    const tie = await send(
      result({ name: 'Milo', species: 'dog', ownerSurname: 'Okafor', birthDate: '2020-01-05' }),
    );
    assert.equal(tie.status, 'unmatched');
    assert.equal(await patientOf(tie.id), null);
  });

  test('a result naming neither an identifier nor the patient is refused', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token: key,
      body: result({ name: 'Bella' }),
    });
    assert.equal(res.statusCode, 201, 'a partial description is kept for staff');
    assert.equal(res.json<Answer>().status, 'unmatched');
    const none = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token: key,
      body: result({}),
    });
    assert.equal(none.statusCode, 400);
    assert.match(none.json<{ error: { message: string } }>().error.message, /patient/);
  });

  test('the source’s own patient id matches once staff assigned one of its results, for that key only', async () => {
    const sourceId = { system: 'external', value: 'VS-PT-0042' };
    const first = await send(result({ identifier: sourceId }));
    assert.equal(first.status, 'unmatched');
    const assigned = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${first.id}/assign`,
      token: nurse.token,
      body: { patientId: bellaId },
    });
    assert.equal(assigned.statusCode, 200, assigned.body);
    const next = await send(result({ identifier: sourceId }));
    assert.equal(next.status, 'matched');
    assert.equal(await patientOf(next.id), bellaId);
    // Another device's "VS-PT-0042" is its own numbering: no match from this mapping.
    const other = await send(result({ identifier: sourceId }), otherKey);
    assert.equal(other.status, 'unmatched');
  });

  test('HL7 without PID-3 matches by PID-5 (owner^animal), PID-7, PID-35', async () => {
    const message = [
      'MSH|^~\\&|VETSCAN|CLINIC|CARETRAIL|CLINIC|20261123101500||ORU^R01|VS-77|P|2.5.1',
      'PID|1||||WHITAKER^BELLA||20150612|F|||||||||||||||||||||||||||CAT^Feline',
      'OBR|1||VS-R-77|CHEM^Chemistry|||20261123100500',
      'OBX|1|NM|GLU^Glucose||7.9|mmol/L|3.9-7.2|H|||F',
      '',
    ].join('\r');
    const res = await h.runtime.app.inject({
      method: 'POST',
      url: '/api/v1/integrations/hl7v2',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'x-application/hl7-v2+er7' },
      payload: message,
    });
    assert.equal(res.statusCode, 200, res.body);
    const row = await h.runtime.db.read
      .selectFrom('results')
      .select(['patient_id', 'status'])
      .where('source_result_id', '=', 'VS-R-77')
      .executeTakeFirstOrThrow();
    assert.deepEqual(row, { patient_id: bellaId, status: 'matched' });
  });
});

describeEachEngine('result matching switched off', ({ url }) => {
  let h: Harness;
  after(async () => {
    await h.close();
  });

  test('with CARETRAIL_RESULT_FALLBACK_MATCH=false only identifiers match', async () => {
    h = await startHarness(url(), { CARETRAIL_RESULT_FALLBACK_MATCH: 'false' });
    const admin = await h.newOrganization();
    await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: admin.token,
      body: {
        ...{ name: 'Bella', species: 'feline', birthDate: '2015-06-12' },
        owners: [{ name: 'Jane Whitaker' }],
      },
    });
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'VetScan' },
    });
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token: created.json<{ key: string }>().key,
      body: result(BELLA),
    });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json<Answer>().status, 'unmatched');
  });
});
