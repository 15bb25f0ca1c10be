// Files that come with results, on both engines: a PDF report in an HL7 ED value or in a JSON
// result becomes an internal document on the patient's chart, named by the result note; a result
// waiting unmatched keeps its file until staff assign it; a re-sent duplicate stores no second
// copy and leaves no stray blob behind.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { filesUnder } from '../helpers/storage.js';

const PDF = Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n');
const CHIP = '985112345678901';
const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'hl7');

interface Answer {
  id: string;
  status: string;
  duplicate: boolean;
}
interface NoteJson {
  id: string;
  kind: string;
  result: { id: string; documentIds: string[] } | null;
}

describeEachEngine('result attachments', ({ url }) => {
  let h: Harness;
  let nurse: SignedIn;
  let patientId: string;
  let key: string;

  const report = (resultId: string, chip = CHIP) => ({
    patient: { identifier: { system: 'microchip', value: chip } },
    source: 'Reference lab',
    kind: 'lab',
    resultId,
    observations: [{ code: 'T4', display: 'Total T4', value: '2.1', unit: 'ug/dL' }],
    attachments: [{ filename: 'T4 report.pdf', data: PDF.toString('base64') }],
  });
  const send = async (body: unknown) => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token: key,
      body,
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<Answer>();
  };
  const resultNote = async (resultId: string) => {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes?limit=100`,
      token: nurse.token,
    });
    return res.json<{ items: NoteJson[] }>().items.find((n) => n.result?.id === resultId);
  };
  const documentOf = async (id: string) => {
    const meta = await h.request({
      method: 'GET',
      url: `/api/v1/documents/${id}`,
      token: nurse.token,
    });
    assert.equal(meta.statusCode, 200, meta.body);
    const content = await h.request({
      method: 'GET',
      url: `/api/v1/documents/${id}/content`,
      token: nurse.token,
    });
    assert.equal(content.statusCode, 200);
    return {
      ...meta.json<{
        patientId: string;
        contentType: string;
        kind: string;
        visibility: string;
        filename: string;
      }>(),
      bytes: content.rawPayload,
    };
  };
  const blobCount = () => filesUnder(path.join(h.config.dataDir, 'blobs')).length;

  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    nurse = await h.newUser(admin, 'nurse');
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: nurse.token,
      body: { name: 'Rex', species: 'canine', identifiers: [{ system: 'microchip', value: CHIP }] },
    });
    patientId = patient.json<{ id: string }>().id;
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'Reference lab' },
    });
    key = created.json<{ key: string }>().key;
  });
  after(async () => {
    await h.close();
  });

  test('a PDF sent with a JSON result is a document on the chart, named by the result note', async () => {
    const answer = await send(report('T4-1'));
    assert.equal(answer.status, 'matched');
    const note = await resultNote(answer.id);
    const documentIds = note?.result?.documentIds ?? [];
    assert.equal(documentIds.length, 1);
    const doc = await documentOf(documentIds[0] ?? '');
    assert.equal(doc.patientId, patientId);
    assert.equal(doc.contentType, 'application/pdf');
    assert.equal(doc.kind, 'report');
    assert.equal(doc.visibility, 'internal');
    assert.equal(doc.filename, 'T4 report.pdf');
    assert.deepEqual(doc.bytes, PDF);
  });

  test('an ED PDF in an HL7 message becomes a document too', async () => {
    const message = fs.readFileSync(path.join(FIXTURES, 'imaging-report-2.5.hl7'), 'utf8');
    const res = await h.runtime.app.inject({
      method: 'POST',
      url: '/api/v1/integrations/hl7v2',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'x-application/hl7-v2+er7' },
      payload: message,
    });
    assert.equal(res.statusCode, 200, res.body);
    const row = await h.runtime.db.read
      .selectFrom('results')
      .select('id')
      .where('source_result_id', '=', 'IMG-3141')
      .executeTakeFirstOrThrow();
    const note = await resultNote(row.id);
    const [documentId] = note?.result?.documentIds ?? [];
    const doc = await documentOf(documentId ?? '');
    assert.equal(doc.contentType, 'application/pdf');
    assert.ok(doc.bytes.subarray(0, 5).equals(Buffer.from('%PDF-')));
  });

  test('a re-sent result with its file stores no second document and no stray blob', async () => {
    const first = await send(report('T4-2'));
    const blobs = blobCount();
    const again = await send(report('T4-2'));
    assert.deepEqual([again.id, again.duplicate], [first.id, true]);
    assert.equal(blobCount(), blobs, 'the copy stored before the duplicate was known is removed');
    assert.equal((await resultNote(first.id))?.result?.documentIds.length, 1);
  });

  test('an unmatched result keeps its file until staff assign it; then it is on the chart', async () => {
    const answer = await send(report('T4-3', '900000000000777'));
    assert.equal(answer.status, 'unmatched');
    const before = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/documents?limit=100`,
      token: nurse.token,
    });
    const count = before.json<{ items: unknown[] }>().items.length;
    const assigned = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${answer.id}/assign`,
      token: nurse.token,
      body: { patientId },
    });
    assert.equal(assigned.statusCode, 200, assigned.body);
    const afterList = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/documents?limit=100`,
      token: nurse.token,
    });
    assert.equal(afterList.json<{ items: unknown[] }>().items.length, count + 1);
    const note = await resultNote(answer.id);
    const doc = await documentOf(note?.result?.documentIds[0] ?? '');
    assert.deepEqual(doc.bytes, PDF);
  });

  test('an attachment that is not base64 is refused and nothing is stored', async () => {
    const before = (await h.runtime.db.read.selectFrom('results').select('id').execute()).length;
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token: key,
      body: { ...report('T4-4'), attachments: [{ filename: 'x.pdf', data: '%%% not base64 %%%' }] },
    });
    assert.equal(res.statusCode, 400);
    assert.equal(
      (await h.runtime.db.read.selectFrom('results').select('id').execute()).length,
      before,
    );
  });
});
