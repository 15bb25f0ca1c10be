// The audit trail without a global lock (issue 18). On PostgreSQL units of work queue their
// events and sealing rounds chain them below the horizon of transactions in flight; on SQLite
// the one writer appends at the head. Either way: random concurrent units of work, some rolled
// back, leave a chain that verifies and holds every committed event exactly once and nothing
// of a rolled-back one; tampering with a sealed event is still found; on PostgreSQL a
// transaction held open keeps later events unsealed, invisible to search and reported by
// verification as the unsealed tail, until it ends.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { writeAuditEvent } from '../../src/services/audit.service.js';
import { auditUnsealedTail, awaitAuditSealed, sealPending } from '../../src/audit-sealing/index.js';
import { systemContext } from '../../src/services/context.js';
import { auditHead } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import { seededRandom } from '../helpers/random.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeEachEngine('audit appends under concurrency', ({ url, engine }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url(), {}, {}, { sealAfterRequests: false });
  });
  after(async () => {
    await h.close();
  });

  const deps = () => h.runtime.services.deps;
  /** One event of `tag` in the unit of work `tx`. */
  const event = (tx: Parameters<typeof writeAuditEvent>[0], tag: string) =>
    writeAuditEvent(
      tx,
      deps(),
      systemContext(tag),
      { action: 'R', type: 'test.sealing' },
      { patientId: null, entity: null, detail: { tag } },
      'success',
    );
  const storedTags = async (prefix: string): Promise<string[]> => {
    const rows = await h.runtime.db.read
      .selectFrom('audit_events')
      .select('request_id')
      .where('request_id', 'like', `${prefix}%`)
      .execute();
    return rows.map((r) => r.request_id ?? '').sort();
  };

  test('random concurrent units of work, some rolled back: every committed event sealed once, the chain verifies', async () => {
    const seed = 1812;
    const random = seededRandom(seed);
    const committed: string[] = [];
    const rolledBack: string[] = [];
    const writing = { done: false };
    // Sealing rounds run throughout, as the sealer job would, racing the writers.
    const sealing = (async () => {
      while (!writing.done) {
        await sealPending(deps(), false);
        await sleep(Math.floor(random() * 5));
      }
    })();
    const unit = async (i: number) => {
      const events = 1 + Math.floor(random() * 3);
      const rollback = random() < 0.25;
      const pauses = Array.from({ length: events }, () => Math.floor(random() * 15));
      const tags = Array.from({ length: events }, (_, k) => `seal-${String(i)}-${String(k)}`);
      try {
        await h.runtime.db.write(async (tx) => {
          for (let k = 0; k < events; k++) {
            await event(tx, tags[k] ?? '');
            // Other units start, commit and get sealed while this one is still in flight.
            await sleep(pauses[k] ?? 0);
          }
          if (rollback) throw new Error('rolled back on purpose');
        });
        committed.push(...tags);
      } catch (err) {
        assert.equal((err as Error).message, 'rolled back on purpose');
        rolledBack.push(...tags);
      }
    };
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 25; i++) await unit(w * 100 + i);
    });
    await Promise.all(writers);
    writing.done = true;
    await sealing;
    await awaitAuditSealed(deps());

    assert.ok(committed.length > 100 && rolledBack.length > 10, `seed ${String(seed)}`);
    assert.deepEqual(await storedTags('seal-'), committed.sort(), 'each committed event once');
    assert.equal((await auditUnsealedTail(deps())).count, 0);
    const result = await h.runtime.services.auditTrail.verifyChain();
    assert.equal(result.ok, true, result.reason ?? '');
    assert.equal(result.checked, (await auditHead(h.runtime.db.read)).seq);
    if (engine === 'postgres') assert.deepEqual(result.unsealed, { count: 0, oldestAt: null });
    else assert.equal(result.unsealed, undefined);

    // Tampering with a sealed event is found at that event.
    const victim = Math.floor(result.checked / 2);
    await h.runtime.db.write(async (tx) => {
      await sql`update audit_events set type = 'test.rewritten' where seq = ${victim}`.execute(tx);
    });
    const tampered = await h.runtime.services.auditTrail.verifyChain();
    assert.equal(tampered.ok, false);
    assert.equal(tampered.firstBadSequence, victim);
    await h.runtime.db.write(async (tx) => {
      await sql`update audit_events set type = 'test.sealing' where seq = ${victim}`.execute(tx);
    });
    assert.equal((await h.runtime.services.auditTrail.verifyChain()).ok, true);
  });

  test(
    'a transaction held open keeps later events unsealed and out of search until it ends',
    {
      skip: engine === 'sqlite' ? 'SQLite appends at the head in the unit of work' : false,
    },
    async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let started!: () => void;
      const inFlight = new Promise<void>((resolve) => {
        started = resolve;
      });
      const held = h.runtime.db.write(async (tx) => {
        await event(tx, 'held-0');
        started();
        await gate;
      });
      await inFlight;
      for (let i = 1; i <= 3; i++) await h.runtime.db.write((tx) => event(tx, `held-${String(i)}`));

      // Below the horizon there is nothing: the open transaction's xid is older than theirs.
      assert.equal(await sealPending(deps(), true), 0);
      const during = await h.runtime.services.auditTrail.verifyChain();
      assert.equal(during.ok, true);
      assert.equal(during.unsealed?.count, 3, 'the three committed events wait');
      assert.deepEqual(await storedTags('held-'), [], 'not shown before they are sealed');

      release();
      await held;
      await awaitAuditSealed(deps());
      assert.deepEqual(await storedTags('held-'), ['held-0', 'held-1', 'held-2', 'held-3']);
      // In transaction-id order: the held transaction's event first.
      const order = await h.runtime.db.read
        .selectFrom('audit_events')
        .select('request_id')
        .where('request_id', 'like', 'held-%')
        .orderBy('seq')
        .execute();
      assert.deepEqual(
        order.map((r) => r.request_id),
        ['held-0', 'held-1', 'held-2', 'held-3'],
      );
      const after = await h.runtime.services.auditTrail.verifyChain();
      assert.equal(after.ok, true);
      assert.equal(after.unsealed?.count, 0);
    },
  );

  test(
    'the server seals by itself: events queued by requests reach the chain without a reader',
    {
      skip: engine === 'sqlite' ? 'SQLite appends at the head in the unit of work' : false,
    },
    async () => {
      const admin = await h.newOrganization();
      const before = (await auditHead(h.runtime.db.read)).seq;
      h.runtime.startJobs();
      const res = await h.request({ method: 'GET', url: '/api/v1/patients', token: admin.token });
      assert.equal(res.statusCode, 200);
      const deadline = Date.now() + 10_000;
      while ((await auditHead(h.runtime.db.read)).seq === before) {
        assert.ok(Date.now() < deadline, 'the sealer job sealed the request within 10 s');
        await sleep(50);
      }
      assert.equal((await auditUnsealedTail(deps())).count, 0);
    },
  );
});
