// Defects the schema-driven fuzzer (test/faults/fuzz.db.test.ts) found, one test each: the
// request it sent now gets a 4xx in the one error shape and changes nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

function expectError(res: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json<{ error: { code: string; message: string; requestId: string } }>();
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'requestId'], res.body);
  assert.equal(body.error.code, code, res.body);
  assert.equal(body.error.requestId, res.headers['x-request-id']);
  assert.doesNotMatch(res.body, /Boundary not found|node_modules|\bat \S+ \(/, 'no internals');
}

describeEachEngine('requests the fuzzer found', ({ url }) => {
  let h: Harness;
  let clinician: SignedIn;
  let patientId: string;

  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    clinician = await h.newUser(admin, 'clinician');
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: clinician.token,
      body: { name: 'Rex', species: 'canine' },
    });
    assert.equal(res.statusCode, 201, res.body);
    patientId = res.json<{ id: string }>().id;
  });
  after(async () => {
    await h.close();
  });

  async function documentCount(): Promise<number> {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/documents`,
      token: clinician.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ items: unknown[] }>().items.length;
  }

  test('an upload whose multipart Content-Type has no boundary is a 400, not a 500', async () => {
    const before = await documentCount();
    const upload = await h.runtime.app.inject({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/documents`,
      headers: {
        authorization: `Bearer ${clinician.token}`,
        'content-type': 'multipart/form-data',
      },
      payload: Buffer.from(
        '--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nhi\r\n--x--\r\n',
      ),
    });
    expectError(upload, 400, 'invalid');
    assert.match(upload.json<{ error: { message: string } }>().error.message, /boundary/);
    assert.equal(await documentCount(), before, 'nothing was stored');
  });

  /** A multipart body: `fields` text parts, then a small text file part. */
  function fieldsThenFile(fields: number): { payload: Buffer; contentType: string } {
    const b = 'fuzzregression';
    let body = '';
    for (let i = 0; i < fields; i++)
      body += `--${b}\r\nContent-Disposition: form-data; name="title"\r\n\r\nx\r\n`;
    body += `--${b}\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\nContent-Type: text/plain\r\n\r\nabc\r\n--${b}--\r\n`;
    return { payload: Buffer.from(body), contentType: `multipart/form-data; boundary=${b}` };
  }

  /** The answer, or a failure after 10 s: these requests used to wait forever. */
  async function answered(
    request: Promise<LightMyRequestResponse>,
  ): Promise<LightMyRequestResponse> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        request,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error('no answer within 10 s'));
          }, 10_000);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  test('an upload with more fields than allowed before its file is a 400, not a request that never ends', async () => {
    const before = await documentCount();
    const form = fieldsThenFile(7);
    const res = await answered(
      h.runtime.app.inject({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/documents`,
        headers: { authorization: `Bearer ${clinician.token}`, 'content-type': form.contentType },
        payload: form.payload,
      }),
    );
    expectError(res, 400, 'invalid');
    assert.equal(await documentCount(), before, 'nothing was stored');
  });

  test('a DICOM upload with a text field before its file is a 400, not a request that never ends', async () => {
    const admin = await h.newOrganization();
    const key = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'Imaging' },
    });
    assert.equal(key.statusCode, 201, key.body);
    const form = fieldsThenFile(1);
    const res = await answered(
      h.runtime.app.inject({
        method: 'POST',
        url: '/api/v1/integrations/dicom',
        headers: {
          authorization: `Bearer ${key.json<{ key: string }>().key}`,
          'content-type': form.contentType,
        },
        payload: form.payload,
      }),
    );
    expectError(res, 400, 'invalid');
  });

  test('an HL7 v2 value longer than the JSON limit is refused with an ACK, and the unmatched queue still lists', async () => {
    const admin = await h.newOrganization();
    const nurse = await h.newUser(admin, 'nurse');
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'Analyzer' },
    });
    assert.equal(created.statusCode, 201, created.body);
    const key = created.json<{ key: string }>().key;
    const hl7 = (value: string) =>
      h.runtime.app.inject({
        method: 'POST',
        url: '/api/v1/integrations/hl7v2',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'x-application/hl7-v2+er7' },
        payload: [
          `MSH|^~\\&|ANALYZER|LAB|CARETRAIL||20261123101500||ORU^R01|M-${value.length}|P|2.5.1`,
          'PID|1||900000000000042^^^MICROCHIP^MC',
          `OBX|1|NM|HCT^Hematocrit||${value}|%|37-55|N|||F`,
        ].join('\r'),
      });
    const refused = await hl7('é'.repeat(10_001));
    assert.equal(refused.statusCode, 422, refused.body);
    assert.match(refused.body, /MSA\|AE\|/);
    assert.match(refused.body, /longer than 10000 characters/);
    const accepted = await hl7('é'.repeat(10_000));
    assert.equal(accepted.statusCode, 200, accepted.body);
    const list = await h.request({
      method: 'GET',
      url: '/api/v1/integrations/unmatched',
      token: nurse.token,
    });
    assert.equal(list.statusCode, 200, list.body);
    assert.equal(list.json<{ items: unknown[] }>().items.length, 1, 'only the accepted one');
  });
});
