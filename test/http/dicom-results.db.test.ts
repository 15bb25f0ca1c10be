// DICOM from imaging devices, on both engines: each Part-10 file posted by an integration key
// becomes an imaging result matched like any other (PatientID as microchip or the device's own
// id; Patient's Name, species, birth date and Responsible Person for the fallback), with the file
// itself a document on the chart (its metadata and preview from the documents capability). A
// re-sent image is a duplicate; a request with a file that is not DICOM stores nothing.
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildDicom } from '../helpers/dicom-fixtures.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { filesUnder } from '../helpers/storage.js';

const CHIP = '985112345678901';
const PIXELS = Array.from({ length: 16 * 16 }, (_, i) => i % 256);

interface Item {
  id: string;
  status: string;
  duplicate: boolean;
  sopInstanceUid: string;
}

/** A multipart body of DICOM parts, as an imaging station's uploader sends it. */
function multipart(files: { name: string; data: Buffer }[]) {
  const boundary = '----caretrail-dicom-test';
  const parts = files.map((f) =>
    Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${f.name}"\r\nContent-Type: application/dicom\r\n\r\n`,
      ),
      f.data,
      Buffer.from('\r\n'),
    ]),
  );
  return {
    payload: Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]),
    type: `multipart/form-data; boundary=${boundary}`,
  };
}

describeEachEngine('DICOM results', ({ url }) => {
  let h: Harness;
  let nurse: SignedIn;
  let rexId: string;
  let bellaId: string;
  let key: string;

  const post = (payload: Buffer, type = 'application/dicom', token = key) =>
    h.runtime.app.inject({
      method: 'POST',
      url: '/api/v1/integrations/dicom',
      headers: { authorization: `Bearer ${token}`, 'content-type': type },
      payload,
    });
  const items = (res: LightMyRequestResponse) => {
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ items: Item[] }>().items;
  };
  const resultNote = async (patientId: string, resultId: string) => {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes?limit=100`,
      token: nurse.token,
    });
    return res
      .json<{
        items: {
          result: {
            id: string;
            kind: string;
            documentIds: string[];
            observations: { code: string; value: string }[];
          } | null;
        }[];
      }>()
      .items.find((n) => n.result?.id === resultId)?.result;
  };
  const counts = async () => ({
    results: (await h.runtime.db.read.selectFrom('results').select('id').execute()).length,
    blobs: filesUnder(path.join(h.config.dataDir, 'blobs')).length,
  });

  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    nurse = await h.newUser(admin, 'nurse');
    const create = async (body: Record<string, unknown>) =>
      (
        await h.request({ method: 'POST', url: '/api/v1/patients', token: nurse.token, body })
      ).json<{
        id: string;
      }>().id;
    rexId = await create({
      name: 'Rex',
      species: 'canine',
      identifiers: [{ system: 'microchip', value: CHIP }],
    });
    bellaId = await create({
      name: 'Bella',
      species: 'feline',
      birthDate: '2015-06-12',
      owners: [{ name: 'Jane Whitaker' }],
    });
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'DR panel' },
    });
    key = created.json<{ key: string }>().key;
  });
  after(async () => {
    await h.close();
  });

  test('an X-ray whose PatientID is a known microchip lands on that chart with its image', async () => {
    const file = buildDicom({
      patientId: CHIP,
      patientName: 'SMITH^REX',
      modality: 'DX',
      studyDescription: 'Thorax 3 views',
      bodyPart: 'CHEST',
      studyDate: '20261123',
      sopInstanceUid: '1.2.826.0.1.3680043.10.1.7.1',
      rows: 16,
      columns: 16,
      pixels: PIXELS,
    });
    const [item] = items(await post(file));
    assert.equal(item?.status, 'matched');
    assert.equal(item.sopInstanceUid, '1.2.826.0.1.3680043.10.1.7.1');
    const result = await resultNote(rexId, item.id);
    assert.equal(result?.kind, 'imaging');
    assert.deepEqual(
      result.observations.map((o) => [o.code, o.value]),
      [
        ['Modality', 'DX'],
        ['StudyDate', '2026-11-23'],
        ['StudyDescription', 'Thorax 3 views'],
        ['BodyPartExamined', 'CHEST'],
      ],
    );
    const [documentId] = result.documentIds;
    await h.runtime.relay.runUntilIdle();
    const doc = await h.request({
      method: 'GET',
      url: `/api/v1/documents/${documentId ?? ''}`,
      token: nurse.token,
    });
    const json = doc.json<{
      contentType: string;
      kind: string;
      size: number;
      preview: { status: string };
      metadata: { modality: string } | null;
    }>();
    assert.deepEqual(
      [json.contentType, json.kind, json.size, json.preview.status, json.metadata?.modality],
      ['application/dicom', 'imaging', file.length, 'ready', 'DX'],
    );
  });

  test('several images in one multipart request; the fallback places an image without PatientID', async () => {
    const views = [1, 2].map((n) =>
      buildDicom({
        patientName: 'WHITAKER^BELLA',
        responsiblePerson: 'Whitaker^Jane',
        species: 'Feline',
        birthDate: '20150612',
        modality: 'DX',
        sopInstanceUid: `1.2.826.0.1.3680043.10.1.8.${n}`,
      }),
    );
    const body = multipart(views.map((data, i) => ({ name: `view-${i + 1}.dcm`, data })));
    const answered = items(await post(body.payload, body.type));
    assert.deepEqual(
      answered.map((i) => [i.sopInstanceUid, i.status]),
      [
        ['1.2.826.0.1.3680043.10.1.8.1', 'matched'],
        ['1.2.826.0.1.3680043.10.1.8.2', 'matched'],
      ],
    );
    for (const i of answered)
      assert.equal((await resultNote(bellaId, i.id))?.documentIds.length, 1);
  });

  test('an image sent again is a duplicate and leaves no second copy', async () => {
    const file = buildDicom({
      patientId: CHIP,
      modality: 'US',
      sopInstanceUid: '1.2.826.0.1.3680043.10.1.9.1',
    });
    const [first] = items(await post(file));
    const before = await counts();
    const [again] = items(await post(file));
    assert.deepEqual([again?.id, again?.duplicate], [first?.id, true]);
    assert.deepEqual(await counts(), before);
  });

  test('a request with a file that is not DICOM is refused and stores nothing', async () => {
    const before = await counts();
    const lone = await post(Buffer.from('this is not a DICOM file at all'.repeat(10)));
    assert.equal(lone.statusCode, 400);
    assert.match(lone.json<{ error: { message: string } }>().error.message, /not DICOM/);
    const good = buildDicom({
      patientId: CHIP,
      modality: 'DX',
      sopInstanceUid: '1.2.826.0.1.3680043.10.1.10.1',
    });
    const mixed = multipart([
      { name: 'good.dcm', data: good },
      { name: 'bad.dcm', data: Buffer.from('%PDF-1.4 not an image') },
    ]);
    assert.equal((await post(mixed.payload, mixed.type)).statusCode, 400);
    assert.deepEqual(await counts(), before);
  });

  test('an image of an unknown animal waits in the queue; assigned, it joins the chart', async () => {
    const [item] = items(
      await post(
        buildDicom({
          patientId: 'PACS-4471',
          modality: 'CR',
          sopInstanceUid: '1.2.826.0.1.3680043.10.1.11.1',
        }),
      ),
    );
    assert.equal(item?.status, 'unmatched');
    const assigned = await h.request({
      method: 'POST',
      url: `/api/v1/integrations/unmatched/${item.id}/assign`,
      token: nurse.token,
      body: { patientId: rexId },
    });
    assert.equal(assigned.statusCode, 200, assigned.body);
    assert.equal((await resultNote(rexId, item.id))?.documentIds.length, 1);
    // The station's own id for Rex is learned: its next image matches by it.
    const [next] = items(
      await post(
        buildDicom({
          patientId: 'PACS-4471',
          modality: 'CR',
          sopInstanceUid: '1.2.826.0.1.3680043.10.1.11.2',
        }),
      ),
    );
    assert.equal(next?.status, 'matched');
  });

  test('staff tokens cannot post DICOM results (404)', async () => {
    const res = await post(buildDicom({ patientId: CHIP }), 'application/dicom', nurse.token);
    assert.equal(res.statusCode, 404);
  });
});
