// Tamper evidence on a real database: every kind of tampering makes `audit verify` name the
// first bad event (exit 1); an intact log verifies (exit 0); a tampered log at start-up is
// reported loudly while the server keeps serving.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { SIGNING_KEY_FILE } from '../../src/audit-signing-key.js';
import { auditHead } from '../../src/store/audit.store.js';
import type { AuditEventRow } from '../../src/store/tables.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { runCli, startServer } from '../helpers/process.js';

describeEachEngine('audit verification', ({ url, engine }) => {
  let h: Harness;
  let vet: SignedIn;
  let dataDir: string;
  let firstCheckpoint: number;
  let secondCheckpoint: number;

  const activity = async (n: number) => {
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: `Tamper ${n}`, species: 'feline' },
    });
    const id = created.json<{ id: string }>().id;
    for (let i = 0; i < n; i++)
      await h.request({ method: 'GET', url: `/api/v1/patients/${id}`, token: vet.token });
  };
  // Verifies both ways (one thread; worker threads walking ranges on connections of their own
  // while this one joins them, as large logs are verified on either engine) and insists they agree.
  const verify = async () => {
    const single = await h.runtime.services.auditTrail.verifyChain();
    const parallel = await h.runtime.services.auditTrail.verifyChain({ parallelFrom: 0 });
    assert.deepEqual(parallel, single, 'the parallel verification agrees, reason and count too');
    return single;
  };
  const env = () => ({ CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: dataDir });
  const row = async (seq: number): Promise<AuditEventRow> =>
    h.runtime.db.read
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '=', seq)
      .executeTakeFirstOrThrow();
  const restore = async (original: AuditEventRow) => {
    await h.runtime.db.write(async (tx) => {
      await tx.deleteFrom('audit_events').where('seq', '=', original.seq).execute();
      await tx.insertInto('audit_events').values(original).execute();
    });
  };

  before(async () => {
    h = await startHarness(url());
    dataDir = h.config.dataDir;
    const admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
    await activity(10);
    firstCheckpoint = (await h.runtime.services.auditTrail.checkpointIfDue(true)) ?? 0;
    await activity(10);
    secondCheckpoint = (await h.runtime.services.auditTrail.checkpointIfDue(true)) ?? 0;
    assert.ok(firstCheckpoint > 5 && secondCheckpoint > firstCheckpoint + 5);
  });
  after(async () => {
    await h.close();
  });

  test('an intact log verifies: the command exits 0 and the API says ok', async () => {
    const result = await runCli(['audit', 'verify'], env());
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      engine === 'postgres'
        ? /^Audit trail intact: \d+ events checked; last signed checkpoint at \d+\.\nUnsealed tail: none \(every committed event is in the chain\)\.\n$/
        : /^Audit trail intact: \d+ events checked; last signed checkpoint at \d+\.\n$/,
    );
    const admin = await h.newOrganization();
    const auditor = await h.newUser(admin, 'auditor');
    const api = await h.request({
      method: 'GET',
      url: '/api/v1/audit/verify',
      token: auditor.token,
    });
    assert.equal(api.statusCode, 200);
    assert.equal(api.json<{ ok: boolean }>().ok, true);
    const refused = await h.request({
      method: 'GET',
      url: '/api/v1/audit/verify',
      token: vet.token,
    });
    assert.equal(refused.statusCode, 404, 'non-auditors cannot tell the endpoint exists');
  });

  test('the signing key lives in the data folder with mode 0600, not in the database', async () => {
    const file = path.join(dataDir, SIGNING_KEY_FILE);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const pem = fs.readFileSync(file, 'utf8').split('\n')[1] ?? '';
    const checkpoints = await h.runtime.db.read
      .selectFrom('audit_checkpoints')
      .selectAll()
      .execute();
    assert.ok(checkpoints.length >= 2);
    assert.ok(checkpoints.every((c) => !JSON.stringify(c).includes(pem.slice(0, 20))));
  });

  test('an edited field is found at its event, and the command exits 1 naming it', async () => {
    const target = firstCheckpoint + 3;
    const original = await row(target);
    await h.runtime.db.write((tx) =>
      tx
        .updateTable('audit_events')
        .set({ outcome: 'success', actor_ip: '198.51.100.7' })
        .where('seq', '=', target)
        .execute(),
    );
    try {
      const result = await runCli(['audit', 'verify'], env());
      assert.equal(result.code, 1);
      assert.match(
        result.stdout,
        new RegExp(`^Audit trail BROKEN: first bad event ${target}: event ${target} was altered`),
      );
    } finally {
      await restore(original);
    }
    assert.equal((await verify()).ok, true);
  });

  test('a deleted event is found where the gap starts', async () => {
    const target = firstCheckpoint + 2;
    const original = await row(target);
    await h.runtime.db.write((tx) =>
      tx.deleteFrom('audit_events').where('seq', '=', target).execute(),
    );
    try {
      const result = await verify();
      assert.equal(result.ok, false);
      assert.equal(result.firstBadSequence, target);
      assert.match(result.reason ?? '', /missing/);
    } finally {
      await restore(original);
    }
  });

  test('a reordered pair is found at the first of the two', async () => {
    const a = await row(4);
    const b = await row(5);
    const swap = (from: AuditEventRow, seq: number) => ({ ...from, seq, id: `${from.id}-moved` });
    await h.runtime.db.write(async (tx) => {
      await tx.deleteFrom('audit_events').where('seq', 'in', [4, 5]).execute();
      await tx
        .insertInto('audit_events')
        .values([swap(b, 4), swap(a, 5)])
        .execute();
    });
    try {
      const result = await verify();
      assert.equal(result.ok, false);
      assert.equal(result.firstBadSequence, 4);
    } finally {
      await h.runtime.db.write((tx) =>
        tx.deleteFrom('audit_events').where('seq', 'in', [4, 5]).execute(),
      );
      await restore(a);
      await restore(b);
    }
    assert.equal((await verify()).ok, true);
  });

  test('an inserted event is found where it was squeezed in', async () => {
    const at = firstCheckpoint + 4;
    const head = await auditHead(h.runtime.db.read);
    const template = await row(at);
    // Make room by renumbering the tail (two steps so neither engine trips over the key).
    await h.runtime.db.write(async (tx) => {
      await tx
        .updateTable('audit_events')
        .set({ seq: sql<number>`-seq - 1` })
        .where('seq', '>=', at)
        .execute();
      await tx
        .updateTable('audit_events')
        .set({ seq: sql<number>`-seq` })
        .where('seq', '<', 0)
        .execute();
      await tx
        .insertInto('audit_events')
        .values({ ...template, id: 'forged-event', type: 'patient.read', outcome: 'success' })
        .execute();
    });
    try {
      const result = await verify();
      assert.equal(result.ok, false);
      assert.equal(result.firstBadSequence, at);
    } finally {
      await h.runtime.db.write(async (tx) => {
        await tx.deleteFrom('audit_events').where('id', '=', 'forged-event').execute();
        await tx
          .updateTable('audit_events')
          .set({ seq: sql<number>`-(seq - 1)` })
          .where('seq', '>', at)
          .execute();
        await tx
          .updateTable('audit_events')
          .set({ seq: sql<number>`-seq` })
          .where('seq', '<', 0)
          .execute();
      });
    }
    assert.equal((await auditHead(h.runtime.db.read)).seq, head.seq);
    assert.equal((await verify()).ok, true);
  });

  test('a cut-off tail is found: everything after the last checkpoint it keeps is untrusted', async () => {
    const cutFrom = firstCheckpoint + 6;
    const removed = await h.runtime.db.read
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>=', cutFrom)
      .orderBy('seq')
      .execute();
    // A careful attacker also rewinds the head row; the signed checkpoint still gives it away.
    const head = await auditHead(h.runtime.db.read);
    const keptLast = await row(cutFrom - 1);
    await h.runtime.db.write(async (tx) => {
      await tx.deleteFrom('audit_event_patients').where('seq', '>=', cutFrom).execute();
      await tx.deleteFrom('audit_events').where('seq', '>=', cutFrom).execute();
      await tx
        .updateTable('audit_head')
        .set({ seq: cutFrom - 1, chain_hash: keptLast.chain_hash })
        .where('id', '=', 1)
        .execute();
    });
    try {
      const result = await verify();
      assert.equal(result.ok, false);
      assert.equal(result.firstBadSequence, firstCheckpoint + 1);
      assert.match(result.reason ?? '', /cut off/);
      const cli = await runCli(['audit', 'verify'], env());
      assert.equal(cli.code, 1);
    } finally {
      await h.runtime.db.write(async (tx) => {
        for (const r of removed) await tx.insertInto('audit_events').values(r).execute();
        await tx
          .updateTable('audit_head')
          .set({ seq: head.seq, chain_hash: head.chain })
          .where('id', '=', 1)
          .execute();
      });
    }
    assert.equal((await verify()).ok, true);
  });

  test('a checkpoint is never signed over events that were rewritten since the last one', async () => {
    await activity(3);
    const head = await auditHead(h.runtime.db.read);
    const target = head.seq - 1;
    const original = await row(target);
    await h.runtime.db.write((tx) =>
      tx
        .updateTable('audit_events')
        .set({ actor_role: 'admin' })
        .where('seq', '=', target)
        .execute(),
    );
    try {
      assert.equal(await h.runtime.services.auditTrail.checkpointIfDue(true), null);
      assert.ok(
        h.logs.some((l) => l.includes('not signing a checkpoint over events that do not verify')),
      );
    } finally {
      await restore(original);
    }
    assert.equal(await h.runtime.services.auditTrail.checkpointIfDue(true), head.seq);
  });

  test('checkpoints follow the configured cadence', async () => {
    const before = await h.runtime.services.auditTrail.checkpointIfDue(true);
    assert.ok(before !== null || (await auditHead(h.runtime.db.read)).seq > 0);
    assert.equal(
      await h.runtime.services.auditTrail.checkpointIfDue(),
      null,
      'nothing new: nothing to sign',
    );
    await activity(1);
    assert.equal(
      await h.runtime.services.auditTrail.checkpointIfDue(),
      null,
      'not due yet (60 s, 10,000 events)',
    );
    h.clock.advance(61_000);
    assert.equal(
      await h.runtime.services.auditTrail.checkpointIfDue(),
      (await auditHead(h.runtime.db.read)).seq,
      'due after 60 s',
    );
  });

  test('an archived segment (events up to a kept checkpoint removed) still verifies; a gap without one does not', async () => {
    const archived = await h.runtime.db.read
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '<=', firstCheckpoint)
      .orderBy('seq')
      .execute();
    const links = await h.runtime.db.read
      .selectFrom('audit_event_patients')
      .selectAll()
      .where('seq', '<=', firstCheckpoint)
      .execute();
    await h.runtime.db.write(async (tx) => {
      await tx.deleteFrom('audit_event_patients').where('seq', '<=', firstCheckpoint).execute();
      await tx.deleteFrom('audit_events').where('seq', '<=', firstCheckpoint).execute();
    });
    try {
      const result = await verify();
      assert.equal(result.ok, true, result.reason ?? '');
      assert.equal(result.checked, (await auditHead(h.runtime.db.read)).seq - firstCheckpoint);
      // Without the checkpoint that ends the archived segment, the gap is tampering.
      const anchor = await h.runtime.db.read
        .selectFrom('audit_checkpoints')
        .selectAll()
        .where('seq', '=', firstCheckpoint)
        .executeTakeFirstOrThrow();
      await h.runtime.db.write((tx) =>
        tx.deleteFrom('audit_checkpoints').where('seq', '=', firstCheckpoint).execute(),
      );
      const broken = await verify();
      assert.equal(broken.ok, false);
      assert.equal(broken.firstBadSequence, 1);
      await h.runtime.db.write((tx) => tx.insertInto('audit_checkpoints').values(anchor).execute());
    } finally {
      await h.runtime.db.write(async (tx) => {
        for (const r of archived) await tx.insertInto('audit_events').values(r).execute();
        if (links.length > 0) await tx.insertInto('audit_event_patients').values(links).execute();
      });
    }
    assert.equal((await verify()).ok, true);
  });

  test(
    'a tampered database at start-up: the server starts, says so loudly, and stays ready',
    { timeout: 60_000 },
    async () => {
      const target = 3;
      const original = await row(target);
      await h.runtime.db.write((tx) =>
        tx
          .updateTable('audit_events')
          .set({ type: 'nothing.to.see' })
          .where('seq', '=', target)
          .execute(),
      );
      const server = await startServer(env());
      try {
        const deadline = Date.now() + 15_000;
        while (!server.output().includes('AUDIT TRAIL BROKEN') && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
        const line = server
          .output()
          .split('\n')
          .find((l) => l.includes('AUDIT TRAIL BROKEN'));
        assert.ok(line, `no loud report:\n${server.output()}`);
        const parsed = JSON.parse(line) as { level: number; firstBadSequence: number };
        assert.equal(parsed.level, 60, 'logged at fatal level');
        assert.equal(parsed.firstBadSequence, target);
        assert.equal((await fetch(`${server.baseUrl}/readyz`)).status, 200);
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
        await restore(original);
      }
    },
  );
});
