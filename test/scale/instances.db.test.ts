// Several instances on one PostgreSQL database behind nginx (issue 18): three `caretrail serve`
// processes sharing the database, the master and signing keys and a file folder, nginx (Debian)
// round-robin in front. Clinical writes (notes, uploads, device results) from several clients,
// each with an Idempotency-Key; one instance SIGKILLed under load; a client that got no answer or
// a 502 retries with the same key through nginx. Then every acknowledged write is stored exactly
// once, the audit chain verifies with nothing left unsealed, and every instance served requests.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import {
  documentTitle,
  noteBody,
  sendWrite,
  setUpClinic,
  signIn,
  sleep,
  type Clinic,
  type SentWrite,
  type WriteKind,
} from '../faults/fault-helpers.js';
import { createTestDatabase, pgUnavailable, tempDir } from '../helpers/engines.js';
import { nginxBinary, startNginx } from '../helpers/nginx.js';
import { runCli, startServer, type ServerProcess } from '../helpers/process.js';

const CI = process.env.CI === 'true';

const skip = CI
  ? false
  : (pgUnavailable() ??
    (nginxBinary() === null ? 'nginx is not installed (apt-get install nginx-light)' : false));

let db: { url: string; drop: () => Promise<void> } | null = null;
const folders: string[] = [];
const servers: ServerProcess[] = [];
let nginx: Awaited<ReturnType<typeof startNginx>> | null = null;

before(async () => {
  if (skip) return;
  db = await createTestDatabase('postgres');
});

after(async () => {
  await nginx?.stop();
  for (const s of servers)
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  await Promise.all(servers.map((s) => s.exited));
  await db?.drop();
  for (const f of folders) fs.rmSync(f, { recursive: true, force: true });
});

test(
  'three instances behind nginx: writes under load, one instance SIGKILLed, nothing acknowledged lost or doubled, the audit chain verifies',
  { skip, timeout: 240_000 },
  async (t) => {
    const url = db?.url ?? '';
    const root = tempDir('caretrail-instances-');
    folders.push(root);
    const shared = {
      CARETRAIL_DATABASE_URL: url,
      CARETRAIL_BLOB_URL: `file:${path.join(root, 'files')}`,
      CARETRAIL_MASTER_KEY: randomBytes(32).toString('base64'),
      CARETRAIL_AUDIT_SIGNING_KEY: generateKeyPairSync('ed25519')
        .privateKey.export({ format: 'pem', type: 'pkcs8' })
        .toString(),
      CARETRAIL_AUDIT_CHECKPOINT_SECONDS: '2',
      CARETRAIL_TRUST_PROXY: 'true',
      CARETRAIL_LOGIN_IP_MAX_FAILURES: '100000',
    };
    const envOf = (i: number) => ({
      ...shared,
      CARETRAIL_DATA_DIR: path.join(root, `instance-${String(i)}`),
    });
    for (let i = 0; i < 3; i++) fs.mkdirSync(envOf(i).CARETRAIL_DATA_DIR, { recursive: true });
    // The first migrates; the others start together on the migrated database.
    servers.push(await startServer(envOf(0)));
    servers.push(...(await Promise.all([startServer(envOf(1)), startServer(envOf(2))])));
    const ports = servers.map((s) => Number(new URL(s.baseUrl).port));
    nginx = await startNginx(path.join(root, 'nginx'), ports);
    const base = nginx.baseUrl;
    const clinic: Clinic = await setUpClinic(envOf(0).CARETRAIL_DATA_DIR, envOf(0), base);

    const writes = new Map<string, SentWrite>();
    let retried = 0;
    const kinds: WriteKind[] = ['note', 'note', 'note', 'document', 'result', 'note'];
    let stopAt = Number.POSITIVE_INFINITY;
    const writers = kinds.map(async (kind, w) => {
      for (let i = 0; Date.now() < stopAt; i++) {
        const key = `w${String(w)}-${String(i)}`;
        let sent = await sendWrite(base, clinic, kind, key);
        if (sent.state !== 'acked') retried++;
        // No answer, or nginx's 502 for the instance that died mid-request: the same key again.
        for (let attempt = 0; sent.state !== 'acked' && attempt < 20; attempt++) {
          if (sent.state === 'refused' && sent.status !== 502 && sent.status !== 503) break;
          await sleep(100);
          sent = await sendWrite(base, clinic, kind, key);
        }
        writes.set(key, sent);
      }
    });
    stopAt = Date.now() + 12_000;
    await sleep(4_000);
    const victim = servers[1];
    assert.ok(victim);
    victim.child.kill('SIGKILL');
    const killed = await victim.exited;
    assert.equal(killed.signal, 'SIGKILL');
    await Promise.all(writers);

    const all = [...writes.values()];
    const notAcked = all.filter((w) => w.state !== 'acked');
    assert.deepEqual(
      notAcked.map((w) => `${w.key}: ${String(w.status ?? w.error)}`),
      [],
      'every write was acknowledged, after retries with its key',
    );
    assert.ok(all.length > 50, `only ${String(all.length)} writes`);

    // Each acknowledged write stored exactly once.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const count = async (query: string, values: string[]) => {
        const { rows } = await client.query<{ k: string; n: string }>(query, [values]);
        return new Map(rows.map((r) => [r.k, Number(r.n)]));
      };
      const notes = await count(
        'select body as k, count(*) as n from notes where body = any($1) group by body',
        all.filter((w) => w.kind === 'note').map((w) => noteBody(w.key)),
      );
      const documents = await count(
        'select title as k, count(*) as n from documents where title = any($1) group by title',
        all.filter((w) => w.kind === 'document').map((w) => documentTitle(w.key)),
      );
      const results = await count(
        'select source_result_id as k, count(*) as n from results where source_result_id = any($1) group by source_result_id',
        all.filter((w) => w.kind === 'result').map((w) => w.key),
      );
      for (const w of all) {
        const stored =
          w.kind === 'note'
            ? notes.get(noteBody(w.key))
            : w.kind === 'document'
              ? documents.get(documentTitle(w.key))
              : results.get(w.key);
        assert.equal(stored, 1, `${w.kind} ${w.key} stored ${String(stored ?? 0)} times`);
      }
    } finally {
      await client.end();
    }

    // The survivors seal what the dead instance's requests committed; the chain verifies.
    const verify = await runCli(['audit', 'verify'], envOf(0));
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /^Audit trail intact: \d+ events checked/);
    assert.match(verify.stdout, /\nUnsealed tail: none/);

    // Every instance answered part of the load (nginx round-robin), the killed one until its end.
    const served = new Map<number, number>();
    for (const line of fs
      .readFileSync(path.join(root, 'nginx', 'access.log'), 'utf8')
      .split('\n')) {
      const m = /^127\.0\.0\.1:(\d+) 2\d\d$/.exec(line);
      if (m) served.set(Number(m[1]), (served.get(Number(m[1])) ?? 0) + 1);
    }
    t.diagnostic(
      `${String(all.length)} writes acknowledged, ${String(retried)} retried with their key; answered per instance: ${ports.map((p) => String(served.get(p) ?? 0)).join(', ')} (the second was killed)`,
    );
    for (const port of ports)
      assert.ok(
        (served.get(port) ?? 0) > 10,
        `instance on ${String(port)} answered ${String(served.get(port) ?? 0)}`,
      );
    const token = await signIn(base, clinic.email);
    const after = await fetch(`${base}/api/v1/patients/${clinic.patientId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(after.status, 200);
  },
);
