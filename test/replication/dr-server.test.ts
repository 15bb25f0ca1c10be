// Disaster recovery with real processes (SQLite): `caretrail serve` replicating to a folder or to
// s3rver, the replica going away and coming back (asynchronous: writes go on, /readyz says
// degraded, nothing lost; synchronous: writes answer 503, then recover), `caretrail restore`
// (keys, refusals, --at, the restored server answering with every acknowledged note), `caretrail
// replicate status`, and `caretrail dr drill` on a folder and on an s3rver replica.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../helpers/engines.js';
import { api, runCli, startServer, type ServerProcess } from '../helpers/process.js';
import { S3_CREDENTIALS, startS3, type S3Server } from '../helpers/storage.js';

const dirs: string[] = [];
const servers: ServerProcess[] = [];
const s3s: S3Server[] = [];
after(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const s of s3s) await s.stop().catch(() => undefined);
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
const folder = (prefix: string) => {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
};

const PASSWORD = 'correct horse battery staple';
const keys = () => ({
  CARETRAIL_MASTER_KEY: randomBytes(32).toString('base64'),
  CARETRAIL_AUDIT_SIGNING_KEY: generateKeyPairSync('ed25519')
    .privateKey.export({ format: 'pem', type: 'pkcs8' })
    .toString(),
});
const s3Env = {
  AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
};

/** A clinician and a patient on a fresh server; returns what writes need. */
async function clinic(env: Record<string, string>, baseUrl: string, dataDir: string) {
  const passwordFile = path.join(dataDir, '..', `pw-${randomBytes(3).toString('hex')}`);
  fs.writeFileSync(passwordFile, `${PASSWORD}\n`);
  const admin = `admin-${randomBytes(3).toString('hex')}@example.test`;
  const made = await runCli(
    ['admin', 'create', '--org', 'DR Clinic', '--email', admin, '--password-file', passwordFile],
    env,
  );
  assert.equal(made.code, 0, made.stderr);
  const adminToken = (
    await api<{ token: string }>(baseUrl, 'POST', '/api/v1/auth/login', {
      body: { email: admin, password: PASSWORD },
    })
  ).json.token;
  const vet = `vet-${randomBytes(3).toString('hex')}@example.test`;
  const user = await api(baseUrl, 'POST', '/api/v1/users', {
    token: adminToken,
    body: { email: vet, name: 'DR Vet', role: 'clinician', password: PASSWORD },
  });
  assert.equal(user.status, 201);
  const token = (
    await api<{ token: string }>(baseUrl, 'POST', '/api/v1/auth/login', {
      body: { email: vet, password: PASSWORD },
    })
  ).json.token;
  const patient = await api<{ id: string }>(baseUrl, 'POST', '/api/v1/patients', {
    token,
    body: { name: 'Replica Rex', species: 'canine' },
  });
  assert.equal(patient.status, 201);
  return { token, patientId: patient.json.id, vet };
}

const note = (baseUrl: string, token: string, patientId: string, body: string) =>
  api<{ id: string }>(baseUrl, 'POST', `/api/v1/patients/${patientId}/notes`, {
    token,
    body: { kind: 'clinical', body },
  });

async function readyz(baseUrl: string) {
  const res = await fetch(`${baseUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(server: ServerProcess): Promise<void> {
  server.child.kill('SIGTERM');
  await server.exited;
}

describe('asynchronous replication to s3rver, through an outage', () => {
  test('writes go on while S3 is down, /readyz says degraded, and a restore holds every acknowledged note', async () => {
    const s3 = await startS3('caretrail-dr');
    s3s.push(s3);
    const dataDir = folder('caretrail-dr-async-');
    const replica = `s3://${s3.bucket}/clinic?region=us-east-1&endpoint=http://127.0.0.1:${String(s3.port)}&forcePathStyle=true`;
    const env = {
      ...keys(),
      ...s3Env,
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_REPLICA_URL: replica,
    };
    const server = await startServer(env);
    servers.push(server);
    const { token, patientId, vet } = await clinic(env, server.baseUrl, dataDir);
    await until(
      'the replica is in step',
      async () => (await readyz(server.baseUrl)).body.replica === 'ok',
    );

    const acked: string[] = [];
    for (let i = 0; i < 5; i++) {
      const body = `before outage ${String(i)}`;
      assert.equal((await note(server.baseUrl, token, patientId, body)).status, 201);
      acked.push(body);
    }
    await s3.stop();
    for (let i = 0; i < 5; i++) {
      const body = `during outage ${String(i)}`;
      assert.equal((await note(server.baseUrl, token, patientId, body)).status, 201);
      acked.push(body);
    }
    await until('/readyz reports the replica degraded', async () => {
      const r = await readyz(server.baseUrl);
      return r.status === 200 && r.body.status === 'degraded' && r.body.replica === 'degraded';
    });
    const status = await runCli(['replicate', 'status'], { ...env });
    assert.equal(status.code, 1, status.stdout + status.stderr);
    // The database part's own error line, not "none".
    assert.match(
      status.stdout,
      /^Server: replicating, asynchronous\n {2}lag: .*\n {2}last error: (?!none)\S/m,
    );

    await s3.restart();
    await until(
      'the replica catches up',
      async () => (await readyz(server.baseUrl)).body.status === 'ready',
    );
    // The anchor of a checkpoint made during the outage ships at its next retry.
    let caughtUp = await runCli(['replicate', 'status'], { ...env });
    await until('replicate status reports everything shipped', async () => {
      caughtUp = await runCli(['replicate', 'status'], { ...env });
      return caughtUp.code === 0;
    });
    assert.match(caughtUp.stdout, /^ {2}last error: none$/m);
    assert.match(
      caughtUp.stdout,
      /^Files: no blob replica \(CARETRAIL_BLOB_REPLICA_URL is empty\): files are not copied$/m,
    );
    assert.match(
      caughtUp.stdout,
      /^Audit anchors: newest shipped (none|\d+ \(checkpoint of .*\)); 0 waiting$/m,
    );
    await stop(server);

    const to = folder('caretrail-dr-restored-');
    const restored = await runCli(['restore', '--from', replica, '--to', to, '--force'], {
      ...env,
      CARETRAIL_DATA_DIR: to,
    });
    assert.equal(restored.code, 0, restored.stdout + restored.stderr);
    assert.match(restored.stdout, /audit trail: intact/);
    const second = await startServer({ ...env, CARETRAIL_DATA_DIR: to, CARETRAIL_REPLICA_URL: '' });
    servers.push(second);
    const login = await api<{ token: string }>(second.baseUrl, 'POST', '/api/v1/auth/login', {
      body: { email: vet, password: PASSWORD },
    });
    const list = await api<{ items: { body: string }[] }>(
      second.baseUrl,
      'GET',
      `/api/v1/patients/${patientId}/notes`,
      { token: login.json.token },
    );
    assert.equal(list.status, 200);
    const bodies = new Set(list.json.items.map((n) => n.body));
    for (const body of acked) assert.ok(bodies.has(body), `${body} restored`);
    await stop(second);
  });
});

describe('synchronous replication to a folder', () => {
  test('a write is refused with 503 while the replica cannot be written, and accepted again after', async () => {
    const dataDir = folder('caretrail-dr-sync-');
    const replicaDir = folder('caretrail-dr-sync-replica-');
    const env = {
      ...keys(),
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_REPLICA_URL: `file:${replicaDir}`,
      CARETRAIL_REPLICA_SYNC: 'true',
    };
    const server = await startServer(env);
    servers.push(server);
    const { token, patientId } = await clinic(env, server.baseUrl, dataDir);
    assert.equal((await note(server.baseUrl, token, patientId, 'synced one')).status, 201);

    // The replica's disk refuses writes (read-only folder; root ignores modes, so chattr-free:
    // replace the folder with a file of the same name).
    fs.renameSync(replicaDir, `${replicaDir}.away`);
    fs.writeFileSync(replicaDir, 'not a folder');
    const refused = await note(server.baseUrl, token, patientId, 'while away');
    assert.equal(refused.status, 503);
    const error = (refused.json as unknown as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'unavailable');
    assert.match(error.message, /replica cannot be reached/);
    assert.equal((await readyz(server.baseUrl)).body.replica, 'degraded');

    fs.rmSync(replicaDir);
    fs.renameSync(`${replicaDir}.away`, replicaDir);
    await until(
      'writes are taken again',
      async () => (await note(server.baseUrl, token, patientId, 'after return')).status === 201,
    );
    await stop(server);
  });
});

describe('caretrail restore: refusals', () => {
  test('no key, a non-empty target, a time in the future, a replica with nothing: clear errors', async () => {
    const replicaDir = folder('caretrail-dr-empty-');
    const to = folder('caretrail-dr-target-');
    const noKey = await runCli(
      ['restore', '--from', `file:${replicaDir}`, '--to', path.join(to, 'a')],
      {
        CARETRAIL_DATA_DIR: to,
        CARETRAIL_MASTER_KEY: '',
      },
    );
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /needs the master key/);

    fs.writeFileSync(path.join(to, 'something'), 'x');
    const env = { ...keys(), CARETRAIL_DATA_DIR: to };
    const notEmpty = await runCli(['restore', '--from', `file:${replicaDir}`, '--to', to], env);
    assert.equal(notEmpty.code, 2);
    assert.match(notEmpty.stderr, /not empty.*--force/);

    const future = await runCli(
      [
        'restore',
        '--from',
        `file:${replicaDir}`,
        '--to',
        path.join(to, 'b'),
        '--at',
        '2999-01-01T00:00:00Z',
      ],
      env,
    );
    assert.equal(future.code, 2);
    assert.match(future.stderr, /in the future/);

    const badAt = await runCli(
      ['restore', '--from', `file:${replicaDir}`, '--to', path.join(to, 'c'), '--at', 'yesterday'],
      env,
    );
    assert.equal(badAt.code, 2);
    assert.match(badAt.stderr, /--at must be an ISO 8601 time/);

    const nothing = await runCli(
      ['restore', '--from', `file:${replicaDir}`, '--to', path.join(to, 'd')],
      env,
    );
    assert.equal(nothing.code, 2);
    assert.match(nothing.stderr, /holds no snapshot/);
  });
});

for (const kind of ['folder', 's3'] as const) {
  describe(`caretrail dr drill, ${kind} replica`, () => {
    test('kills a replicating server, restores from the replica alone, and reports RPO and RTO within the objectives', async () => {
      const dataDir = folder('caretrail-drill-data-');
      let replicaArgs: string[] = [];
      let extra: Record<string, string> = {};
      if (kind === 's3') {
        const s3 = await startS3('caretrail-drill');
        s3s.push(s3);
        replicaArgs = [
          '--replica',
          `s3://${s3.bucket}/drill?region=us-east-1&endpoint=http://127.0.0.1:${String(s3.port)}&forcePathStyle=true`,
        ];
        extra = s3Env;
      }
      const drill = await runCli(['dr', 'drill', '--seconds', '4', ...replicaArgs], {
        ...extra,
        CARETRAIL_DATA_DIR: dataDir,
      });
      assert.equal(drill.code, 0, drill.stdout + drill.stderr);
      assert.match(drill.stdout, /PASSED: within the objectives/);
      const result = JSON.parse(fs.readFileSync(path.join(dataDir, 'last-drill.json'), 'utf8')) as {
        acknowledged: { notes: number; documents: number };
        rpoSeconds: number;
        rtoSeconds: number;
        audit: { ok: boolean };
        files: { checked: number; ok: number; bad: number };
      };
      assert.ok(
        result.acknowledged.notes > 20,
        `notes acknowledged: ${String(result.acknowledged.notes)}`,
      );
      assert.ok(result.acknowledged.documents > 0);
      assert.ok(result.rpoSeconds <= 1);
      assert.ok(result.rtoSeconds > 0 && result.rtoSeconds <= 60);
      assert.equal(result.audit.ok, true);
      assert.ok(result.files.checked > 0);
      assert.equal(result.files.bad, 0);
    });
  });
}
