// Blob replication end to end on both engines, with the file store and the replica on a folder
// and s3rver each way round: uploads over real HTTP reach the replica as the same ciphertext
// (never plaintext), files stored before replication was on are backfilled a bounded number at
// a time, a replica outage costs no upload and is reported as lag until the copies catch up by
// themselves, only a retention purge deletes on the replica, a damaged file in the file store is
// reported instead of copied, and restoreBlobs rebuilds a fresh store from the replica,
// verifying every file and naming a damaged and a missing one by ids; in synchronous mode an
// upload is answered only once its bytes are on the replica, and refused (503) while it is down.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { openBlobStore } from '../../src/blobs/index.js';
import type { BlobStore } from '../../src/blobs/blob-store.js';
import { systemClock } from '../../src/domain/clock.js';
import { archiveIdleVersions } from '../../src/jobs/document-jobs.js';
import { restoreBlobs, type BlobReplicationStatus } from '../../src/replication/blobs/index.js';
import { PG_ADMIN_URL, createTestDatabase, pgUnavailable, tempDir } from '../helpers/engines.js';
import {
  PASSWORD,
  TestClock,
  startHarness,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';
import { S3_CREDENTIALS, filesUnder, startS3, type S3Server } from '../helpers/storage.js';
import { readAll } from '../helpers/streams.js';

const PATIENCE_MS = 30_000;
const MARKER = 'PATIENT-REX-MICROCHIP-985112345678901 ';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A body that shows up plainly in any file that stores it unencrypted. */
const markedText = (bytes: number, salt: string): Buffer =>
  Buffer.from(`${salt} ${MARKER.repeat(Math.ceil(bytes / MARKER.length))}`.slice(0, bytes));

async function pngOf(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 13) % 251;
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

async function waitFor(what: string, done: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + PATIENCE_MS;
  for (;;) {
    if (await done()) return;
    if (Date.now() > until)
      throw new Error(`timed out after ${PATIENCE_MS} ms waiting for ${what}`);
    await sleep(25);
  }
}

type Kind = 'file' | 's3';

/** A blob store under test with a way to reach its raw bytes on disk (to damage them). */
interface Place {
  kind: Kind;
  url: string;
  /** Where the bytes of `key` lie on disk. */
  rawFile(key: string): string;
  /** Every file of the store on disk (folder, or s3rver's folder), metadata left out. */
  rawFiles(): string[];
  /** Temporary files of unfinished writes (the folder's tmp/). */
  leftovers(): string[];
  /** Makes the store refuse writes (s3rver stopped, the folder's tmp/ replaced by a file). */
  breakDown(): Promise<void>;
  repair(): Promise<void>;
  cleanup(): Promise<void>;
}

async function openPlace(kind: Kind, s3: () => Promise<S3Server>): Promise<Place> {
  if (kind === 'file') {
    const root = tempDir('caretrail-blobs-');
    const tmp = path.join(root, 'tmp');
    return {
      kind,
      url: `file:${root}`,
      rawFile: (key) => path.join(root, 'objects', key.slice(0, 2), key),
      rawFiles: () => filesUnder(root),
      leftovers: () => (fs.statSync(tmp).isDirectory() ? filesUnder(tmp) : []),
      breakDown() {
        fs.rmSync(tmp, { recursive: true, force: true });
        fs.writeFileSync(tmp, 'not a folder');
        return Promise.resolve();
      },
      repair() {
        fs.rmSync(tmp, { force: true });
        fs.mkdirSync(tmp);
        return Promise.resolve();
      },
      cleanup() {
        fs.rmSync(root, { recursive: true, force: true });
        return Promise.resolve();
      },
    };
  }
  const server = await s3();
  return {
    kind,
    url: server.url,
    rawFile: (key) => path.join(server.dir, server.bucket, `${key}._S3rver_object`),
    rawFiles: () => filesUnder(server.dir).filter((f) => f.endsWith('._S3rver_object')),
    // A failed copy of a small blob is a single-part upload that never started.
    leftovers: () => [],
    breakDown: () => server.stop(),
    repair: () => server.restart(),
    cleanup: async () => {
      await server.stop().catch(() => undefined);
      fs.rmSync(server.dir, { recursive: true, force: true });
    },
  };
}

interface DocumentJson {
  id: string;
  status: string;
  version: number;
  preview: { status: string };
  storage: { tier: string };
}

for (const engine of ['sqlite', 'postgres'] as const) {
  for (const [primaryKind, replicaKind] of [
    ['file', 's3'],
    ['s3', 'file'],
  ] as const) {
    const skip =
      engine === 'postgres' && pgUnavailable() !== null
        ? `PostgreSQL not reachable at ${PG_ADMIN_URL}: ${pgUnavailable() ?? ''}`
        : false;
    describe(
      `blob replication [${engine}: ${primaryKind} → replica ${replicaKind}]`,
      { skip },
      () => {
        let database: { url: string; drop: () => Promise<void> };
        let s3: S3Server | null = null;
        let primary: Place;
        let replica: Place;
        /** Reads the replica's bytes through its own store (not the server's). */
        let replicaReader: BlobStore;
        let primaryReader: BlobStore;
        const dataDir = tempDir('caretrail-data-');
        let h: Harness;
        let base = '';
        let admin: SignedIn;
        let vet: SignedIn;
        let patientId = '';

        const sharedS3 = async () => (s3 ??= await startS3());

        before(async () => {
          database = await createTestDatabase(engine);
          primary = await openPlace(primaryKind, sharedS3);
          replica = await openPlace(replicaKind, sharedS3);
          replicaReader = openBlobStore(replica.url, { s3Credentials: S3_CREDENTIALS });
          primaryReader = openBlobStore(primary.url, { s3Credentials: S3_CREDENTIALS });
        });
        after(async () => {
          await (h as Harness | undefined)?.close();
          await replicaReader.close();
          await primaryReader.close();
          await database.drop();
          await primary.cleanup();
          await replica.cleanup();
          fs.rmSync(dataDir, { recursive: true, force: true });
        });

        /** A server on this database and file store, replicating or not; listening for fetch. */
        async function serve(replicating: boolean, extraEnv: Record<string, string> = {}) {
          const server = await startHarness(
            database.url,
            {
              CARETRAIL_DATA_DIR: dataDir,
              CARETRAIL_BLOB_URL: primary.url,
              CARETRAIL_DELIVERY_BACKOFF_MS: '20',
              CARETRAIL_DELIVERY_MAX_ATTEMPTS: '3',
              ...(replicating ? { CARETRAIL_BLOB_REPLICA_URL: replica.url } : {}),
              ...extraEnv,
            },
            {
              clock: systemClock,
              blobs: { s3Credentials: S3_CREDENTIALS },
              blobReplication: {
                maxQueued: 2,
                retryMaxBackoffMs: 200,
                behindAfterSeconds: 1,
                sweepIntervalMs: 200,
              },
            },
          );
          await server.runtime.app.listen({ host: '127.0.0.1', port: 0 });
          const address = server.runtime.app.server.address();
          if (!address || typeof address === 'string') throw new Error('no address');
          base = `http://127.0.0.1:${address.port}`;
          return server;
        }

        /** The same user signed in on another server (sessions live in the shared database). */
        async function signIn(server: Harness, user: SignedIn): Promise<SignedIn> {
          const res = await server.request({
            method: 'POST',
            url: '/api/v1/auth/login',
            body: { email: user.email, password: PASSWORD },
          });
          assert.equal(res.statusCode, 200, res.body);
          return { ...user, token: res.json<{ token: string }>().token };
        }

        const auth = (user: SignedIn) => ({ authorization: `Bearer ${user.token}` });

        async function upload(bytes: Buffer, filename: string): Promise<DocumentJson> {
          const form = new FormData();
          form.append('file', new Blob([bytes], { type: 'application/octet-stream' }), filename);
          const res = await fetch(`${base}/api/v1/patients/${patientId}/documents`, {
            method: 'POST',
            headers: auth(vet),
            body: form,
          });
          assert.equal(res.status, 201, await res.clone().text());
          return (await res.json()) as DocumentJson;
        }

        async function download(id: string, version?: number): Promise<Buffer> {
          const url = version
            ? `${base}/api/v1/documents/${id}/versions/${version}/content`
            : `${base}/api/v1/documents/${id}/content`;
          const res = await fetch(url, { headers: auth(vet) });
          assert.equal(res.status, 200, await res.clone().text());
          return Buffer.from(await res.arrayBuffer());
        }

        async function versionsOf(documentId: string) {
          return h.runtime.db.read
            .selectFrom('document_versions')
            .selectAll()
            .where('document_id', '=', documentId)
            .orderBy('version')
            .execute();
        }

        /** Blob keys of a document: every version's content, then its thumbnails. */
        async function keysOf(documentId: string): Promise<string[]> {
          const rows = await versionsOf(documentId);
          return [
            ...rows.map((r) => r.blob_key),
            ...rows.flatMap((r) => (r.thumb_blob_key ? [r.thumb_blob_key] : [])),
          ];
        }

        async function replicaHas(key: string): Promise<Buffer | null> {
          try {
            return await readAll(await replicaReader.get(key, 'hot'));
          } catch {
            return null;
          }
        }

        async function stateOf(key: string): Promise<string | undefined> {
          const row = await h.runtime.db.read
            .selectFrom('blob_replicas')
            .select('state')
            .where('blob_key', '=', key)
            .executeTakeFirst();
          return row?.state;
        }

        const status = (): Promise<BlobReplicationStatus> => h.runtime.blobReplication.status();

        /** Runs the relay and the backlog until nothing is pending (a server without its timers). */
        async function drain(server: Harness): Promise<void> {
          for (let round = 0; round < 50; round++) {
            await server.runtime.relay.runUntilIdle();
            const now = await server.runtime.blobReplication.status();
            if (now.pending === 0 && now.removalsPending === 0) return;
            await server.runtime.blobReplication.sweep();
            await sleep(10);
          }
          throw new Error('the replication backlog did not drain');
        }

        /** Asserts that the replica holds exactly the file store's bytes of `key`. */
        async function assertSameCiphertext(key: string): Promise<void> {
          const copy = await replicaHas(key);
          assert.ok(copy, `the replica holds ${key}`);
          const original = await readAll(await primaryReader.get(key, 'hot'));
          assert.ok(copy.equals(original), 'the replica holds the very bytes of the file store');
          assert.equal(copy.subarray(0, 4).toString('latin1'), 'CTB1', 'an encrypted blob');
        }

        test('files stored before replication was turned on are copied when it is, a bounded number of jobs at a time', async () => {
          const off = await serve(false);
          admin = await off.newOrganization();
          vet = await off.newUser(admin, 'clinician');
          const res = await off.request({
            method: 'POST',
            url: '/api/v1/patients',
            token: vet.token,
            body: { name: 'Rex', species: 'canine' },
          });
          assert.equal(res.statusCode, 201, res.body);
          patientId = res.json<{ id: string }>().id;
          const early = [
            await upload(markedText(40_000, 'early-1'), 'early-1.txt'),
            await upload(markedText(300_000, 'early-2'), 'early-2.txt'),
            await upload(await pngOf(320, 200), 'early-3.png'),
          ];
          await off.runtime.relay.runUntilIdle(); // the thumbnail
          const tracked = await off.runtime.db.read
            .selectFrom('blob_replicas')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .executeTakeFirstOrThrow();
          assert.equal(tracked.n, 0, 'nothing is tracked while replication is off');
          assert.equal((await off.runtime.blobReplication.status()).enabled, false);
          await off.close();

          h = await serve(true);
          admin = await signIn(h, admin);
          vet = await signIn(h, vet);
          const keys = (await Promise.all(early.map((d) => keysOf(d.id)))).flat();
          assert.equal(keys.length, 4, 'three contents and one thumbnail');
          for (const key of keys) assert.equal(await replicaHas(key), null);

          assert.equal(await h.runtime.blobReplication.backfill(), 4);
          assert.equal(
            await h.runtime.blobReplication.backfill(),
            0,
            'a second backfill adds nothing',
          );
          const before = await status();
          assert.equal(before.pending, 4);
          assert.ok(before.oldestPendingSeconds >= 0);
          assert.equal(before.lastReplicatedAt, null);
          assert.equal(await h.runtime.blobReplication.sweep(), 2, 'bounded: two jobs at a time');
          assert.equal(await h.runtime.blobReplication.sweep(), 0, 'no room until those ran');
          const queued = await h.runtime.db.read
            .selectFrom('outbox')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('topic', '=', 'blob.replicate')
            .where('status', '=', 'pending')
            .executeTakeFirstOrThrow();
          assert.equal(queued.n, 2);

          await drain(h);
          for (const key of keys) await assertSameCiphertext(key);
          const afterwards = await status();
          assert.equal(afterwards.pending, 0);
          assert.equal(afterwards.oldestPendingSeconds, 0);
          assert.ok(afterwards.lastReplicatedAt);
          assert.equal(afterwards.lastError, null);
          assert.equal(afterwards.behind, false);
          h.runtime.startJobs();
        });

        test('an upload, a new version and a thumbnail reach the replica as the same ciphertext; no plaintext there', async (t) => {
          const text = markedText(700_000, 'upload');
          const started = Date.now();
          const doc = await upload(text, 'letter.txt');
          const put = await fetch(`${base}/api/v1/documents/${doc.id}/content`, {
            method: 'PUT',
            headers: { ...auth(vet), 'content-type': 'application/octet-stream' },
            body: markedText(20_000, 'second version'),
          });
          assert.equal(put.status, 200, await put.clone().text());
          const image = await upload(await pngOf(400, 300), 'paw.png');
          await waitFor('the thumbnail', async () => {
            const [v] = await versionsOf(image.id);
            return v?.thumb_blob_key !== null && v?.thumb_blob_key !== undefined;
          });
          const keys = [...(await keysOf(doc.id)), ...(await keysOf(image.id))];
          assert.equal(keys.length, 4);
          await waitFor('the copies', async () => {
            const states = await Promise.all(keys.map(stateOf));
            return states.every((s) => s === 'replicated');
          });
          t.diagnostic(
            `upload to replicated (4 blobs, 1 MB, relay polling): ${Date.now() - started} ms`,
          );
          for (const key of keys) await assertSameCiphertext(key);
          const rows = await h.runtime.db.read
            .selectFrom('blob_replicas')
            .selectAll()
            .where('blob_key', 'in', keys)
            .execute();
          for (const row of rows) {
            const copy = await replicaHas(row.blob_key);
            assert.equal(row.bytes, copy?.length);
            assert.equal(row.sha256, copy ? sha256(copy) : null);
          }
          const leaks = replica
            .rawFiles()
            .filter((f) => fs.readFileSync(f).includes(Buffer.from('PATIENT-REX')));
          assert.deepEqual(leaks, [], 'no replica file holds plaintext');
          assert.ok((await download(doc.id, 1)).equals(text));
        });

        test('a replica outage costs no upload: the lag grows and is reported, and the copies catch up by themselves', async () => {
          await replica.breakDown();
          const during = [
            markedText(50_000, 'during outage 1'),
            markedText(60_000, 'during outage 2'),
          ];
          const docs = [];
          for (const [i, body] of during.entries())
            docs.push(await upload(body, `outage-${i}.txt`));
          const keys = (await Promise.all(docs.map((d) => keysOf(d.id)))).flat();
          await waitFor(
            'the error to be reported',
            async () => (await status()).lastError !== null,
          );
          const down = await status();
          assert.ok(down.pending >= 2, `pending ${down.pending}`);
          assert.match(down.lastError ?? '', /replica store/);
          assert.doesNotMatch(down.lastError ?? '', /outage|PATIENT|\.txt/);
          await waitFor('/readyz to say degraded', async () => {
            const ready = await h.request({ method: 'GET', url: '/readyz' });
            const body = ready.json<{ status: string; replica: string }>();
            return (
              ready.statusCode === 200 && body.status === 'degraded' && body.replica === 'degraded'
            );
          });
          const part = h.runtime.replication.parts().files;
          assert.ok(part && part.state !== 'ok', 'the files part is not ok');
          await waitFor(
            'the lag to reach a second',
            async () => (await status()).oldestPendingSeconds >= 1,
          );
          const later = await status();
          assert.equal(later.behind, true);
          assert.ok((await download(docs[0]?.id ?? '')).equals(during[0] ?? Buffer.alloc(0)));
          for (const key of keys) assert.equal(await stateOf(key), 'pending');
          const attemptsOf = () =>
            h.runtime.db.read
              .selectFrom('outbox')
              .select(['status', 'attempts'])
              .where('topic', '=', 'blob.replicate')
              .where(
                'payload',
                'in',
                keys.map((key) => JSON.stringify({ key })),
              )
              .execute();
          // Retries go on past CARETRAIL_DELIVERY_MAX_ATTEMPTS (3) while the replica is down.
          await waitFor('a copy to be retried more than 3 times', async () =>
            (await attemptsOf()).some((a) => a.attempts > 3),
          );
          const attempts = await attemptsOf();
          assert.ok(
            attempts.every((a) => a.status === 'pending'),
            'retried past CARETRAIL_DELIVERY_MAX_ATTEMPTS, never given up',
          );

          await replica.repair();
          await waitFor('the replica to catch up', async () => {
            const now = await status();
            return now.pending === 0 && now.lastError === null;
          });
          for (const key of keys) await assertSameCiphertext(key);
          assert.equal((await status()).behind, false);
          await waitFor('/readyz to say ready', async () => {
            const ready = await h.request({ method: 'GET', url: '/readyz' });
            return ready.json<{ status: string }>().status === 'ready';
          });
        });

        test('a file damaged in the file store is reported, not copied; it is tried again after a restart', async () => {
          await replica.breakDown();
          const body = markedText(30_000, 'damaged later');
          const doc = await upload(body, 'damaged.txt');
          const [key = ''] = await keysOf(doc.id);
          const file = primary.rawFile(key);
          const good = fs.readFileSync(file);
          const bad = Buffer.from(good);
          bad.writeUInt8(bad.readUInt8(5000) ^ 0xff, 5000);
          fs.writeFileSync(file, bad);
          await replica.repair();
          await waitFor('the failure', async () => (await stateOf(key)) === 'failed');
          const now = await status();
          assert.equal(now.failed, 1);
          assert.equal(now.behind, true);
          assert.match(now.lastError ?? '', /file store's copy is damaged/);
          assert.equal(await replicaHas(key), null, 'nothing damaged reaches the replica');
          assert.deepEqual(replica.leftovers(), [], 'and nothing half-written stays');
          // The operator puts the file back (from a backup); a restart tries again.
          fs.writeFileSync(file, good);
          await h.close();
          h = await serve(true);
          admin = await signIn(h, admin);
          vet = await signIn(h, vet);
          h.runtime.startJobs();
          await waitFor('the retried copy', async () => (await stateOf(key)) === 'replicated');
          await assertSameCiphertext(key);
          assert.equal((await status()).failed, 0);
        });

        test('soft delete, restore and the archive tier never delete on the replica; a retention purge does', async () => {
          const keep = await upload(markedText(20_000, 'kept'), 'kept.txt');
          const doc = await upload(await pngOf(300, 300), 'to-purge.png');
          await waitFor('the thumbnail', async () => (await keysOf(doc.id)).length === 2);
          const keys = await keysOf(doc.id);
          const [keptKey = ''] = await keysOf(keep.id);
          await waitFor('the copies', async () =>
            (await Promise.all([...keys, keptKey].map(stateOf))).every((s) => s === 'replicated'),
          );

          const del = await fetch(`${base}/api/v1/documents/${doc.id}`, {
            method: 'DELETE',
            headers: auth(vet),
          });
          assert.equal(del.status, 200);
          const restored = await fetch(`${base}/api/v1/documents/${doc.id}/restore`, {
            method: 'POST',
            headers: auth(vet),
          });
          assert.equal(restored.status, 200);
          const moved = await archiveIdleVersions(
            {
              db: h.runtime.db,
              vault: h.runtime.vault,
              clock: new TestClock(new Date(Date.now() + 400 * 86_400_000)),
              log: h.runtime.app.log,
            },
            182,
          );
          assert.ok(moved >= 2);
          assert.equal((await versionsOf(doc.id))[0]?.tier, 'archive');
          await h.runtime.relay.runUntilIdle();
          for (const key of [...keys, keptKey]) {
            assert.ok(await replicaHas(key), 'still on the replica');
            assert.equal(await stateOf(key), 'replicated');
          }

          const again = await fetch(`${base}/api/v1/documents/${doc.id}`, {
            method: 'DELETE',
            headers: auth(vet),
          });
          assert.equal(again.status, 200);
          const purge = await h.request({
            method: 'POST',
            url: `/api/v1/documents/${doc.id}/purge`,
            token: admin.token,
            body: { reason: 'retention period over' },
          });
          assert.equal(purge.statusCode, 200, purge.body);
          await waitFor('the replica deletions', async () =>
            (await Promise.all(keys.map(stateOf))).every((s) => s === 'removed'),
          );
          for (const key of keys)
            assert.equal(await replicaHas(key), null, 'gone from the replica');
          await assertSameCiphertext(keptKey);
          assert.equal((await status()).removalsPending, 0);
        });

        test('a purge while replication is off reaches the replica once it is on again', async () => {
          const doc = await upload(markedText(10_000, 'purged while off'), 'off.txt');
          const [key = ''] = await keysOf(doc.id);
          await waitFor('the copy', async () => (await stateOf(key)) === 'replicated');
          await h.close();

          const off = await serve(false);
          const offAdmin = await signIn(off, admin);
          const offVet = await signIn(off, vet);
          const del = await fetch(`${base}/api/v1/documents/${doc.id}`, {
            method: 'DELETE',
            headers: auth(offVet),
          });
          assert.equal(del.status, 200);
          const purge = await off.request({
            method: 'POST',
            url: `/api/v1/documents/${doc.id}/purge`,
            token: offAdmin.token,
            body: { reason: 'retention period over' },
          });
          assert.equal(purge.statusCode, 200, purge.body);
          await off.runtime.relay.runUntilIdle();
          const row = await off.runtime.db.read
            .selectFrom('blob_replicas')
            .select(['state', 'job_id'])
            .where('blob_key', '=', key)
            .executeTakeFirstOrThrow();
          assert.deepEqual(row, { state: 'purging', job_id: null }, 'waits for replication');
          assert.ok(await replicaHas(key), 'untouched while off');
          await off.close();

          h = await serve(true);
          admin = await signIn(h, admin);
          vet = await signIn(h, vet);
          h.runtime.startJobs();
          await waitFor('the deletion', async () => (await stateOf(key)) === 'removed');
          assert.equal(await replicaHas(key), null);
        });

        test('a file sent with a result is copied while the result waits for a patient, and once on a chart it is not copied twice', async () => {
          const created = await h.request({
            method: 'POST',
            url: '/api/v1/integrations/keys',
            token: admin.token,
            body: { name: 'Reference lab' },
          });
          assert.equal(created.statusCode, 201, created.body);
          const labKey = created.json<{ key: string }>().key;
          const send = async (resultId: string) => {
            const res = await h.request({
              method: 'POST',
              url: '/api/v1/integrations/results',
              token: labKey,
              body: {
                patient: { identifier: { system: 'microchip', value: '985000000000042' } },
                source: 'Reference lab',
                kind: 'lab',
                resultId,
                observations: [{ code: 'T4', value: '2.1', unit: 'ug/dL' }],
                attachments: [
                  {
                    filename: `${resultId}.txt`,
                    data: markedText(9_000, resultId).toString('base64'),
                  },
                ],
              },
            });
            assert.equal(res.statusCode, 201, res.body);
            return res.json<{ id: string; status: string }>();
          };
          const waiting = await send('T4-waiting');
          const assignedLater = await send('T4-assigned');
          assert.equal(waiting.status, 'unmatched');
          const files = await h.runtime.db.read
            .selectFrom('result_attachments')
            .select(['result_id', 'blob_key'])
            .where('result_id', 'in', [waiting.id, assignedLater.id])
            .execute();
          assert.equal(files.length, 2);
          await waitFor('the copies', async () =>
            (await Promise.all(files.map((f) => stateOf(f.blob_key)))).every(
              (state) => state === 'replicated',
            ),
          );
          for (const f of files) await assertSameCiphertext(f.blob_key);

          const assigned = await h.request({
            method: 'POST',
            url: `/api/v1/integrations/unmatched/${assignedLater.id}/assign`,
            token: vet.token,
            body: { patientId },
          });
          assert.equal(assigned.statusCode, 200, assigned.body);
          const filed = files.find((f) => f.result_id === assignedLater.id)?.blob_key ?? '';
          const jobs = await h.runtime.db.read
            .selectFrom('outbox')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('topic', '=', 'blob.replicate')
            .where('payload', '=', JSON.stringify({ key: filed }))
            .executeTakeFirstOrThrow();
          assert.equal(jobs.n, 1, 'the file on the chart is the copy already made');
          assert.equal(await stateOf(filed), 'replicated');
        });

        test('restoreBlobs rebuilds a fresh store from the replica, verifying every file, and names a damaged and a missing one by ids', async () => {
          const texts = [markedText(600_000, 'restore-a'), markedText(5_000, 'restore-b')];
          const intact = await upload(texts[0] ?? Buffer.alloc(0), 'intact.txt');
          const damaged = await upload(markedText(300_000, 'restore-damaged'), 'damaged.txt');
          const lost = await upload(texts[1] ?? Buffer.alloc(0), 'lost.txt');
          await waitFor('every copy', async () => {
            const now = await status();
            return now.pending === 0 && now.removalsPending === 0;
          });
          const [damagedKey = ''] = await keysOf(damaged.id);
          const [lostKey = ''] = await keysOf(lost.id);
          const file = replica.rawFile(damagedKey);
          const bytes = fs.readFileSync(file);
          bytes.writeUInt8(bytes.readUInt8(270_000) ^ 0x01, 270_000);
          fs.writeFileSync(file, bytes);
          await replicaReader.delete(lostKey);

          const live = await h.runtime.db.read
            .selectFrom('document_versions')
            .select(['blob_key', 'thumb_blob_key'])
            .where('purged_at', 'is', null)
            .execute();
          const resultFiles = await h.runtime.db.read
            .selectFrom('result_attachments')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('document_id', 'is', null)
            .executeTakeFirstOrThrow();
          assert.ok(resultFiles.n >= 1, 'a result file waiting for its patient is restored too');
          const expected =
            live.length + live.filter((v) => v.thumb_blob_key !== null).length + resultFiles.n;

          const target = tempDir('caretrail-restored-');
          try {
            const report = await restoreBlobs({
              from: replica.url,
              to: `file:${target}`,
              db: h.runtime.db,
              keyring: h.runtime.vault.keyring,
              storeOptions: { s3Credentials: S3_CREDENTIALS },
            });
            assert.equal(report.copied, expected - 2);
            assert.equal(report.verified, expected - 2);
            assert.equal(report.missing, 1);
            assert.equal(report.bad, 1);
            assert.deepEqual(report.missingBlobs, [
              {
                kind: 'content',
                documentId: lost.id,
                version: 1,
                blobKey: lostKey,
                reason: 'not on the replica',
              },
            ]);
            const [badOne] = report.badBlobs;
            assert.equal(report.badBlobs.length, 1);
            assert.ok(badOne?.kind === 'content');
            assert.equal(badOne.documentId, damaged.id);
            assert.equal(badOne.blobKey, damagedKey);
            assert.match(badOne.reason, /authentication|SHA-256/);
            assert.doesNotMatch(JSON.stringify(report), /Rex|\.txt|restore-/);
            assert.ok(
              !filesUnder(target).some((f) => f.includes(damagedKey)),
              'a damaged file is not written to the new store',
            );

            const checkOnly = await restoreBlobs({
              from: replica.url,
              to: null,
              db: h.runtime.db,
              keyring: h.runtime.vault.keyring,
              storeOptions: { s3Credentials: S3_CREDENTIALS },
            });
            assert.equal(checkOnly.copied, 0);
            assert.equal(checkOnly.verified, expected - 2);
            assert.equal(checkOnly.bad + checkOnly.missing, 2);

            // A server on the restored store serves the files as they were uploaded.
            await h.close();
            h = await serve(false, { CARETRAIL_BLOB_URL: `file:${target}` });
            vet = await signIn(h, vet);
            assert.ok((await download(intact.id)).equals(texts[0] ?? Buffer.alloc(0)));
            const early = await h.runtime.db.read
              .selectFrom('document_versions')
              .select(['document_id', 'sha256', 'version'])
              .where('purged_at', 'is', null)
              .where('document_id', 'not in', [damaged.id, lost.id])
              .execute();
            for (const v of early)
              assert.equal(sha256(await download(v.document_id, v.version)), v.sha256);
          } finally {
            fs.rmSync(target, { recursive: true, force: true });
          }
        });

        test('synchronous mode: an upload is answered once its bytes are on the replica; with the replica down it is refused and nothing is kept', async () => {
          await h.close();
          const databaseReplica = tempDir('caretrail-dbreplica-');
          try {
            h = await serve(true, {
              CARETRAIL_REPLICA_URL: `file:${databaseReplica}`,
              CARETRAIL_REPLICA_SYNC: 'true',
            });
            vet = await signIn(h, vet);
            h.runtime.startJobs();
            const copyJobs = async (key: string) =>
              (
                await h.runtime.db.read
                  .selectFrom('outbox')
                  .select('id')
                  .where('topic', '=', 'blob.replicate')
                  .where('payload', '=', JSON.stringify({ key }))
                  .execute()
              ).length;

            const doc = await upload(markedText(40_000, 'synchronous'), 'sync.txt');
            const [key = ''] = await keysOf(doc.id);
            // No job copied it: the upload itself did, before answering.
            await assertSameCiphertext(key);
            assert.equal(await stateOf(key), 'replicated');
            assert.equal(await copyJobs(key), 0);

            await h.runtime.relay.runUntilIdle();
            const documentsOf = async () =>
              (
                await h.runtime.db.read
                  .selectFrom('documents')
                  .select('id')
                  .where('patient_id', '=', patientId)
                  .execute()
              ).length;
            const documentsBefore = await documentsOf();
            const filesBefore = primary.rawFiles().length;
            const replicaBefore = replica.rawFiles().length;
            await replica.breakDown();
            const form = new FormData();
            form.append(
              'file',
              new Blob([markedText(30_000, 'refused')], { type: 'application/octet-stream' }),
              'refused-upload.txt',
            );
            const refused = await fetch(`${base}/api/v1/patients/${patientId}/documents`, {
              method: 'POST',
              headers: auth(vet),
              body: form,
            });
            const text = await refused.text();
            assert.equal(refused.status, 503, text);
            const error = (JSON.parse(text) as { error: { code: string; message: string } }).error;
            assert.equal(error.code, 'unavailable');
            assert.match(error.message, /replica file store .* nothing was saved/);
            assert.doesNotMatch(text, /refused-upload|refused|PATIENT/);
            assert.equal(await documentsOf(), documentsBefore, 'no document row');
            assert.equal(primary.rawFiles().length, filesBefore, 'no file left in the file store');
            assert.deepEqual(replica.leftovers(), [], 'nothing half-written on the replica');

            await replica.repair();
            assert.equal(replica.rawFiles().length, replicaBefore);
            const later = await upload(markedText(20_000, 'after the outage'), 'later.txt');
            const [laterKey = ''] = await keysOf(later.id);
            await assertSameCiphertext(laterKey);
            assert.equal(await copyJobs(laterKey), 0);
          } finally {
            fs.rmSync(databaseReplica, { recursive: true, force: true });
          }
        });
      },
    );
  }
}
