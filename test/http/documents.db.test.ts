// Documents over real HTTP on every storage combination (SQLite/PostgreSQL × folder/S3):
// streamed encrypted uploads, sniffed types, ranges, versions, delete/restore/purge, thumbnails,
// archive tier, audit, and bad input that must change nothing.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { buildDicom, truncateDicom } from '../helpers/dicom-fixtures.js';
import { archiveIdleVersions } from '../../src/jobs/document-jobs.js';
import { startHarness, TestClock, type Harness, type SignedIn } from '../helpers/harness.js';
import { describeEachStorage, filesUnder } from '../helpers/storage.js';
import { awaitAuditSealed } from '../../src/audit-sealing/index.js';

export interface DocumentJson {
  id: string;
  patientId: string;
  title: string | null;
  kind: string;
  status: 'active' | 'deleted' | 'purged';
  version: number;
  filename: string;
  contentType: string;
  declaredContentType: string | null;
  size: number;
  sha256: string;
  preview: { status: string; reason: string | null };
  metadata: Record<string, unknown> | null;
  storage: { tier: 'hot' | 'archive'; retrievalDelaySeconds: number };
}

const MAX_UPLOAD = 3 * 1024 * 1024;
const flip = (b: Buffer, at: number) => b.writeUInt8(b.readUInt8(at) ^ 0xff, at);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function pngOf(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7) % 251;
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** A body that shows up plainly in any file that stores it unencrypted. */
function markedText(bytes: number): Buffer {
  const marker = 'PATIENT-REX-MICROCHIP-985112345678901 ';
  return Buffer.from(marker.repeat(Math.ceil(bytes / marker.length)).slice(0, bytes));
}

describeEachStorage('documents', (storage) => {
  let h: Harness;
  let base: string;
  let admin: SignedIn;
  let vet: SignedIn;
  let patientId: string;

  before(async () => {
    h = await startHarness(
      storage.databaseUrl(),
      { ...storage.env(), CARETRAIL_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) },
      storage.runtimeOptions(),
    );
    await h.runtime.app.listen({ host: '127.0.0.1', port: 0 });
    const address = h.runtime.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    base = `http://127.0.0.1:${address.port}`;
    admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
    patientId = await newPatient(vet);
  });
  after(async () => {
    await h.close();
  });

  async function newPatient(user: SignedIn): Promise<string> {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: user.token,
      body: { name: 'Rex', species: 'canine' },
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ id: string }>().id;
  }

  const auth = (user: SignedIn) => ({ authorization: `Bearer ${user.token}` });

  async function upload(
    user: SignedIn,
    bytes: Buffer,
    filename: string,
    options: { type?: string; fields?: Record<string, string>; patient?: string } = {},
  ): Promise<Response> {
    const form = new FormData();
    for (const [k, v] of Object.entries(options.fields ?? {})) form.append(k, v);
    form.append(
      'file',
      new Blob([bytes], { type: options.type ?? 'application/octet-stream' }),
      filename,
    );
    return fetch(`${base}/api/v1/patients/${options.patient ?? patientId}/documents`, {
      method: 'POST',
      headers: auth(user),
      body: form,
    });
  }

  async function uploadOk(bytes: Buffer, filename: string, type?: string): Promise<DocumentJson> {
    const res = await upload(vet, bytes, filename, type ? { type } : {});
    assert.equal(res.status, 201, await res.clone().text());
    return (await res.json()) as DocumentJson;
  }

  const get = (user: SignedIn, url: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${url}`, { headers: { ...auth(user), ...headers } });

  async function documentCount(): Promise<number> {
    const rows = await h.runtime.db.read
      .selectFrom('documents')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return rows.n;
  }

  /** Stored objects, excluding the S3 server's own metadata files. */
  function storedObjects(): string[] {
    const root = storage.rawDir();
    return filesUnder(root).filter(
      (f) => !/\.(json|md5)$/.test(f) && !path.relative(root, f).startsWith(`tmp${path.sep}`),
    );
  }

  const tmpFiles = () => filesUnder(path.join(storage.rawDir(), 'tmp'));

  test('an upload is stored encrypted, typed by its bytes, named safely, and read back intact', async () => {
    const png = await pngOf(300, 200);
    const doc = await uploadOk(png, '../../etc/x-ray "left".png', 'application/octet-stream');
    assert.equal(doc.contentType, 'image/png');
    assert.equal(doc.declaredContentType, 'application/octet-stream');
    assert.equal(doc.filename, 'x-ray left.png');
    assert.equal(doc.size, png.length);
    assert.equal(doc.sha256, sha256(png));
    assert.equal(doc.version, 1);
    assert.equal(doc.kind, 'photo');

    const res = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.match(
      res.headers.get('content-disposition') ?? '',
      /^inline; filename="x-ray left.png"/,
    );
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(png));
  });

  test('a retried upload with the same Idempotency-Key stores the file once', async () => {
    // Large enough that the retry is still sending when the stored answer is ready.
    const body = randomBytes(3 * 1024 * 1024);
    const send = (bytes: Buffer) => {
      const form = new FormData();
      form.append('file', new Blob([bytes]), 'retry.bin');
      return fetch(`${base}/api/v1/patients/${patientId}/documents`, {
        method: 'POST',
        headers: { ...auth(vet), 'idempotency-key': 'upload-retry-1' },
        body: form,
      });
    };
    const docs = await documentCount();
    const first = await send(body);
    assert.equal(first.status, 201);
    const firstDoc = (await first.json()) as DocumentJson;
    const objects = storedObjects().length;
    const again = await send(body);
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    // The body was read to its end before the answer: the connection stays open for the next.
    assert.notEqual(again.headers.get('connection'), 'close');
    assert.equal(((await again.json()) as DocumentJson).id, firstDoc.id);
    assert.equal(await documentCount(), docs + 1, 'one document');
    assert.equal(storedObjects().length, objects, 'the file was not stored again');
    const other = await send(randomBytes(60_000));
    assert.equal(other.status, 422, 'the same key with another file is refused');
  });

  test('the bytes in the folder or bucket hold no plaintext', async () => {
    const text = markedText(300_000);
    const doc = await uploadOk(text, 'notes.txt', 'text/plain');
    assert.equal(doc.contentType, 'text/plain');
    const needle = Buffer.from('PATIENT-REX-MICROCHIP');
    const objects = storedObjects();
    assert.ok(objects.length > 0, 'some objects were stored');
    for (const file of objects) {
      const raw = fs.readFileSync(file);
      assert.equal(raw.indexOf(needle), -1, `${file} contains plaintext`);
    }
    const res = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(text));
  });

  test('ranges return exactly the bytes asked for, across chunk boundaries', async () => {
    // 600,000 bytes: three 256 KiB chunks, the last one short.
    const body = randomBytes(600_000);
    const doc = await uploadOk(body, 'blob.bin');
    assert.equal(doc.contentType, 'application/octet-stream');
    for (const [header, start, end] of [
      ['bytes=0-0', 0, 0],
      ['bytes=262140-262150', 262_140, 262_150],
      ['bytes=200000-530000', 200_000, 530_000],
      ['bytes=524288-', 524_288, 599_999],
      ['bytes=-100', 599_900, 599_999],
      ['bytes=599990-900000', 599_990, 599_999],
    ] as const) {
      const res = await get(vet, `/api/v1/documents/${doc.id}/content`, { range: header });
      assert.equal(res.status, 206, header);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/600000`);
      const got = Buffer.from(await res.arrayBuffer());
      assert.ok(got.equals(body.subarray(start, end + 1)), header);
    }
    const outside = await get(vet, `/api/v1/documents/${doc.id}/content`, {
      range: 'bytes=600000-',
    });
    assert.equal(outside.status, 416);
    assert.equal(outside.headers.get('content-range'), 'bytes */600000');
    const bad = await get(vet, `/api/v1/documents/${doc.id}/content`, { range: 'pages=1-2' });
    assert.equal(bad.status, 400);
  });

  test('a new version keeps every older one downloadable', async () => {
    const v1 = Buffer.from('%PDF-1.4\n first version of the lab report\n%%EOF\n');
    const doc = await uploadOk(v1, 'lab.pdf', 'application/pdf');
    assert.equal(doc.contentType, 'application/pdf');
    const v2 = Buffer.from('%PDF-1.4\n corrected lab report, second version\n%%EOF\n');
    const put = await fetch(`${base}/api/v1/documents/${doc.id}/content`, {
      method: 'PUT',
      headers: { ...auth(vet), 'content-type': 'application/pdf', 'if-match': '"1"' },
      body: v2,
    });
    assert.equal(put.status, 200, await put.clone().text());
    const updated = (await put.json()) as DocumentJson;
    assert.equal(updated.version, 2);
    assert.equal(updated.filename, 'lab.pdf', 'a raw body keeps the previous filename');

    const stale = await fetch(`${base}/api/v1/documents/${doc.id}/content`, {
      method: 'PUT',
      headers: { ...auth(vet), 'content-type': 'application/pdf', 'if-match': '"1"' },
      body: v2,
    });
    assert.equal(stale.status, 412);

    const versions = (await (await get(vet, `/api/v1/documents/${doc.id}/versions`)).json()) as {
      items: { version: number; sha256: string }[];
    };
    assert.deepEqual(
      versions.items.map((v) => [v.version, v.sha256]),
      [
        [2, sha256(v2)],
        [1, sha256(v1)],
      ],
    );
    const current = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.ok(Buffer.from(await current.arrayBuffer()).equals(v2));
    const old = await get(vet, `/api/v1/documents/${doc.id}/versions/1/content`);
    assert.equal(old.status, 200);
    assert.ok(Buffer.from(await old.arrayBuffer()).equals(v1));
    const missing = await get(vet, `/api/v1/documents/${doc.id}/versions/9/content`);
    assert.equal(missing.status, 404);
    // Downloads are audited as they start; read the trail as the audit search does (sealed).
    await awaitAuditSealed(h.runtime.services.deps);
    const reads = (await listAuditEvents(h.runtime.db.read, { patientId }))
      .map((e) => e.event)
      .filter((e) => e.entity?.id === doc.id);
    assert.ok(
      reads.some(
        (e) =>
          e.type === 'document.version.read' && e.entity?.version === 1 && e.outcome === 'success',
      ),
      'reading an old version is audited with its version number',
    );
    assert.ok(reads.some((e) => e.type === 'document.version.create' && e.entity?.version === 2));
  });

  test('delete hides a document until it is restored; only an admin purges, and only deleted ones', async () => {
    const body = Buffer.from('photo of a paw, pretend JPEG is text');
    const doc = await uploadOk(body, 'paw.txt');
    const del = await fetch(`${base}/api/v1/documents/${doc.id}`, {
      method: 'DELETE',
      headers: auth(vet),
    });
    assert.equal(del.status, 200);
    assert.equal(((await del.json()) as DocumentJson).status, 'deleted');
    assert.equal((await get(vet, `/api/v1/documents/${doc.id}/content`)).status, 409);
    const listed = (await (await get(vet, `/api/v1/patients/${patientId}/documents`)).json()) as {
      items: DocumentJson[];
    };
    assert.ok(!listed.items.some((d) => d.id === doc.id));
    const withDeleted = (await (
      await get(vet, `/api/v1/patients/${patientId}/documents?includeDeleted=true`)
    ).json()) as { items: DocumentJson[] };
    assert.ok(withDeleted.items.some((d) => d.id === doc.id && d.status === 'deleted'));

    const restore = await fetch(`${base}/api/v1/documents/${doc.id}/restore`, {
      method: 'POST',
      headers: auth(vet),
    });
    assert.equal(restore.status, 200);
    const back = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.ok(Buffer.from(await back.arrayBuffer()).equals(body));

    const purgeActive = await h.request({
      method: 'POST',
      url: `/api/v1/documents/${doc.id}/purge`,
      token: admin.token,
      body: { reason: 'retention period over' },
    });
    assert.equal(purgeActive.statusCode, 409, 'an active document cannot be purged');
    await fetch(`${base}/api/v1/documents/${doc.id}`, { method: 'DELETE', headers: auth(vet) });
    const byVet = await h.request({
      method: 'POST',
      url: `/api/v1/documents/${doc.id}/purge`,
      token: vet.token,
      body: { reason: 'retention period over' },
    });
    assert.equal(byVet.statusCode, 403, 'only admins purge');
    const { blob_key: blobKey } = await h.runtime.db.read
      .selectFrom('document_versions')
      .select('blob_key')
      .where('document_id', '=', doc.id)
      .executeTakeFirstOrThrow();
    assert.equal(storedObjects().filter((f) => f.includes(blobKey)).length, 1);
    const purge = await h.request({
      method: 'POST',
      url: `/api/v1/documents/${doc.id}/purge`,
      token: admin.token,
      body: { reason: 'retention period over' },
    });
    assert.equal(purge.statusCode, 200, purge.body);
    assert.equal(purge.json<DocumentJson>().status, 'purged');
    const shredded = await h.runtime.db.read
      .selectFrom('document_versions')
      .select('wrapped_key')
      .where('document_id', '=', doc.id)
      .execute();
    assert.deepEqual(
      shredded.map((r) => r.wrapped_key),
      [''],
      'the data key is gone: no copy can be decrypted',
    );
    await h.runtime.relay.runUntilIdle();
    assert.deepEqual(
      storedObjects().filter((f) => f.includes(blobKey)),
      [],
      'the blob was removed',
    );
    const restoreAgain = await fetch(`${base}/api/v1/documents/${doc.id}/restore`, {
      method: 'POST',
      headers: auth(vet),
    });
    assert.equal(restoreAgain.status, 409);
    await awaitAuditSealed(h.runtime.services.deps);
    const events = (await listAuditEvents(h.runtime.db.read))
      .map((e) => e.event)
      .filter((e) => e.entity?.id === doc.id)
      .map((e) => `${e.type}:${e.outcome}`);
    for (const expected of [
      'document.create:success',
      'document.delete:success',
      'document.restore:success',
      'document.content.read:success',
      'document.purge:success',
      'document.purge:denied',
    ])
      assert.ok(events.includes(expected), `${expected} in ${events.join(', ')}`);
  });

  test('images and DICOM files get thumbnails and metadata from a job; corrupt ones a marker', async () => {
    const png = await pngOf(1000, 500);
    const image = await uploadOk(png, 'xray.png');
    assert.equal(image.preview.status, 'pending');
    const dicom = await uploadOk(
      buildDicom({
        patientName: 'Rex^Dog',
        species: 'Canine',
        modality: 'DX',
        rows: 64,
        columns: 64,
        bitsAllocated: 16,
        pixels: Array.from({ length: 64 * 64 }, (_, i) => (i % 64) * 64),
      }),
      'chest.dcm',
    );
    assert.equal(dicom.contentType, 'application/dicom');
    assert.equal(dicom.kind, 'imaging');
    const corrupt = await uploadOk(
      Buffer.concat([png.subarray(0, 200), randomBytes(500)]),
      'broken.png',
    );
    const brokenDicom = await uploadOk(
      truncateDicom(buildDicom({ patientName: 'Rex^Dog' }), 200),
      'cut.dcm',
    );
    assert.equal(brokenDicom.contentType, 'application/dicom');
    await h.runtime.relay.runUntilIdle();

    const read = async (id: string) =>
      (await (await get(vet, `/api/v1/documents/${id}`)).json()) as DocumentJson;
    const img = await read(image.id);
    assert.equal(img.preview.status, 'ready');
    const thumb = await get(vet, `/api/v1/documents/${image.id}/thumbnail`);
    assert.equal(thumb.status, 200);
    assert.equal(thumb.headers.get('content-type'), 'image/jpeg');
    const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    assert.equal(meta.format, 'jpeg');
    assert.equal(meta.width, 256);
    assert.equal(meta.height, 128);

    const dcm = await read(dicom.id);
    assert.equal(dcm.preview.status, 'ready');
    assert.ok(dcm.metadata, 'DICOM tags were read');
    assert.equal(dcm.metadata.patientName, 'Rex Dog');
    assert.equal(dcm.metadata.species, 'Canine');
    assert.equal(dcm.metadata.modality, 'DX');
    assert.equal((await get(vet, `/api/v1/documents/${dicom.id}/thumbnail`)).status, 200);

    const cutDicom = await read(brokenDicom.id);
    assert.equal(cutDicom.preview.status, 'failed');
    assert.equal(cutDicom.metadata, null);
    const bad = await read(corrupt.id);
    assert.equal(bad.preview.status, 'failed');
    assert.equal(bad.metadata, null);
    assert.equal((await get(vet, `/api/v1/documents/${corrupt.id}/thumbnail`)).status, 404);
    // The corrupt file itself is still there, byte for byte.
    const raw = await get(vet, `/api/v1/documents/${corrupt.id}/content`);
    assert.equal(raw.status, 200);
    assert.equal(Buffer.from(await raw.arrayBuffer()).length, 700);
  });

  test('the preview job skips files it cannot preview without reading them', async () => {
    const pdf = await uploadOk(
      Buffer.concat([Buffer.from('%PDF-1.7\n'), markedText(300_000)]),
      'report.pdf',
    );
    assert.equal(pdf.contentType, 'application/pdf');
    assert.equal(pdf.preview.status, 'pending');
    const { blob_key: blobKey } = await h.runtime.db.read
      .selectFrom('document_versions')
      .select('blob_key')
      .where('document_id', '=', pdf.id)
      .executeTakeFirstOrThrow();
    // With its body gone, a job that read the file would fail and retry; one that does not
    // read it answers from the type alone.
    const store = h.runtime.vault.store;
    const stored = Buffer.concat(await (await store.get(blobKey, 'hot')).toArray());
    await store.delete(blobKey);
    await h.runtime.relay.runUntilIdle();
    const after = (await (await get(vet, `/api/v1/documents/${pdf.id}`)).json()) as DocumentJson;
    assert.equal(after.preview.status, 'unsupported');
    assert.equal(after.preview.reason, 'No preview for this file type.');
    // Back as it was, for the tests after this one.
    await store.put(blobKey, Readable.from([stored]));
  });

  test('bad uploads are refused and leave nothing behind', async () => {
    const docs = await documentCount();
    const objects = storedObjects().length;

    const empty = await upload(vet, Buffer.alloc(0), 'empty.txt');
    assert.equal(empty.status, 400);
    assert.match(((await empty.json()) as { error: { message: string } }).error.message, /empty/);

    const big = await upload(vet, randomBytes(MAX_UPLOAD + 1), 'big.bin');
    assert.equal(big.status, 413);

    const noFile = await fetch(`${base}/api/v1/patients/${patientId}/documents`, {
      method: 'POST',
      headers: auth(vet),
      body: (() => {
        const f = new FormData();
        f.append('title', 'no file here');
        return f;
      })(),
    });
    assert.equal(noFile.status, 400);

    const json = await h.request({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/documents`,
      token: vet.token,
      body: { file: 'aGVsbG8=' },
    });
    assert.equal(json.statusCode, 415);

    const badKind = await upload(vet, Buffer.from('hello'), 'a.txt', { fields: { kind: 'poem' } });
    assert.equal(badKind.status, 400);

    // A multipart body that ends in the middle of the file.
    const boundary = 'caretrailboundary';
    const truncated = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      randomBytes(100_000),
    ]);
    const cut = await fetch(`${base}/api/v1/patients/${patientId}/documents`, {
      method: 'POST',
      headers: { ...auth(vet), 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: truncated,
    });
    assert.equal(cut.status, 400);
    assert.match(((await cut.json()) as { error: { message: string } }).error.message, /cut off/);

    await disconnectMidUpload(boundary);

    const otherOrg = await h.newOrganization();
    const otherVet = await h.newUser(otherOrg, 'clinician');
    const foreign = await upload(otherVet, Buffer.from('hello'), 'a.txt');
    assert.equal(foreign.status, 404, 'a patient of another organization does not exist');
    const reception = await h.newUser(admin, 'reception');
    assert.equal((await upload(reception, Buffer.from('hello'), 'a.txt')).status, 403);

    // Give an interrupted upload a moment to be cleaned up.
    for (let i = 0; i < 50 && (storedObjects().length !== objects || tmpFiles().length > 0); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(await documentCount(), docs, 'no document was created');
    assert.equal(storedObjects().length, objects, 'no blob was left behind');
    if (storage.blob === 'file') {
      assert.deepEqual(tmpFiles(), [], 'no temporary file');
    }
  });

  /** Sends half a file and then drops the connection. */
  async function disconnectMidUpload(boundary: string): Promise<void> {
    const url = new URL(`${base}/api/v1/patients/${patientId}/documents`);
    await new Promise<void>((resolve) => {
      const req = http.request({
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: {
          ...auth(vet),
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': String(2_000_000),
        },
      });
      req.on('error', () => {
        resolve();
      });
      req.write(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="gone.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      );
      req.write(randomBytes(600_000), () => {
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      });
    });
  }

  test('an upload whose cipher thread dies is refused cleanly and leaves nothing behind', async () => {
    const pool = h.runtime.vault.pool;
    assert.ok(pool, 'the harness runs with the default cipher pool');
    const docs = await documentCount();
    const objects = storedObjects().length;
    const boundary = 'caretrailcrash';
    const url = new URL(`${base}/api/v1/patients/${patientId}/documents`);
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="crash.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`;
    const tail = `\r\n--${boundary}--\r\n`;
    const size = 2_000_000;
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: {
            ...auth(vet),
            'content-type': `multipart/form-data; boundary=${boundary}`,
            'content-length': String(Buffer.byteLength(head) + size + Buffer.byteLength(tail)),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, text });
          });
        },
      );
      req.on('error', reject);
      req.write(head);
      req.write(randomBytes(size / 2), () => {
        // The first half is on the cipher thread: stop it, then send the rest.
        setTimeout(() => {
          const stopping = pool.workers().map((w) => w.terminate());
          void Promise.all(stopping).then(() => {
            req.end(Buffer.concat([randomBytes(size / 2), Buffer.from(tail)]));
          });
        }, 200);
      });
    });
    assert.equal(answer.status, 500);
    const error = (JSON.parse(answer.text) as { error: { code: string; message: string } }).error;
    assert.doesNotMatch(answer.text, /cipher|worker|\bat \S+ \(/, 'no internals in the answer');
    assert.ok(error.message.length > 0);
    assert.equal(await documentCount(), docs);
    assert.equal(storedObjects().length, objects, 'no orphaned blob');
    assert.deepEqual(tmpFiles(), []);
    // A new thread serves the next upload.
    const next = randomBytes(300_000);
    const doc = await uploadOk(next, 'after-crash.bin');
    const back = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.ok(Buffer.from(await back.arrayBuffer()).equals(next));
  });

  test('a tampered blob is never served as if it were intact', async () => {
    const body = randomBytes(1_000_000);
    const doc = await uploadOk(body, 'tamper.bin');
    const row = await h.runtime.db.read
      .selectFrom('document_versions')
      .select('blob_key')
      .where('document_id', '=', doc.id)
      .executeTakeFirstOrThrow();
    const file = filesUnder(storage.rawDir()).find(
      (f) => f.includes(row.blob_key) && !/\.(json|md5)$/.test(f),
    );
    assert.ok(file, 'the stored object was found');
    const raw = fs.readFileSync(file);
    // Flip one byte in the first chunk: the answer is an error, not a file.
    flip(raw, 100);
    fs.writeFileSync(file, raw);
    const first = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.equal(first.status, 503);
    const err = (await first.json()) as { error: { code: string; message: string } };
    assert.match(err.error.message, /could not be read intact/);
    // Restore it, then damage a later chunk: the transfer breaks off instead of completing.
    flip(raw, 100);
    flip(raw, 700_000); // the third 256 KiB chunk
    fs.writeFileSync(file, raw);
    const later = await get(vet, `/api/v1/documents/${doc.id}/content`);
    if (later.status === 200) {
      // The damage was met after the answer started: the transfer is cut off.
      await assert.rejects(later.arrayBuffer());
    } else {
      // The damage was met before the first byte was sent: an error answer, no file.
      assert.ok(later.status >= 500, `status ${later.status}`);
      assert.match(later.headers.get('content-type') ?? '', /json/);
    }
    const logs = h.logs.join('');
    assert.match(logs, /failed its integrity check|content/);
  });

  test('a download the client abandons releases its file handle', async (t) => {
    if (storage.blob !== 'file') {
      t.skip('file handles of the folder store are what is counted');
      return;
    }
    const body = randomBytes(3_000_000);
    const doc = await uploadOk(body, 'large.bin');
    const openBlobFiles = () =>
      fs
        .readdirSync('/proc/self/fd')
        .map((fd) => {
          try {
            return fs.readlinkSync(`/proc/self/fd/${fd}`);
          } catch {
            return '';
          }
        })
        .filter((target) => target.startsWith(storage.rawDir())).length;
    const before = openBlobFiles();
    for (const range of [undefined, 'bytes=0-', 'bytes=1000-']) {
      for (let i = 0; i < 3; i++) {
        const controller = new AbortController();
        const res = await fetch(`${base}/api/v1/documents/${doc.id}/content`, {
          headers: { ...auth(vet), ...(range ? { range } : {}) },
          signal: controller.signal,
        });
        const reader = res.body?.getReader();
        await reader?.read();
        controller.abort();
      }
    }
    for (let i = 0; i < 50 && openBlobFiles() > before; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(openBlobFiles(), before, 'no file handle is left open');
  });

  test('files not read for the configured days move to the archive tier and stay readable', async () => {
    const body = randomBytes(70_000);
    const doc = await uploadOk(body, 'old-scan.bin');
    // The job runs with a clock of its own, months ahead (the users' sessions stay valid).
    const at = (days: number) => new TestClock(new Date(Date.now() + days * 86_400_000));
    const run = (days: number) =>
      archiveIdleVersions(
        { db: h.runtime.db, vault: h.runtime.vault, clock: at(days), log: h.runtime.app.log },
        182,
      );
    assert.equal(await run(100), 0, 'nothing is idle for 182 days yet');
    assert.ok((await run(190)) >= 1);
    assert.equal(await run(190), 0, 'a second run has nothing left to do');
    const after = (await (await get(vet, `/api/v1/documents/${doc.id}`)).json()) as DocumentJson;
    assert.equal(after.storage.tier, 'archive');
    assert.equal(after.storage.retrievalDelaySeconds, 0);
    if (storage.blob === 'file') {
      const row = await h.runtime.db.read
        .selectFrom('document_versions')
        .select('blob_key')
        .where('document_id', '=', doc.id)
        .executeTakeFirstOrThrow();
      const where = filesUnder(storage.rawDir()).filter((f) => f.includes(row.blob_key));
      assert.equal(where.length, 1);
      assert.match(where[0] ?? '', /[/\\]archive[/\\]/);
    }
    const res = await get(vet, `/api/v1/documents/${doc.id}/content`);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(body));
  });
});
