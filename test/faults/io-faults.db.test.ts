// I/O faults: EIO and ENOSPC injected into the server's writes and fsyncs with `strace -e inject`,
// and a really full (small tmpfs) file store. No affected request is answered 2xx; after a failed
// fsync or write the server stops taking writes (fail-stop), says so on /readyz and in its log,
// and after a restart everything acknowledged before is there and the audit chain verifies.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { runCli } from '../helpers/process.js';
import {
  noteBody,
  sendWrite,
  serveBuilt,
  setUpClinic,
  signIn,
  stop,
  type Clinic,
  type SentWrite,
  type Served,
} from './fault-helpers.js';
import { attachStrace, straceUnavailable } from './strace.js';

const skip = straceUnavailable();
if (skip !== null && process.env.CI === 'true') throw new Error(`CI=true needs strace: ${skip}`);

async function readyz(baseUrl: string): Promise<{ status: number; body: Record<string, string> }> {
  const res = await fetch(`${baseUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

/** Files under the blob folder's objects/ and tmp/ (what an upload would leave behind). */
function blobFiles(dataDir: string, folder = 'blobs'): string[] {
  const root = path.join(dataDir, folder);
  const walk = (dir: string): string[] =>
    fs.existsSync(dir)
      ? fs
          .readdirSync(dir, { withFileTypes: true })
          .flatMap((e) =>
            e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)],
          )
      : [];
  return [...walk(path.join(root, 'objects')), ...walk(path.join(root, 'tmp'))];
}

describeEachEngine('I/O faults', ({ engine, url }) => {
  // One data folder per suite: it holds the audit signing key of this suite's database.
  let dataDir = '';
  let env: Record<string, string>;
  let server: Served;
  let clinic: Clinic;
  const acked: SentWrite[] = [];

  /** A clinic with some acknowledged notes, on a fresh server. */
  async function freshServer(): Promise<void> {
    dataDir ||= tempDir('caretrail-io-');
    env = { CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: dataDir };
    server = await serveBuilt(env);
    clinic = await setUpClinic(dataDir, env, server.baseUrl);
    acked.length = 0;
  }

  async function writeSome(prefix: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const w = await sendWrite(server.baseUrl, clinic, 'note', `${prefix}-${i}`);
      assert.equal(w.state, 'acked');
      acked.push(w);
    }
  }

  /** After a restart: every acknowledged note is there, the chain verifies, the server is ready. */
  async function restartAndCheck(): Promise<void> {
    await stop(server, 'SIGKILL');
    server = await serveBuilt(env);
    assert.equal((await readyz(server.baseUrl)).status, 200, 'ready again after the restart');
    clinic.token = await signIn(server.baseUrl, clinic.email);
    const res = await fetch(
      `${server.baseUrl}/api/v1/patients/${clinic.patientId}/notes?limit=500`,
      { headers: { authorization: `Bearer ${clinic.token}` } },
    );
    const bodies = new Set(
      ((await res.json()) as { items: { body: string }[] }).items.map((n) => n.body),
    );
    for (const w of acked)
      assert.ok(bodies.has(noteBody(w.key)), `acknowledged note ${w.key} lost after the fault`);
    await stop(server);
    const verify = await runCli(['audit', 'verify'], env);
    assert.equal(verify.code, 0, `audit verify after the fault: ${verify.stdout}${verify.stderr}`);
  }

  async function expectFailStop(source: 'database' | 'files'): Promise<void> {
    const ready = await readyz(server.baseUrl);
    assert.equal(ready.status, 503);
    assert.equal(ready.body.status, 'fail_stop');
    assert.equal(ready.body[source], 'failed');
    const later = await sendWrite(server.baseUrl, clinic, 'note', `after-${source}-${Date.now()}`);
    assert.equal(
      later.status,
      503,
      'writes stay refused once the disk failed, even if it recovers',
    );
    assert.match(server.output(), /"failStop":"(database|files)".*fail-stop: a write to the/);
    assert.doesNotMatch(server.output(), /Fault Test Dog|fault note/, 'no patient data in the log');
  }

  test(
    'EIO from the SQLite log fsync: no 2xx, fail-stop, nothing acknowledged lost',
    {
      skip:
        engine !== 'sqlite'
          ? 'PostgreSQL handles its own fsync failures (it stops itself)'
          : (skip ?? false),
      timeout: 120_000,
    },
    async () => {
      await freshServer();
      await writeSome('before-eio', 5);
      const walFile = `${url().slice('sqlite:'.length)}-wal`;
      const tracer = await attachStrace(
        [server.pid],
        ['-P', walFile, '-e', 'trace=fsync,fdatasync', '-e', 'inject=fsync,fdatasync:error=EIO'],
        path.join(dataDir, 'strace-eio.txt'),
      );
      const hit = await sendWrite(server.baseUrl, clinic, 'note', 'during-eio');
      await tracer.stop();
      assert.notEqual(hit.state, 'acked', 'a write whose fsync failed must not be acknowledged');
      assert.equal(hit.status, 503);
      await expectFailStop('database');
      await restartAndCheck();
    },
  );

  test(
    'ENOSPC from the SQLite log writes: no 2xx, fail-stop, nothing acknowledged lost',
    {
      skip: engine !== 'sqlite' ? 'PostgreSQL handles its own write failures' : (skip ?? false),
      timeout: 120_000,
    },
    async () => {
      await freshServer();
      await writeSome('before-enospc', 5);
      const walFile = `${url().slice('sqlite:'.length)}-wal`;
      const tracer = await attachStrace(
        [server.pid],
        ['-P', walFile, '-e', 'trace=pwrite64,write', '-e', 'inject=pwrite64,write:error=ENOSPC'],
        path.join(dataDir, 'strace-enospc.txt'),
      );
      const hit = await sendWrite(server.baseUrl, clinic, 'note', 'during-enospc');
      await tracer.stop();
      assert.notEqual(hit.state, 'acked');
      assert.ok(hit.status !== undefined && hit.status >= 500, `answered ${hit.status}`);
      await expectFailStop('database');
      await restartAndCheck();
    },
  );

  test(
    "EIO from an uploaded blob's fsync: no 2xx, no document, no blob, fail-stop",
    {
      skip: skip ?? false,
      timeout: 120_000,
    },
    async () => {
      await freshServer();
      await writeSome('before-blob-eio', 3);
      const before = blobFiles(dataDir).length;
      // Without an Idempotency-Key (whose claim is a database write), the upload's first fsync is
      // its blob's: the file streams to disk before any row is written.
      const tracer = await attachStrace(
        [server.pid],
        ['-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO:when=1'],
        path.join(dataDir, 'strace-blob.txt'),
      );
      const hit = await sendWrite(server.baseUrl, clinic, 'document', 'blob-eio', {
        idempotencyKey: false,
      });
      await tracer.stop();
      assert.equal(hit.status, 503, 'the upload is refused');
      assert.equal(blobFiles(dataDir).length, before, 'no partial or orphaned blob left behind');
      await expectFailStop('files');
      await restartAndCheck();
    },
  );

  test(
    'a full file store (a 4 MiB tmpfs): 507, nothing left behind, other writes go on',
    {
      skip: spawnSync('mount', ['--version']).error ? 'mount is not available' : false,
      timeout: 120_000,
    },
    async (t) => {
      dataDir ||= tempDir('caretrail-io-');
      const blobs = tempDir('caretrail-full-');
      const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', blobs]);
      if (mounted.status !== 0) {
        const why = mounted.stderr.toString().trim();
        if (process.env.CI === 'true') throw new Error(`CI=true needs a tmpfs mount: ${why}`);
        t.skip(why);
        return;
      }
      try {
        env = {
          CARETRAIL_DATABASE_URL: url(),
          CARETRAIL_DATA_DIR: dataDir,
          CARETRAIL_BLOB_URL: `file:${blobs}`,
        };
        server = await serveBuilt(env);
        clinic = await setUpClinic(dataDir, env, server.baseUrl);
        const form = new FormData();
        form.append('file', new Blob([Buffer.alloc(6 * 1024 * 1024, 7)]), 'too-big.bin');
        const res = await fetch(`${server.baseUrl}/api/v1/patients/${clinic.patientId}/documents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${clinic.token}` },
          body: form,
        });
        const body = (await res.json()) as { error: { code: string; message: string } };
        assert.equal(res.status, 507, JSON.stringify(body));
        assert.equal(
          blobFiles(path.dirname(blobs), path.basename(blobs)).length,
          0,
          'the partial file was removed',
        );
        assert.equal(
          (await readyz(server.baseUrl)).status,
          200,
          'a full disk refuses, it does not fail-stop',
        );
        const small = await sendWrite(server.baseUrl, clinic, 'document', 'fits');
        assert.equal(small.state, 'acked', 'a file that fits is still taken');
        const note = await sendWrite(server.baseUrl, clinic, 'note', 'still-writing');
        assert.equal(note.state, 'acked');
      } finally {
        await stop(server);
        spawnSync('umount', [blobs]);
      }
    },
  );
});
