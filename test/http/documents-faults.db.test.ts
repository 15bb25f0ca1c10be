// Documents when storage fails: a full disk and an unreachable S3 give clear errors, change
// nothing, keep earlier files intact, and background jobs catch up once storage is back.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { filesUnder, S3_CREDENTIALS, startS3, type S3Server } from '../helpers/storage.js';

/** A 2 MiB tmpfs for the blob folder, or the reason it cannot be made here. */
function mountSmallDisk(dir: string): string | null {
  if (process.getuid?.() !== 0) return 'mounting a small tmpfs needs root';
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return `mount -t tmpfs failed: ${err instanceof Error ? err.message.split('\n')[0] : ''}`;
  }
}

async function serve(h: Harness): Promise<string> {
  await h.runtime.app.listen({ host: '127.0.0.1', port: 0 });
  const address = h.runtime.app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

async function setUp(h: Harness): Promise<{ vet: SignedIn; patientId: string }> {
  const admin = await h.newOrganization();
  const vet = await h.newUser(admin, 'clinician');
  const res = await h.request({
    method: 'POST',
    url: '/api/v1/patients',
    token: vet.token,
    body: { name: 'Pepper', species: 'canine' },
  });
  return { vet, patientId: res.json<{ id: string }>().id };
}

function upload(base: string, vet: SignedIn, patientId: string, body: Buffer, name: string) {
  const form = new FormData();
  form.append('file', new Blob([body]), name);
  return fetch(`${base}/api/v1/patients/${patientId}/documents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${vet.token}` },
    body: form,
  });
}

async function documentCount(h: Harness): Promise<number> {
  const row = await h.runtime.db.read
    .selectFrom('documents')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return row.n;
}

describeEachEngine('documents on a full disk', ({ url }) => {
  test('an upload that does not fit is 507, leaves nothing behind, and earlier files stay intact', async (t) => {
    const blobDir = tempDir('caretrail-small-disk-');
    const problem = mountSmallDisk(blobDir);
    if (problem !== null) {
      t.skip(problem);
      return;
    }
    const h = await startHarness(url(), { CARETRAIL_BLOB_URL: `file:${blobDir}` });
    try {
      const base = await serve(h);
      const { vet, patientId } = await setUp(h);
      const first = randomBytes(900_000);
      const ok = await upload(base, vet, patientId, first, 'first.bin');
      assert.equal(ok.status, 201);
      const { id } = (await ok.json()) as { id: string };
      const docs = await documentCount(h);

      const tooBig = await upload(base, vet, patientId, randomBytes(1_500_000), 'second.bin');
      assert.equal(tooBig.status, 507);
      const err = (await tooBig.json()) as { error: { code: string; message: string } };
      assert.equal(err.error.code, 'insufficient_storage');
      assert.match(err.error.message, /full; nothing was changed/);
      assert.equal(await documentCount(h), docs);
      assert.deepEqual(filesUnder(path.join(blobDir, 'tmp')), []);

      const back = await fetch(`${base}/api/v1/documents/${id}/content`, {
        headers: { authorization: `Bearer ${vet.token}` },
      });
      assert.equal(back.status, 200);
      assert.ok(Buffer.from(await back.arrayBuffer()).equals(first));
    } finally {
      await h.close();
      execFileSync('umount', [blobDir]);
      fs.rmSync(blobDir, { recursive: true, force: true });
    }
  });
});

describeEachEngine('documents while S3 is down', ({ url }) => {
  let s3: S3Server;
  let h: Harness;
  let base: string;
  let vet: SignedIn;
  let patientId: string;
  before(async () => {
    s3 = await startS3();
    h = await startHarness(
      url(),
      { CARETRAIL_BLOB_URL: s3.url, CARETRAIL_DELIVERY_BACKOFF_MS: '50' },
      { blobs: { s3Credentials: S3_CREDENTIALS } },
    );
    base = await serve(h);
    ({ vet, patientId } = await setUp(h));
  });
  after(async () => {
    await h.close();
    await s3.stop().catch(() => undefined);
    fs.rmSync(s3.dir, { recursive: true, force: true });
  });

  test('uploads and downloads answer 503 with a clear message and change nothing; jobs catch up', async () => {
    const png = await sharp({
      create: { width: 400, height: 300, channels: 3, background: '#884422' },
    })
      .png()
      .toBuffer();
    const stored = await upload(base, vet, patientId, png, 'before.png');
    assert.equal(stored.status, 201);
    const { id } = (await stored.json()) as { id: string };
    const docs = await documentCount(h);

    await s3.stop();
    const ready = await h.request({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    assert.equal(ready.json<{ files: string }>().files, 'unavailable');

    const refused = await upload(base, vet, patientId, randomBytes(10_000), 'during.bin');
    assert.equal(refused.status, 503);
    assert.ok(refused.headers.get('retry-after'));
    const err = (await refused.json()) as { error: { message: string } };
    assert.match(err.error.message, /file store is not reachable.*nothing was changed/);
    assert.equal(await documentCount(h), docs);

    const download = await fetch(`${base}/api/v1/documents/${id}/content`, {
      headers: { authorization: `Bearer ${vet.token}` },
    });
    assert.equal(download.status, 503);

    // The thumbnail job fails while S3 is away and is retried with backoff.
    await h.runtime.relay.runUntilIdle();
    const pending = await h.runtime.db.read
      .selectFrom('outbox')
      .select(['attempts', 'status', 'last_error'])
      .where('topic', '=', 'preview')
      .execute();
    assert.ok(pending.some((p) => p.status === 'pending' && p.attempts >= 1 && p.last_error));

    await s3.restart();
    assert.equal((await h.request({ method: 'GET', url: '/readyz' })).statusCode, 200);
    for (let i = 0; i < 100; i++) {
      // The harness clock stands still: move it past the retry's backoff.
      h.clock.advance(1000);
      await h.runtime.relay.runUntilIdle();
      const doc = await h.request({
        method: 'GET',
        url: `/api/v1/documents/${id}`,
        token: vet.token,
      });
      if (doc.json<{ preview: { status: string } }>().preview.status === 'ready') break;
    }
    const doc = await h.request({
      method: 'GET',
      url: `/api/v1/documents/${id}`,
      token: vet.token,
    });
    assert.equal(doc.json<{ preview: { status: string } }>().preview.status, 'ready');
    const again = await fetch(`${base}/api/v1/documents/${id}/content`, {
      headers: { authorization: `Bearer ${vet.token}` },
    });
    assert.equal(again.status, 200);
    assert.ok(Buffer.from(await again.arrayBuffer()).equals(png));
  });
});
