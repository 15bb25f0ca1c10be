// The audit chain from day one: every access leaves one chained event, concurrency keeps the
// sequence gapless, tampering is detectable, and a read fails if its event cannot be written.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { findFirstBrokenLink } from '../../src/domain/audit-verify.js';
import { auditHead, listAuditEvents } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

describeEachEngine('audit trail', ({ url, engine }) => {
  let h: Harness;
  let vet: SignedIn;
  let patientId: string;
  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: 'Biscuit Audit', species: 'canine', owners: [{ name: 'Olive Auditson' }] },
    });
    assert.equal(res.statusCode, 201);
    patientId = res.json<{ id: string }>().id;
  });
  after(async () => {
    await h.close();
  });

  test('each patient read and write adds exactly one event, chained from the start', async () => {
    const before = (await auditHead(h.runtime.db.read)).seq;
    const steps: [string, () => Promise<{ statusCode: number }>][] = [
      [
        'patient.read',
        () => h.request({ method: 'GET', url: `/api/v1/patients/${patientId}`, token: vet.token }),
      ],
      [
        'patient.search',
        () => h.request({ method: 'GET', url: '/api/v1/patients?q=bisc', token: vet.token }),
      ],
      [
        'patient.update',
        () =>
          h.request({
            method: 'PATCH',
            url: `/api/v1/patients/${patientId}`,
            token: vet.token,
            headers: { 'if-match': '"1"' },
            body: { breed: 'Beagle' },
          }),
      ],
      [
        'note.create',
        () =>
          h.request({
            method: 'POST',
            url: `/api/v1/patients/${patientId}/notes`,
            token: vet.token,
            body: { kind: 'soap', body: 'S: itchy ears' },
          }),
      ],
      [
        'note.list',
        () =>
          h.request({
            method: 'GET',
            url: `/api/v1/patients/${patientId}/notes`,
            token: vet.token,
          }),
      ],
    ];
    for (const [type, run] of steps) {
      const res = await run();
      assert.ok(
        res.statusCode < 300,
        `${type} answered ${res.statusCode}: ${(res as { body?: string }).body ?? ''}`,
      );
    }
    const events = await listAuditEvents(h.runtime.db.read, { afterSeq: before });
    assert.deepEqual(
      events.map((e) => e.event.type),
      steps.map(([type]) => type),
    );
    assert.ok(
      events.every((e) => e.event.actor.userId === vet.userId && e.event.outcome === 'success'),
    );
    // A search names no single patient; it lists the ones it disclosed, and the patient's trail finds it.
    for (const e of events) {
      if (e.event.type === 'patient.search')
        assert.deepEqual(e.event.detail?.patientIds, [patientId]);
      else assert.equal(e.event.patientId, patientId, e.event.type);
    }
    const trail = await listAuditEvents(h.runtime.db.read, { patientId, afterSeq: before });
    assert.deepEqual(
      trail.map((e) => e.event.type),
      steps.map(([type]) => type),
    );
    const all = await listAuditEvents(h.runtime.db.read);
    assert.deepEqual(
      all.map((e) => e.event.seq),
      all.map((_, i) => i + 1),
      'sequence is gapless from 1',
    );
    assert.equal(findFirstBrokenLink(all), null);
    const head = await auditHead(h.runtime.db.read);
    assert.equal(head.chain, all.at(-1)?.chain);
  });

  test('concurrent reads each leave one event and the chain stays gapless', async () => {
    const before = (await auditHead(h.runtime.db.read)).seq;
    const responses = await Promise.all(
      Array.from({ length: 100 }, () =>
        h.request({ method: 'GET', url: `/api/v1/patients/${patientId}`, token: vet.token }),
      ),
    );
    assert.ok(responses.every((r) => r.statusCode === 200));
    const head = await auditHead(h.runtime.db.read);
    assert.equal(head.seq - before, 100);
    assert.equal(findFirstBrokenLink(await listAuditEvents(h.runtime.db.read)), null);
  });

  test('editing, deleting or reordering stored events is detected at the first bad sequence', async () => {
    const events = await listAuditEvents(h.runtime.db.read);
    const target = events[3];
    assert.ok(target);
    const edited = events.map((e) =>
      e === target ? { ...e, event: { ...e.event, outcome: 'failure' as const } } : e,
    );
    assert.equal(findFirstBrokenLink(edited), target.event.seq);
    const deleted = events.filter((e) => e !== target);
    assert.equal(findFirstBrokenLink(deleted), target.event.seq);
    const swapped = [...events];
    [swapped[3], swapped[4]] = [swapped[4] ?? target, swapped[3] ?? target];
    assert.equal(findFirstBrokenLink(swapped), target.event.seq);
    // And in the database itself: change one stored field and recompute.
    await h.runtime.db.write((tx) =>
      tx
        .updateTable('audit_events')
        .set({ actor_ip: '203.0.113.66' })
        .where('seq', '=', target.event.seq)
        .execute(),
    );
    assert.equal(findFirstBrokenLink(await listAuditEvents(h.runtime.db.read)), target.event.seq);
    await h.runtime.db.write((tx) =>
      tx
        .updateTable('audit_events')
        .set({ actor_ip: target.event.actor.ip })
        .where('seq', '=', target.event.seq)
        .execute(),
    );
    assert.equal(findFirstBrokenLink(await listAuditEvents(h.runtime.db.read)), null);
  });

  test('access to another organization is denied with 404 and audited as denied', async () => {
    const otherAdmin = await h.newOrganization();
    const outsider = await h.newUser(otherAdmin, 'clinician');
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}`,
      token: outsider.token,
    });
    assert.equal(res.statusCode, 404);
    const events = await listAuditEvents(h.runtime.db.read, { actorUserId: outsider.userId });
    const denied = events.find((e) => e.event.type === 'patient.read');
    assert.equal(denied?.event.outcome, 'denied');
    assert.equal(denied.event.patientId, patientId);
  });

  test('a read whose audit event cannot be written fails and discloses nothing', async () => {
    if (engine === 'sqlite') {
      await h.runtime.db.write(async (tx) => {
        await sql`create trigger audit_offline before insert on audit_events begin select raise(abort, 'audit offline'); end`.execute(
          tx,
        );
      });
    } else {
      await h.runtime.db.write(async (tx) => {
        await sql`create function audit_offline() returns trigger language plpgsql as $$ begin raise exception 'audit offline'; end $$`.execute(
          tx,
        );
        // PostgreSQL's units of work write their events to the sealer's inbox.
        await sql`create trigger audit_offline before insert on audit_inbox for each row execute function audit_offline()`.execute(
          tx,
        );
      });
    }
    try {
      const before = (await auditHead(h.runtime.db.read)).seq;
      const res = await h.request({
        method: 'GET',
        url: `/api/v1/patients/${patientId}`,
        token: vet.token,
      });
      assert.equal(res.statusCode, 500);
      assert.ok(!res.body.includes('Biscuit'), 'no patient data in the failed answer');
      assert.ok(!res.body.includes('audit offline'), 'no internal error text either');
      assert.equal(res.json<{ error: { code: string } }>().error.code, 'internal');
      assert.equal((await auditHead(h.runtime.db.read)).seq, before);
    } finally {
      await h.runtime.db.write(async (tx) => {
        await sql`drop trigger audit_offline${engine === 'postgres' ? sql` on audit_inbox` : sql``}`.execute(
          tx,
        );
        if (engine === 'postgres') await sql`drop function audit_offline()`.execute(tx);
      });
    }
    const ok = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}`,
      token: vet.token,
    });
    assert.equal(ok.statusCode, 200);
  });
});
