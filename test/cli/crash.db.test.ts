// Kills the server (SIGKILL) while writes are in flight: every write that was answered 2xx must
// be there after a restart, and the audit chain must still verify.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { findFirstBrokenLink } from '../../src/domain/audit-verify.js';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { openDatabase } from '../../src/store/database.js';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { PASSWORD } from '../helpers/harness.js';
import { api, runCli, startServer } from '../helpers/process.js';

describeEachEngine('crash safety', ({ url }) => {
  test('every acknowledged note survives SIGKILL mid-write', { timeout: 120_000 }, async () => {
    const dataDir = tempDir();
    const env = { CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: dataDir };
    const passwordFile = path.join(dataDir, 'pw');
    fs.writeFileSync(passwordFile, `${PASSWORD}\n`);
    const created = await runCli(
      [
        'admin',
        'create',
        '--org',
        'Crash Clinic',
        '--email',
        'crash@example.test',
        '--password-file',
        passwordFile,
      ],
      env,
    );
    assert.equal(created.code, 0, created.stderr);

    const server = await startServer(env);
    const login = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
      body: { email: 'crash@example.test', password: PASSWORD },
    });
    assert.equal(login.status, 200);
    const clinician = await api(server.baseUrl, 'POST', '/api/v1/users', {
      token: login.json.token,
      body: { email: 'vet@example.test', name: 'Vet', role: 'clinician', password: PASSWORD },
    });
    assert.equal(clinician.status, 201);
    const vetLogin = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
      body: { email: 'vet@example.test', password: PASSWORD },
    });
    const token = vetLogin.json.token;
    const patient = await api<{ id: string }>(server.baseUrl, 'POST', '/api/v1/patients', {
      token,
      body: { name: 'Crash Test Dog', species: 'canine' },
    });
    assert.equal(patient.status, 201);

    const acknowledged: string[] = [];
    let failed = 0;
    let stop = false;
    const writer = async (worker: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const res = await api<{ id: string }>(
            server.baseUrl,
            'POST',
            `/api/v1/patients/${patient.json.id}/notes`,
            {
              token,
              body: { kind: 'clinical', body: `worker ${worker} note ${i}` },
            },
          );
          if (res.status === 201) acknowledged.push(res.json.id);
          else failed++;
        } catch {
          failed++; // the connection died with the process: not acknowledged
          return;
        }
      }
    };
    const workers = Array.from({ length: 16 }, (_, w) => writer(w));
    // Let writes flow, then kill without warning once plenty are acknowledged.
    const started = Date.now();
    while (acknowledged.length < 300 && Date.now() - started < 20_000)
      await new Promise((r) => setTimeout(r, 20));
    server.child.kill('SIGKILL');
    const exit = await server.exited;
    stop = true;
    await Promise.all(workers);
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(
      acknowledged.length >= 300,
      `only ${acknowledged.length} writes acknowledged before the kill`,
    );
    assert.ok(failed > 0, 'some requests were in flight when the process died');

    // Restart: the server recovers and serves every acknowledged note.
    const again = await startServer(env);
    try {
      const relogin = await api<{ token: string }>(again.baseUrl, 'POST', '/api/v1/auth/login', {
        body: { email: 'vet@example.test', password: PASSWORD },
      });
      assert.equal(relogin.status, 200);
      const sample = acknowledged.filter((_, i) => i % 50 === 0);
      for (const id of sample) {
        const res = await api(again.baseUrl, 'GET', `/api/v1/notes/${id}`, {
          token: relogin.json.token,
        });
        assert.equal(res.status, 200, `note ${id} was acknowledged but is missing after the crash`);
      }
    } finally {
      again.child.kill('SIGTERM');
      await again.exited;
    }

    const db = await openDatabase(url());
    try {
      const stored = new Set(
        (await db.read.selectFrom('notes').select('id').execute()).map((r) => r.id),
      );
      const missing = acknowledged.filter((id) => !stored.has(id));
      assert.deepEqual(
        missing,
        [],
        `${missing.length} of ${acknowledged.length} acknowledged notes are missing`,
      );
      const events = await listAuditEvents(db.read);
      assert.ok(events.length > acknowledged.length);
      assert.equal(findFirstBrokenLink(events), null, 'the audit chain is intact after the crash');
    } finally {
      await db.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
