// Uploads whose client stops sending, over real sockets on every engine and blob store: after
// CARETRAIL_UPLOAD_STALL_SECONDS without a byte the request ends with a 408 the client can read,
// nothing of the partial file stays in the blob folder or bucket, and no document row exists.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { describeEachStorage, filesUnder } from '../helpers/storage.js';

const STALL_SECONDS = 1;

/**
 * A pass-through proxy in front of s3rver that notes each request ("POST ?uploads", "DELETE
 * ?uploadId"): s3rver 3.7 answers AbortMultipartUpload with 405 and keeps the parts, so whether
 * Caretrail aborted its multipart upload is read from what it asked, not from s3rver's folder.
 */
async function startRecordingProxy(targetPort: number) {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (req.method === 'POST' && /[?&]uploads(=|&|$)/.test(url)) seen.push('create-multipart');
    if (req.method === 'DELETE' && /[?&]uploadId=/.test(url)) seen.push('abort-multipart');
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    port: address.port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

interface Answer {
  status: number;
  connection: string | undefined;
  body: { error?: { code: string; message: string } };
  /** How long after the last byte sent the answer came. */
  afterMs: number;
}

describeEachStorage('stalled uploads', (storage) => {
  let h: Harness;
  let base: URL;
  let vet: SignedIn;
  let patientId: string;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>> | null = null;

  before(async () => {
    const s3 = storage.s3();
    if (s3) proxy = await startRecordingProxy(s3.port);
    h = await startHarness(
      storage.databaseUrl(),
      {
        ...storage.env(),
        ...(s3 && proxy
          ? { CARETRAIL_BLOB_URL: s3.url.replace(`:${s3.port}`, `:${proxy.port}`) }
          : {}),
        CARETRAIL_UPLOAD_STALL_SECONDS: String(STALL_SECONDS),
        CARETRAIL_MAX_UPLOAD_BYTES: String(64 * 1024 * 1024),
      },
      storage.runtimeOptions(),
    );
    await h.runtime.app.listen({ host: '127.0.0.1', port: 0 });
    const address = h.runtime.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    base = new URL(`http://127.0.0.1:${address.port}`);
    const admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: 'Pepper', species: 'canine' },
    });
    patientId = res.json<{ id: string }>().id;
  });
  after(async () => {
    await h.close();
    await proxy?.close();
  });

  const documentCount = async () =>
    (
      await h.runtime.db.read
        .selectFrom('documents')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
    ).n;

  /** Stored objects and partial files (s3rver's own metadata files left out). */
  const storedFiles = () =>
    filesUnder(storage.rawDir()).filter(
      (f) =>
        (!/\.(json|md5)$/.test(f) || f.includes(`tmp${path.sep}`)) &&
        !f.includes(`${path.sep}._S3rver_uploads${path.sep}`),
    );

  /**
   * Sends `head`, then `bytes` of the file, then nothing more while keeping the connection open
   * (the Content-Length promises more). Resolves with the server's answer.
   */
  function sendAndStall(
    method: 'POST' | 'PUT',
    urlPath: string,
    headers: Record<string, string>,
    head: string,
    bytes: number,
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      let lastByteAt = 0;
      const req = http.request(new URL(urlPath, base), {
        method,
        headers: {
          authorization: `Bearer ${vet.token}`,
          'content-length': String(Buffer.byteLength(head) + bytes + 10_000_000),
          ...headers,
        },
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            connection: res.headers.connection,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Answer['body'],
            afterMs: Date.now() - lastByteAt,
          });
          req.destroy();
        });
      });
      req.on('error', reject);
      req.write(head);
      req.write(randomBytes(bytes), () => {
        lastByteAt = Date.now();
      });
    });
  }

  function multipartHead(boundary: string): string {
    return `--${boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nX-ray\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="stalled.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`;
  }

  const multipart = () => ({
    created: proxy?.seen.filter((r) => r === 'create-multipart').length ?? 0,
    aborted: proxy?.seen.filter((r) => r === 'abort-multipart').length ?? 0,
  });

  async function assertNothingLeft(before: Snapshot, bigFile: boolean): Promise<void> {
    // The store removes its partial file or aborts its multipart upload as the stream fails;
    // give the S3 abort a moment to land.
    const settled = () =>
      storedFiles().length === before.files.length &&
      multipart().created - before.multipart.created ===
        multipart().aborted - before.multipart.aborted;
    for (let i = 0; i < 50 && !settled(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(storedFiles(), before.files, 'no new file in the blob folder or bucket');
    assert.equal(await documentCount(), before.docs, 'no document row');
    if (proxy && bigFile) {
      const started = multipart().created - before.multipart.created;
      assert.ok(started >= 1, 'a multipart upload was under way');
      assert.equal(multipart().aborted - before.multipart.aborted, started, 'and it was aborted');
    }
  }

  type Snapshot = { docs: number; files: string[]; multipart: ReturnType<typeof multipart> };
  const snapshot = async (): Promise<Snapshot> => ({
    docs: await documentCount(),
    files: storedFiles(),
    multipart: multipart(),
  });

  // Without a stall limit these would wait for ever: the test's own limit makes that a failure.
  test(
    'a multipart upload that stops halfway is ended with 408 and leaves nothing behind',
    { timeout: 20_000 },
    async () => {
      const before = await snapshot();
      const boundary = `stall${randomUUID().replace(/-/g, '')}`;
      // 6 MiB: past the first 5 MiB part, so S3 has a multipart upload under way to abort.
      const answer = await sendAndStall(
        'POST',
        `/api/v1/patients/${patientId}/documents`,
        { 'content-type': `multipart/form-data; boundary=${boundary}` },
        multipartHead(boundary),
        6 * 1024 * 1024,
      );
      assert.equal(answer.status, 408, JSON.stringify(answer.body));
      assert.equal(answer.body.error?.code, 'request_timeout');
      assert.match(answer.body.error.message, /stalled.*nothing was stored/);
      assert.equal(answer.connection, 'close');
      assert.ok(
        answer.afterMs >= STALL_SECONDS * 1000 - 100,
        `answered after ${answer.afterMs} ms`,
      );
      await assertNothingLeft(before, true);
    },
  );

  test(
    'a new version sent as raw bytes that stops is ended with 408; the document keeps its version',
    { timeout: 20_000 },
    async () => {
      const form = new FormData();
      form.append('file', new Blob([randomBytes(50_000)]), 'first.bin');
      const created = await fetch(new URL(`/api/v1/patients/${patientId}/documents`, base), {
        method: 'POST',
        headers: { authorization: `Bearer ${vet.token}` },
        body: form,
      });
      assert.equal(created.status, 201);
      const doc = (await created.json()) as { id: string; version: number };
      const before = await snapshot();
      const answer = await sendAndStall(
        'PUT',
        `/api/v1/documents/${doc.id}/content`,
        { 'content-type': 'application/octet-stream' },
        '',
        300_000,
      );
      assert.equal(answer.status, 408, JSON.stringify(answer.body));
      assert.equal(answer.body.error?.code, 'request_timeout');
      await assertNothingLeft(before, false);
      const after = await h.request({
        method: 'GET',
        url: `/api/v1/documents/${doc.id}/versions`,
        token: vet.token,
      });
      assert.equal(after.json<{ items: unknown[] }>().items.length, 1, 'still one version');
    },
  );

  test('a client that disconnects halfway leaves nothing behind either', async () => {
    const before = await snapshot();
    const boundary = `gone${randomUUID().replace(/-/g, '')}`;
    await new Promise<void>((resolve) => {
      const req = http.request(new URL(`/api/v1/patients/${patientId}/documents`, base), {
        method: 'POST',
        headers: {
          authorization: `Bearer ${vet.token}`,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': String(20_000_000),
        },
      });
      req.on('error', () => {
        resolve();
      });
      req.write(multipartHead(boundary));
      req.write(randomBytes(6 * 1024 * 1024), () => {
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      });
    });
    await assertNothingLeft(before, true);
  });
});
