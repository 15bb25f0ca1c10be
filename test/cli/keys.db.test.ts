// `caretrail keys rotate`: every data key (file contents, thumbnails, webhook secrets) moves to a
// new master key without touching the encrypted file bodies, and everything still reads back.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { MASTER_KEY_FILE, masterKeyId, newMasterKey } from '../../src/blobs/master-key.js';
import { createTestDatabase, describeEachEngine, tempDir } from '../helpers/engines.js';
import { invitationToken } from '../helpers/invitations.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { filesUnder } from '../helpers/storage.js';
import { runCli } from '../helpers/process.js';

async function listen(h: Harness): Promise<string> {
  await h.runtime.app.listen({ host: '127.0.0.1', port: 0 });
  const address = h.runtime.app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

async function uploadFile(
  h: Harness,
  base: string,
  user: SignedIn,
  body: Buffer,
): Promise<{ id: string }> {
  const patient = await h.request({
    method: 'POST',
    url: '/api/v1/patients',
    token: user.token,
    body: { name: 'Juniper', species: 'feline' },
  });
  const form = new FormData();
  form.append('file', new Blob([body]), 'scan.bin');
  const res = await fetch(
    `${base}/api/v1/patients/${patient.json<{ id: string }>().id}/documents`,
    {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token}` },
      body: form,
    },
  );
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { id: string };
}

async function download(base: string, user: SignedIn, id: string): Promise<Buffer> {
  const res = await fetch(`${base}/api/v1/documents/${id}/content`, {
    headers: { authorization: `Bearer ${user.token}` },
  });
  assert.equal(res.status, 200, `download ${id}`);
  return Buffer.from(await res.arrayBuffer());
}

/** The encrypted bodies as stored: rotation must leave them byte for byte as they were. */
function storedBodies(dir: string): Map<string, string> {
  return new Map(
    filesUnder(path.join(dir, 'objects')).map((f) => [f, fs.readFileSync(f).toString('base64')]),
  );
}

describeEachEngine('caretrail keys rotate', ({ engine }) => {
  // Each test gets a database of its own: the two rotate different key sets.
  const fresh = async (t: TestContext) => {
    const db = await createTestDatabase(engine);
    t.after(db.drop);
    return db.url;
  };

  test(
    'with the key file: a new key replaces the old one and every file still reads back',
    { timeout: 60_000 },
    async (t) => {
      const url = await fresh(t);
      const dataDir = tempDir();
      const env = { CARETRAIL_DATA_DIR: dataDir, CARETRAIL_DATABASE_URL: url };
      const body = randomBytes(150_000);
      let h = await startHarness(url, env);
      let base = await listen(h);
      const admin = await h.newOrganization();
      const vet = await h.newUser(admin, 'clinician');
      const doc = await uploadFile(h, base, vet, body);
      const sub = await h.request({
        method: 'POST',
        url: '/api/v1/subscriptions',
        token: vet.token,
        body: { events: ['document.created'], webhookUrl: 'https://hooks.example.org/caretrail' },
      });
      assert.equal(sub.statusCode, 201, sub.body);
      const enrol = await h.request({
        method: 'POST',
        url: '/api/v1/me/mfa/totp',
        token: vet.token,
      });
      assert.equal(enrol.statusCode, 200);
      // An integration key's HMAC secret, and an invitation still waiting in the outbox (no
      // mail server here, so it stays queued).
      const key = await h.request({
        method: 'POST',
        url: '/api/v1/integrations/keys',
        token: admin.token,
        body: { name: 'Analyzer' },
      });
      assert.equal(key.statusCode, 201, key.body);
      const {
        id: keyId,
        secret,
        key: bearer,
      } = key.json<{ id: string; secret: string; key: string }>();
      // A result file waiting in the unmatched queue (not on any chart yet).
      const report = Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n');
      const waiting = await h.request({
        method: 'POST',
        url: '/api/v1/integrations/results',
        token: bearer,
        body: {
          patient: { identifier: { system: 'microchip', value: '900000000000321' } },
          source: 'lab',
          kind: 'lab',
          observations: [{ code: 'T4', value: '2.1' }],
          attachments: [{ filename: 'report.pdf', data: report.toString('base64') }],
        },
      });
      assert.equal(waiting.statusCode, 201, waiting.body);
      const waitingId = waiting.json<{ id: string; status: string }>().id;
      const patient = await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: vet.token,
        body: {
          name: 'Rex',
          species: 'canine',
          owners: [{ name: 'Olive', email: 'olive@example.test' }],
        },
      });
      const patientId = patient.json<{ id: string }>().id;
      const share = await h.request({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/shares`,
        token: vet.token,
        body: { email: 'olive@example.test', role: 'owner', access: 'read' },
      });
      assert.equal(share.statusCode, 201, share.body);
      const token = await invitationToken(h, 'olive@example.test');
      await h.runtime.close();

      const keyFile = path.join(dataDir, MASTER_KEY_FILE);
      const before = fs.readFileSync(keyFile, 'utf8');
      const bodies = storedBodies(path.join(dataDir, 'blobs'));
      const result = await runCli(['keys', 'rotate'], env);
      assert.equal(result.code, 0, result.stderr);
      assert.match(
        result.stdout,
        /Re-wrapped 2 file keys, 0 thumbnail keys and 4 secrets \(webhook signing, integration keys, queued invitations, TOTP\)/,
        'the upload and the waiting result file; the webhook secret, the integration key secret, the queued invitation and the TOTP seed',
      );
      const after = fs.readFileSync(keyFile, 'utf8');
      assert.notEqual(after, before);
      assert.equal(after.trim().split('\n').length, 1, 'only the new key is left');
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      assert.deepEqual(storedBodies(path.join(dataDir, 'blobs')), bodies, 'no body re-encrypted');

      h = await startHarness(url, env);
      base = await listen(h);
      const keyIds = await h.runtime.db.read
        .selectFrom('document_versions')
        .select('key_id')
        .execute();
      const newId = masterKeyId(Buffer.from(after.trim(), 'base64'));
      assert.deepEqual(
        keyIds.map((r) => r.key_id),
        [newId],
      );
      const relogin = await h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: vet.email, password: 'correct horse battery staple' },
      });
      const again = { ...vet, token: relogin.json<{ token: string }>().token };
      assert.ok((await download(base, again, doc.id)).equals(body));
      assert.equal(await h.runtime.services.integrationKeys.secretOf(keyId), secret);
      assert.equal(await invitationToken(h, 'olive@example.test'), token, 'the queued link opens');
      const accepted = await h.request({
        method: 'POST',
        url: `/api/v1/invitations/${token}/accept`,
        body: { name: 'Olive', password: 'correct horse battery staple' },
      });
      assert.equal(accepted.statusCode, 200, accepted.body);
      // The waiting result file, assigned now, opens under the new key.
      const assigned = await h.request({
        method: 'POST',
        url: `/api/v1/integrations/unmatched/${waitingId}/assign`,
        token: again.token,
        body: { patientId },
      });
      assert.equal(assigned.statusCode, 200, assigned.body);
      const filed = await h.runtime.db.read
        .selectFrom('result_attachments')
        .select('document_id')
        .where('result_id', '=', waitingId)
        .executeTakeFirstOrThrow();
      assert.ok((await download(base, again, filed.document_id ?? '')).equals(report));
      await h.close();
    },
  );

  test(
    'with CARETRAIL_MASTER_KEY: the first key becomes the only one needed',
    { timeout: 60_000 },
    async (t) => {
      const url = await fresh(t);
      const dataDir = tempDir();
      const oldKey = newMasterKey().toString('base64');
      const newKey = newMasterKey().toString('base64');
      const env = { CARETRAIL_DATA_DIR: dataDir, CARETRAIL_DATABASE_URL: url };
      const body = randomBytes(5000);
      let h = await startHarness(url, { ...env, CARETRAIL_MASTER_KEY: oldKey });
      let base = await listen(h);
      const admin = await h.newOrganization();
      const vet = await h.newUser(admin, 'nurse');
      const doc = await uploadFile(h, base, vet, body);
      await h.runtime.close();
      assert.ok(!fs.existsSync(path.join(dataDir, MASTER_KEY_FILE)), 'no key file is written');

      const result = await runCli(['keys', 'rotate'], {
        ...env,
        CARETRAIL_MASTER_KEY: `${newKey},${oldKey}`,
      });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /Re-wrapped 1 file keys/);
      assert.match(result.stdout, /remove the other keys/);

      // The old key is gone from the configuration; the file still opens.
      h = await startHarness(url, { ...env, CARETRAIL_MASTER_KEY: newKey });
      base = await listen(h);
      const login = await h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: vet.email, password: 'correct horse battery staple' },
      });
      const user = { ...vet, token: login.json<{ token: string }>().token };
      assert.ok((await download(base, user, doc.id)).equals(body));
      await h.close();

      // Without the rotation the old data keys could not be opened with the new key alone.
      const h2 = await startHarness(url, { ...env, CARETRAIL_MASTER_KEY: oldKey });
      const base2 = await listen(h2);
      const login2 = await h2.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: vet.email, password: 'correct horse battery staple' },
      });
      const res = await fetch(`${base2}/api/v1/documents/${doc.id}/content`, {
        headers: { authorization: `Bearer ${login2.json<{ token: string }>().token}` },
      });
      assert.equal(res.status, 503, 'the old key alone no longer opens the file');
      // (A plain substring check: base64 holds '+' and '/', which a RegExp would read as syntax.)
      assert.ok(!(await res.text()).includes(oldKey.slice(0, 12)), 'no key material in the answer');
      await h2.close();
    },
  );
});
