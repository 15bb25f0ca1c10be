// Audit anchors on a real replica (a folder, and s3rver) for both engines: each signed checkpoint
// reaches the replica sealed, also after an outage longer than any delivery's retries; and
// `caretrail audit verify --replica` catches what the database alone cannot show (a cut-off or
// rewritten tail whose checkpoint rows went with it, an older copy of the database put back),
// names a tampered anchor, and tells a deliberate restore from tampering once it is recorded.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { chainHash, eventHash } from '../../src/domain/audit.js';
import {
  ANCHORS_PART,
  anchorName,
  anchorShippingStatus,
  checkAnchors,
  describeAnchorCheck,
  openAnchor,
  watchAnchors,
} from '../../src/replication/anchors/index.js';
import { createReplicationMonitor } from '../../src/replication/index.js';
import { awaitAuditSealed } from '../../src/audit-sealing/index.js';
import { createLogger } from '../../src/log.js';
import { openReplicaDestination } from '../../src/replication/destination.js';
import { auditEventFromRow, auditHead, listCheckpoints } from '../../src/store/audit.store.js';
import { enqueue } from '../../src/store/outbox.store.js';
import type { AuditEventRow } from '../../src/store/tables.js';
import { createTestDatabase, describeEachEngine, tempDir } from '../helpers/engines.js';
import { TestClock, startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { runCli, startServer } from '../helpers/process.js';
import { S3_CREDENTIALS, startS3, type S3Server } from '../helpers/storage.js';

/**
 * The runtime's clock starts two hours back, so the moments the tests move it to stay before
 * the real time at which the command line records a restore.
 */
const pastClock = () => new TestClock(new Date(Date.now() - 2 * 3_600_000));

interface Primary {
  h: Harness;
  clock: TestClock;
  vet: SignedIn;
}

async function startPrimary(databaseUrl: string, env: Record<string, string>): Promise<Primary> {
  const clock = pastClock();
  const h = await startHarness(databaseUrl, env, { clock });
  const admin = await h.newOrganization();
  const vet = await h.newUser(admin, 'clinician');
  return { h, clock, vet };
}

/** A few patient reads a second later than the last: events to sign. */
async function activity(p: Primary, reads = 3): Promise<void> {
  p.clock.advance(1000);
  const create = () =>
    p.h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: p.vet.token,
      body: { name: 'Anchor Dog', species: 'canine' },
    });
  let created = await create();
  if (created.statusCode === 401) {
    // The clock moved past the session's lifetime: sign in again.
    p.vet = await p.h.newUser(await p.h.newOrganization(), 'clinician');
    created = await create();
  }
  assert.equal(created.statusCode, 201);
  const id = created.json<{ id: string }>().id;
  for (let i = 0; i < reads; i++)
    await p.h.request({ method: 'GET', url: `/api/v1/patients/${id}`, token: p.vet.token });
}

/** Signs a checkpoint a second later and returns its sequence number. */
async function checkpoint(p: Primary): Promise<number> {
  p.clock.advance(1000);
  const seq = await p.h.runtime.services.auditTrail.checkpointIfDue(true);
  assert.ok(seq !== null, 'a checkpoint was signed');
  return seq;
}

async function eventsAfter(p: Primary, seq: number): Promise<AuditEventRow[]> {
  // As the audit search reads: after what was committed (by the CLI too) is sealed.
  await awaitAuditSealed(p.h.runtime.services.deps);
  return p.h.runtime.db.read
    .selectFrom('audit_events')
    .selectAll()
    .where('seq', '>', seq)
    .orderBy('seq')
    .execute();
}

/**
 * What someone with write access to the database (or a restore to an older moment) leaves:
 * the events after `seq` gone, the checkpoint rows after it too, the head row rewound. The
 * database alone then verifies. Returns a function that puts everything back.
 */
async function cutLogAfter(p: Primary, seq: number): Promise<() => Promise<void>> {
  const db = p.h.runtime.db;
  const events = await eventsAfter(p, seq);
  const links = await db.read
    .selectFrom('audit_event_patients')
    .selectAll()
    .where('seq', '>', seq)
    .execute();
  const checkpoints = (await listCheckpoints(db.read)).filter((c) => c.seq > seq);
  const head = await auditHead(db.read);
  const kept = await db.read
    .selectFrom('audit_events')
    .select('chain_hash')
    .where('seq', '=', seq)
    .executeTakeFirstOrThrow();
  await db.write(async (tx) => {
    await tx.deleteFrom('audit_event_patients').where('seq', '>', seq).execute();
    await tx.deleteFrom('audit_events').where('seq', '>', seq).execute();
    await tx.deleteFrom('audit_checkpoints').where('seq', '>', seq).execute();
    await tx
      .updateTable('audit_head')
      .set({ seq, chain_hash: kept.chain_hash })
      .where('id', '=', 1)
      .execute();
  });
  return async () => {
    await db.write(async (tx) => {
      for (const e of events) await tx.insertInto('audit_events').values(e).execute();
      if (links.length > 0) await tx.insertInto('audit_event_patients').values(links).execute();
      for (const c of checkpoints)
        await tx
          .insertInto('audit_checkpoints')
          .values({
            seq: c.seq,
            chain_hash: c.chain,
            created_at: c.createdAt,
            key_id: c.keyId,
            signature: c.signature,
          })
          .execute();
      await tx
        .updateTable('audit_head')
        .set({ seq: head.seq, chain_hash: head.chain })
        .where('id', '=', 1)
        .execute();
    });
  };
}

async function pendingAnchors(p: Primary): Promise<number> {
  return (await anchorShippingStatus(p.h.runtime.db.read)).pending;
}

describeEachEngine('audit anchors on a folder replica', ({ url }) => {
  let p: Primary;
  let replicaDir: string;
  let replicaUrl: string;
  let first: number;
  let second: number;
  const env = () => ({
    CARETRAIL_DATABASE_URL: url(),
    CARETRAIL_DATA_DIR: p.h.config.dataDir,
  });
  const verifyCli = (args: string[] = ['--replica', replicaUrl]) =>
    runCli(['audit', 'verify', ...args], env());
  const check = async () =>
    checkAnchors({
      db: p.h.runtime.db.read,
      destination: openReplicaDestination(replicaUrl),
      keyring: p.h.runtime.vault.keyring,
      verifySignature: () => true,
    });

  before(async () => {
    replicaDir = tempDir('caretrail-replica-');
    replicaUrl = `file:${replicaDir}`;
    p = await startPrimary(url(), {
      CARETRAIL_REPLICA_URL: replicaUrl,
      // Fewer attempts than the outage below lasts: anchors must outlast them.
      CARETRAIL_DELIVERY_MAX_ATTEMPTS: '2',
      CARETRAIL_DELIVERY_BACKOFF_MS: '1000',
    });
  });
  after(async () => {
    await p.h.close();
    fs.rmSync(replicaDir, { recursive: true, force: true });
  });

  test('a signed checkpoint queues its anchor with it; the relay ships it sealed, named by sequence', async () => {
    await activity(p);
    first = await checkpoint(p);
    const queued = await p.h.runtime.db.read
      .selectFrom('outbox')
      .selectAll()
      .where('topic', '=', 'audit.anchor')
      .execute();
    assert.equal(queued.length, 1, 'queued in the checkpoint’s unit of work');
    assert.deepEqual(await anchorShippingStatus(p.h.runtime.db.read), {
      newest: null,
      pending: 1,
      oldestPendingSince: p.clock.now().toISOString(),
      failed: 0,
      lastError: null,
    });
    await p.h.runtime.relay.runUntilIdle();
    const [stored] = await listCheckpoints(p.h.runtime.db.read);
    assert.ok(stored);
    const name = anchorName(stored);
    assert.match(
      name,
      new RegExp(`^caretrail-anchors/checkpoints/${String(first).padStart(16, '0')}-[0-9a-f]{16}$`),
    );
    const file = path.join(replicaDir, ...name.split('/'));
    const sealed = fs.readFileSync(file);
    assert.ok(!sealed.includes(Buffer.from(stored.chain)), 'the chain value is not readable');
    assert.ok(!sealed.includes(Buffer.from('caretrail.audit')), 'nothing is in plain text');
    assert.deepEqual(openAnchor(p.h.runtime.vault.keyring, name, sealed), stored);
    const status = await anchorShippingStatus(p.h.runtime.db.read);
    assert.ok(status.newest);
    assert.equal(status.newest.seq, first);
    assert.equal(status.newest.createdAt, stored.createdAt);
    assert.equal(status.pending, 0);
    assert.equal(status.lastError, null);

    await activity(p);
    second = await checkpoint(p);
    await p.h.runtime.relay.runUntilIdle();
    const names = fs
      .readdirSync(path.join(replicaDir, 'caretrail-anchors', 'checkpoints'))
      .map((n) => Number(n.split('-')[0]));
    assert.deepEqual(names, [first, second], 'names sort by sequence');
  });

  test('audit verify --replica passes on an intact primary and names the newest anchor', async () => {
    const result = await verifyCli();
    assert.equal(result.code, 0, result.stdout + result.stderr);
    // PostgreSQL adds its unsealed tail after the chain's line (audit-verify.db.test.ts).
    const lines = result.stdout.split('\n').filter((l) => !l.startsWith('Unsealed tail: '));
    assert.match(lines[0] ?? '', /^Audit trail intact: /);
    assert.match(
      lines[1] ?? '',
      new RegExp(
        `^Replica anchors match: 2 checked at file:${replicaDir}; newest: anchor ${second} \\(checkpoint signed \\S+Z\\)\\.$`,
      ),
    );
  });

  test('a tail cut off with its checkpoint rows: the database verifies alone, the anchor shows the cut', async () => {
    const putBack = await cutLogAfter(p, first);
    try {
      const alone = await p.h.runtime.services.auditTrail.verifyChain();
      assert.equal(alone.ok, true, 'the database alone cannot tell');
      const result = await verifyCli();
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, /^Audit trail intact: /);
      assert.match(
        result.stdout,
        new RegExp(
          `Replica anchors BROKEN at file:${replicaDir}: 2 checked, 1 not matching the primary or not trustworthy; newest: anchor ${second} `,
        ),
      );
      assert.match(
        result.stdout,
        new RegExp(
          `\\n  anchor ${second} \\(checkpoint signed \\S+Z\\): the primary's audit log ends at ${first}, before it: the log was truncated or rolled back after this anchor was shipped\\.\\n`,
        ),
      );
      assert.match(
        result.stdout,
        /point-in-time restore\), this is expected: record the restore with "caretrail audit record-restore --replica file:/,
      );
    } finally {
      await putBack();
    }
    assert.equal((await check()).problems.length, 0);
  });

  test('a tail rewritten consistently (hashes recomputed, checkpoint rows removed) is named as rewritten', async () => {
    const originals = await eventsAfter(p, first);
    const checkpoints = (await listCheckpoints(p.h.runtime.db.read)).filter((c) => c.seq > first);
    const previous = await p.h.runtime.db.read
      .selectFrom('audit_events')
      .select('chain_hash')
      .where('seq', '=', first)
      .executeTakeFirstOrThrow();
    // The attacker edits one event and recomputes every hash and link after it.
    let chain = previous.chain_hash;
    await p.h.runtime.db.write(async (tx) => {
      await tx.deleteFrom('audit_checkpoints').where('seq', '>', first).execute();
      for (const row of originals) {
        const { event } = auditEventFromRow(row);
        if (row.seq === first + 2) event.actor.ip = '203.0.113.9';
        const hash = eventHash(event);
        chain = chainHash(chain, hash);
        await tx
          .updateTable('audit_events')
          .set({ actor_ip: event.actor.ip, event_hash: hash, chain_hash: chain })
          .where('seq', '=', row.seq)
          .execute();
      }
      await tx.updateTable('audit_head').set({ chain_hash: chain }).where('id', '=', 1).execute();
    });
    try {
      assert.equal((await p.h.runtime.services.auditTrail.verifyChain()).ok, true);
      const result = await check();
      assert.deepEqual(
        result.problems.map((x) => [x.kind, 'seq' in x ? x.seq : null]),
        [['rewritten', second]],
      );
      const report = describeAnchorCheck(result, replicaUrl);
      assert.equal(report.ok, false);
      assert.ok(
        report.lines.includes(
          `  anchor ${second} (checkpoint signed ${checkpoints[0]?.createdAt ?? ''}): the primary's chain at ${second} differs: events up to ${second} were rewritten after this anchor was shipped.`,
        ),
        report.lines.join('\n'),
      );
    } finally {
      await p.h.runtime.db.write(async (tx) => {
        for (const row of originals)
          await tx
            .updateTable('audit_events')
            .set({ actor_ip: row.actor_ip, event_hash: row.event_hash, chain_hash: row.chain_hash })
            .where('seq', '=', row.seq)
            .execute();
        const head = originals.at(-1);
        if (head)
          await tx
            .updateTable('audit_head')
            .set({ chain_hash: head.chain_hash })
            .where('id', '=', 1)
            .execute();
        for (const c of checkpoints)
          await tx
            .insertInto('audit_checkpoints')
            .values({
              seq: c.seq,
              chain_hash: c.chain,
              created_at: c.createdAt,
              key_id: c.keyId,
              signature: c.signature,
            })
            .execute();
      });
    }
    assert.equal((await check()).problems.length, 0);
  });

  test('a tampered anchor, and one copied under another name, are named as untrustworthy', async () => {
    const names = (await openReplicaDestination(replicaUrl).list('caretrail-anchors/')).sort();
    const [firstName, secondName] = names;
    assert.ok(firstName && secondName);
    const fileOf = (name: string) => path.join(replicaDir, ...name.split('/'));
    const original = fs.readFileSync(fileOf(firstName));
    const flipped = Buffer.from(original);
    const at = flipped.length - 3;
    flipped[at] = (flipped[at] ?? 0) ^ 0x40;
    fs.writeFileSync(fileOf(firstName), flipped);
    // A forged "newer" anchor: a real one copied under a later sequence.
    const forged = `caretrail-anchors/checkpoints/${String(second + 1000).padStart(16, '0')}-${'ab'.repeat(8)}`;
    fs.copyFileSync(fileOf(secondName), fileOf(forged));
    try {
      const result = await verifyCli();
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(
        result.stdout,
        new RegExp(
          `\\n  ${firstName}: cannot be trusted \\(the replica was tampered with or damaged\\): it was altered or damaged\\.\\n`,
        ),
      );
      assert.match(
        result.stdout,
        new RegExp(
          `\\n  ${forged}: cannot be trusted \\(the replica was tampered with or damaged\\): its key does not open`,
        ),
      );
      assert.doesNotMatch(
        result.stdout,
        /record-restore/,
        'no restore advice for a tampered replica',
      );
    } finally {
      fs.writeFileSync(fileOf(firstName), original);
      fs.rmSync(fileOf(forged));
    }
  });

  test('a deliberate restore: a rollback until it is recorded, then "after the restore point"; the new history is checked', async () => {
    const anchorRowsBefore = (
      await p.h.runtime.db.read
        .selectFrom('outbox')
        .select('id')
        .where('topic', '=', 'audit.anchor')
        .execute()
    ).map((r) => r.id);
    // A point-in-time restore to a moment between the two checkpoints leaves the log at `first`.
    const putBack = await cutLogAfter(p, first);
    try {
      const before = await verifyCli();
      assert.equal(before.code, 1);
      assert.match(before.stdout, new RegExp(`anchor ${second} .*truncated or rolled back`));

      const recorded = await runCli(['audit', 'record-restore', '--replica', replicaUrl], env());
      assert.equal(recorded.code, 0, recorded.stdout + recorded.stderr);
      assert.match(
        recorded.stdout,
        new RegExp(
          `^Restore point recorded at file:${replicaDir}: the database was restored to \\S+Z \\(audit log at ${first}\\)\\.`,
        ),
      );
      const events = await eventsAfter(p, first);
      assert.deepEqual(
        events.map((e) => [e.type, e.actor_user_id, e.outcome]),
        [['audit.restore-point', null, 'success']],
        'the recording is itself an audit event',
      );

      const afterRecording = await verifyCli();
      assert.equal(afterRecording.code, 0, afterRecording.stdout);
      assert.match(
        afterRecording.stdout,
        /Replica anchors match: 2 checked at \S+ \(1 after the restore point\)/,
      );
      assert.match(
        afterRecording.stdout,
        new RegExp(
          `\\n  anchor ${second} \\(checkpoint signed \\S+Z\\): after the restore point \\(the database was restored to \\S+Z; recorded \\S+Z\\): from the history the restore abandoned, not compared\\.\\n`,
        ),
      );

      // The restored server carries on (after the recording): new events take the sequence
      // numbers the abandoned history had anchored; their anchors sit beside the old ones.
      p.clock.advance(Date.now() - p.clock.now().getTime() + 60_000);
      await activity(p, 6);
      const third = await checkpoint(p);
      assert.ok(third > second, 'the new history reached past the abandoned anchor');
      await p.h.runtime.relay.runUntilIdle();
      const result = await check();
      assert.equal(result.problems.length, 0);
      assert.equal(result.matched, 2);
      assert.deepEqual(
        result.afterRestore.map((a) => a.seq),
        [second],
      );

      // Cutting the new history off is tampering again: the restore excuses only the old one.
      const cut = await cutLogAfter(p, first + 1);
      try {
        const broken = await verifyCli();
        assert.equal(broken.code, 1, broken.stdout);
        assert.match(
          broken.stdout,
          new RegExp(`anchor ${third} .*the log was truncated or rolled back`),
        );
      } finally {
        await cut();
      }
    } finally {
      // Back to the original history: remove the new one and the restore point.
      const newer = await eventsAfter(p, first);
      await p.h.runtime.db.write(async (tx) => {
        await tx.deleteFrom('audit_event_patients').where('seq', '>', first).execute();
        await tx.deleteFrom('audit_events').where('seq', '>', first).execute();
        await tx.deleteFrom('audit_checkpoints').where('seq', '>', first).execute();
      });
      assert.ok(newer.length > 0);
      await putBack();
      fs.rmSync(path.join(replicaDir, 'caretrail-anchors', 'restores'), {
        recursive: true,
        force: true,
      });
      await p.h.runtime.db.write((tx) =>
        tx
          .deleteFrom('outbox')
          .where('topic', '=', 'audit.anchor')
          .where('id', 'not in', anchorRowsBefore)
          .execute(),
      );
      for (const name of await openReplicaDestination(replicaUrl).list('caretrail-anchors/')) {
        const seq = Number(name.split('/')[2]?.split('-')[0]);
        if (seq !== first && seq !== second) fs.rmSync(path.join(replicaDir, ...name.split('/')));
      }
    }
    assert.equal((await check()).problems.length, 0);
  });

  test('replica down: the checkpoint is still signed; its anchor waits, with the error, and ships after recovery', async () => {
    // The folder's place taken by a file: every write fails.
    fs.renameSync(replicaDir, `${replicaDir}.away`);
    fs.writeFileSync(replicaDir, 'not a folder');
    let third: number;
    try {
      await activity(p);
      third = await checkpoint(p);
      assert.equal((await listCheckpoints(p.h.runtime.db.read)).at(-1)?.seq, third);
      // Five attempts over ten minutes: more than CARETRAIL_DELIVERY_MAX_ATTEMPTS (2).
      for (let attempt = 0; attempt < 5; attempt++) {
        await p.h.runtime.relay.runUntilIdle();
        p.clock.advance(10 * 60_000);
      }
      const status = await anchorShippingStatus(p.h.runtime.db.read);
      assert.equal(status.pending, 1);
      assert.equal(status.failed, 0, 'an outage does not dead-letter an anchor');
      assert.equal(status.newest?.seq, second);
      assert.ok(status.lastError);
      assert.equal(status.lastError.attempts, 5);
      // The replication monitor (/readyz, the Backups page) shows it too.
      assert.ok(p.h.runtime.replication.parts()[ANCHORS_PART], 'the server registers the part');
      const monitor = createReplicationMonitor();
      const watch = watchAnchors(
        { db: p.h.runtime.db, clock: p.clock, log: createLogger('silent') },
        monitor,
        60_000,
      );
      await watch.refresh();
      watch.stop();
      const part = monitor.parts()[ANCHORS_PART];
      assert.equal(part?.state, 'unreachable');
      assert.equal(part.lastError, status.lastError.message);
      assert.ok(part.lagSeconds >= 50 * 60, 'waiting since the checkpoint, 50 minutes ago');
      assert.equal(monitor.health(), 'degraded');
      assert.match(
        status.lastError.message,
        new RegExp(
          `^could not write anchor ${third} to the replica at file:${replicaDir} \\(E[A-Z]+\\)$`,
        ),
      );
    } finally {
      fs.rmSync(replicaDir);
      fs.renameSync(`${replicaDir}.away`, replicaDir);
    }
    p.clock.advance(10 * 60_000);
    await p.h.runtime.relay.runUntilIdle();
    assert.equal(await pendingAnchors(p), 0);
    const status = await anchorShippingStatus(p.h.runtime.db.read);
    assert.equal(status.newest?.seq, third);
    assert.equal(status.lastError, null);
    assert.equal(status.oldestPendingSince, null);
    const result = await check();
    assert.equal(result.matched, 3);
    assert.equal(result.newest?.seq, third);
  });
});

describeEachEngine('audit anchors on S3 (s3rver)', ({ url }) => {
  let p: Primary;
  let s3: S3Server;
  let replicaUrl: string;
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  const check = async () =>
    checkAnchors({
      db: p.h.runtime.db.read,
      destination: openReplicaDestination(replicaUrl, { s3Credentials: S3_CREDENTIALS }),
      keyring: p.h.runtime.vault.keyring,
      verifySignature: () => true,
    });

  before(async () => {
    s3 = await startS3('caretrail-replica');
    replicaUrl = `s3://${s3.bucket}/clinic/replica?region=us-east-1&endpoint=http://127.0.0.1:${String(s3.port)}&forcePathStyle=true`;
    // The server finds S3 credentials the usual way (the SDK's environment variables).
    process.env.AWS_ACCESS_KEY_ID = S3_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3_CREDENTIALS.secretAccessKey;
    p = await startPrimary(url(), { CARETRAIL_REPLICA_URL: replicaUrl });
  });
  after(async () => {
    await p.h.close();
    await s3.stop().catch(() => undefined);
    fs.rmSync(s3.dir, { recursive: true, force: true });
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  });

  test('checkpoints reach the bucket; an outage delays the anchor, which ships after it; verify passes', async () => {
    await activity(p);
    const first = await checkpoint(p);
    await p.h.runtime.relay.runUntilIdle();
    assert.deepEqual((await check()).newest?.seq, first);

    await s3.stop();
    let second: number;
    try {
      await activity(p);
      second = await checkpoint(p);
      await p.h.runtime.relay.runUntilIdle();
      const status = await anchorShippingStatus(p.h.runtime.db.read);
      assert.equal(status.pending, 1);
      assert.equal(status.newest?.seq, first);
      assert.match(
        status.lastError?.message ?? '',
        /^the replica at s3:\/\/caretrail-replica\/clinic\/replica\/ is unreachable$/,
      );
    } finally {
      await s3.restart();
    }
    p.clock.advance(10 * 60_000);
    await p.h.runtime.relay.runUntilIdle();
    assert.equal(await pendingAnchors(p), 0);
    const result = await check();
    assert.equal(result.matched, 2);
    assert.equal(result.newest?.seq, second);

    const cli = await runCli(['audit', 'verify', '--replica', replicaUrl], {
      CARETRAIL_DATABASE_URL: url(),
      CARETRAIL_DATA_DIR: p.h.config.dataDir,
    });
    assert.equal(cli.code, 0, cli.stdout + cli.stderr);
    assert.match(
      cli.stdout,
      new RegExp(
        `Replica anchors match: 2 checked at s3://caretrail-replica/clinic/replica/ at http://127.0.0.1:${String(s3.port)}; newest: anchor ${second} `,
      ),
    );

    await s3.stop();
    try {
      const down = await runCli(['audit', 'verify', '--replica', replicaUrl], {
        CARETRAIL_DATABASE_URL: url(),
        CARETRAIL_DATA_DIR: p.h.config.dataDir,
      });
      assert.equal(down.code, 1);
      assert.match(
        down.stdout,
        /\nReplica anchors NOT CHECKED: the replica at s3:\/\/caretrail-replica\/clinic\/replica\/ is unreachable\.\n$/,
      );
    } finally {
      await s3.restart();
    }
  });
});

describeEachEngine('audit anchors from a running server', ({ url, engine }) => {
  /** One number from the server's database, read beside it. */
  const scalar = async (query: string): Promise<number> => {
    if (engine === 'sqlite') {
      const raw = new BetterSqlite3(url().slice('sqlite:'.length), { readonly: true });
      try {
        return Number((raw.prepare(query).raw().get() as unknown[])[0] ?? 0);
      } finally {
        raw.close();
      }
    }
    const client = new pg.Client({ connectionString: url() });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: string | number | null }>(query);
      return Number(rows[0]?.n ?? 0);
    } finally {
      await client.end();
    }
  };
  const waitFor = async (what: string, ready: () => Promise<boolean>, ms = 30_000) => {
    const deadline = Date.now() + ms;
    while (!(await ready())) {
      assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  test(
    'a checkpoint made while the replica is away survives a crash and is shipped by the next start',
    { timeout: 120_000 },
    async () => {
      const dataDir = tempDir();
      const replicaDir = path.join(tempDir('caretrail-replica-'), 'replica');
      fs.writeFileSync(replicaDir, 'not a folder yet');
      const env = {
        CARETRAIL_DATABASE_URL: url(),
        CARETRAIL_DATA_DIR: dataDir,
        CARETRAIL_REPLICA_URL: `file:${replicaDir}`,
        CARETRAIL_AUDIT_CHECKPOINT_SECONDS: '1',
        CARETRAIL_DELIVERY_BACKOFF_MS: '200',
      };
      let server = await startServer(env);
      let anchored: number;
      try {
        // Refused requests are audited too: events to sign.
        for (let i = 0; i < 3; i++) await fetch(`${server.baseUrl}/api/v1/patients`);
        await waitFor('a checkpoint whose anchor failed', async () => {
          const failing = await scalar(
            "select count(*) as n from outbox where topic = 'audit.anchor' and status = 'pending' and last_error is not null",
          );
          return failing > 0;
        });
        anchored = await scalar('select max(seq) as n from audit_checkpoints');
        // The anchors' own part: on PostgreSQL the part 'database' is degraded too in this test
        // (the test server does not archive WAL), so the overall 'replica' cannot tell them apart.
        await waitFor('/readyz to report the anchors unreachable', async () => {
          const ready = (await (await fetch(`${server.baseUrl}/readyz`)).json()) as {
            replica: string;
            replicaParts: Record<string, string>;
          };
          return (
            ready.replica === 'degraded' && ready.replicaParts['audit anchors'] === 'unreachable'
          );
        });
      } finally {
        server.child.kill('SIGKILL');
        await server.exited;
      }
      fs.rmSync(replicaDir);
      fs.mkdirSync(replicaDir);
      server = await startServer(env);
      const names = () =>
        fs.existsSync(path.join(replicaDir, 'caretrail-anchors', 'checkpoints'))
          ? fs.readdirSync(path.join(replicaDir, 'caretrail-anchors', 'checkpoints'))
          : [];
      try {
        await waitFor('the anchor on the replica', async () =>
          names().some((n) => Number(n.split('-')[0]) === anchored),
        );
        await waitFor('/readyz to report the anchors ok', async () => {
          const ready = (await (await fetch(`${server.baseUrl}/readyz`)).json()) as {
            replica: string;
            replicaParts: Record<string, string>;
          };
          // SQLite ships its own log here, so there the whole replica is in step again.
          const whole = engine === 'sqlite' ? ready.replica === 'ok' : true;
          return ready.replicaParts['audit anchors'] === 'ok' && whole;
        });
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
      const verify = await runCli(['audit', 'verify', '--replica', `file:${replicaDir}`], env);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /\nReplica anchors match: \d+ checked at /);
      fs.rmSync(path.dirname(replicaDir), { recursive: true, force: true });
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  );
});

describe('audit anchors: an older copy of the SQLite database put back', () => {
  let dataDir: string;
  let replicaDir: string;
  let database: { url: string; drop: () => Promise<void> };
  before(async () => {
    dataDir = tempDir('caretrail-data-');
    replicaDir = tempDir('caretrail-replica-');
    database = await createTestDatabase('sqlite');
  });
  after(async () => {
    await database.drop();
    for (const dir of [dataDir, replicaDir]) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('verify alone passes, verify --replica names the anchor the copy lacks; recorded with --at, it passes', async () => {
    const file = database.url.slice('sqlite:'.length);
    const replicaUrl = `file:${replicaDir}`;
    const env = { CARETRAIL_DATABASE_URL: database.url, CARETRAIL_DATA_DIR: dataDir };
    const p = await startPrimary(database.url, { ...env, CARETRAIL_REPLICA_URL: replicaUrl });
    let first: number;
    let second: number;
    let copiedAt: string;
    const copy = path.join(dataDir, 'older-copy.db');
    try {
      await activity(p);
      first = await checkpoint(p);
      await p.h.runtime.relay.runUntilIdle();
      copiedAt = p.clock.now().toISOString();
      const raw = new BetterSqlite3(file, { readonly: true });
      raw.exec(`vacuum into '${copy}'`);
      raw.close();
      await activity(p);
      second = await checkpoint(p);
      await p.h.runtime.relay.runUntilIdle();
    } finally {
      await p.h.close();
    }
    for (const suffix of ['-wal', '-shm']) fs.rmSync(`${file}${suffix}`, { force: true });
    fs.copyFileSync(copy, file);

    const alone = await runCli(['audit', 'verify'], env);
    assert.equal(alone.code, 0, 'the older copy is consistent with itself');
    const withReplica = await runCli(['audit', 'verify', '--replica', replicaUrl], env);
    assert.equal(withReplica.code, 1, withReplica.stdout + withReplica.stderr);
    assert.match(
      withReplica.stdout,
      new RegExp(
        `\\n  anchor ${second} \\(checkpoint signed \\S+Z\\): the primary's audit log ends at ${first}, before it: the log was truncated or rolled back after this anchor was shipped\\.\\n`,
      ),
    );

    const recorded = await runCli(
      ['audit', 'record-restore', '--replica', replicaUrl, '--at', copiedAt],
      env,
    );
    assert.equal(recorded.code, 0, recorded.stdout + recorded.stderr);
    assert.match(
      recorded.stdout,
      new RegExp(`the database was restored to ${copiedAt.replace(/\./g, '\\.')} `),
    );
    const after = await runCli(['audit', 'verify', '--replica', replicaUrl], env);
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.match(
      after.stdout,
      new RegExp(`\\n  anchor ${second} \\(checkpoint signed \\S+Z\\): after the restore point`),
    );
  });

  test(
    'caretrail restore to a moment, then verify --replica fails until record-restore reads the moment from the restore report',
    { timeout: 120_000 },
    async () => {
      const serverDir = tempDir('caretrail-data-');
      const restoredDir = path.join(tempDir('caretrail-restored-'), 'data');
      const replica = tempDir('caretrail-replica-');
      const replicaUrl = `file:${replica}`;
      const anchorSeqs = () =>
        fs.existsSync(path.join(replica, 'caretrail-anchors', 'checkpoints'))
          ? fs
              .readdirSync(path.join(replica, 'caretrail-anchors', 'checkpoints'))
              .map((n) => Number(n.split('-')[0]))
          : [];
      const until = async (what: string, ready: () => boolean) => {
        for (const deadline = Date.now() + 30_000; !ready();) {
          assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      const serverEnv = {
        CARETRAIL_DATA_DIR: serverDir,
        CARETRAIL_REPLICA_URL: replicaUrl,
        CARETRAIL_AUDIT_CHECKPOINT_SECONDS: '1',
      };
      // Two runs of the server; the moment restored to falls between them.
      const run = async (anchors: number) => {
        const server = await startServer(serverEnv);
        try {
          for (let i = 0; i < 3; i++) await fetch(`${server.baseUrl}/api/v1/patients`);
          await until(`anchor ${String(anchors)}`, () => anchorSeqs().length === anchors);
        } finally {
          server.child.kill('SIGTERM');
          await server.exited;
        }
      };
      await run(1);
      await new Promise((r) => setTimeout(r, 500));
      const moment = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 500));
      await run(2);
      const [first, second] = anchorSeqs();
      const restored = await runCli(
        [
          'restore',
          '--from',
          replicaUrl,
          '--to',
          restoredDir,
          '--at',
          moment,
          '--key-dir',
          serverDir,
        ],
        {},
      );
      assert.equal(restored.code, 0, restored.stdout + restored.stderr);
      assert.match(restored.stdout, /caretrail audit record-restore --replica file:/);
      const env = { CARETRAIL_DATA_DIR: restoredDir };
      const rolledBack = await runCli(['audit', 'verify', '--replica', replicaUrl], env);
      assert.equal(rolledBack.code, 1, rolledBack.stdout + rolledBack.stderr);
      assert.match(
        rolledBack.stdout,
        new RegExp(
          `\\n  anchor ${String(second)} \\(checkpoint signed \\S+Z\\): the primary's audit log ends at ${String(first)}, before it`,
        ),
      );
      const recorded = await runCli(['audit', 'record-restore', '--replica', replicaUrl], env);
      assert.equal(recorded.code, 0, recorded.stdout + recorded.stderr);
      const report = JSON.parse(
        fs.readFileSync(path.join(restoredDir, 'restore-report.json'), 'utf8'),
      ) as { database: { restoredTo: string } };
      assert.ok(
        recorded.stdout.includes(`the database was restored to ${report.database.restoredTo} `),
        recorded.stdout,
      );
      const verified = await runCli(['audit', 'verify', '--replica', replicaUrl], env);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      assert.match(verified.stdout, /\(1 after the restore point\)/);
      for (const dir of [serverDir, path.dirname(restoredDir), replica])
        fs.rmSync(dir, { recursive: true, force: true });
    },
  );

  test('without a replica setting, checkpoints queue no anchor; anchors queued before are given up, saying why', async () => {
    const other = await createTestDatabase('sqlite');
    const p = await startPrimary(other.url, {});
    try {
      await activity(p);
      const seq = await checkpoint(p);
      const status = await anchorShippingStatus(p.h.runtime.db.read);
      assert.deepEqual(status, {
        newest: null,
        pending: 0,
        oldestPendingSince: null,
        failed: 0,
        lastError: null,
      });
      // A database restored where no replica is configured yet still holds its queued anchors.
      const [stored] = await listCheckpoints(p.h.runtime.db.read);
      await p.h.runtime.db.write((tx) =>
        enqueue(tx, p.clock.now(), { topic: 'audit.anchor', payload: stored }),
      );
      await p.h.runtime.relay.runUntilIdle();
      assert.equal((await anchorShippingStatus(p.h.runtime.db.read)).failed, 1);
      const dead = await p.h.runtime.db.read
        .selectFrom('outbox')
        .select('last_error')
        .where('topic', '=', 'audit.anchor')
        .executeTakeFirstOrThrow();
      assert.equal(
        dead.last_error,
        `CARETRAIL_REPLICA_URL is not set: the anchor of checkpoint ${String(seq)} is not shipped`,
      );
    } finally {
      await p.h.close();
      await other.drop();
    }
  });
});

test('audit verify --replica and record-restore: bad usage exits 2 with one line', async () => {
  const env = { CARETRAIL_DATA_DIR: tempDir() };
  const cases: [string[], RegExp][] = [
    [['audit', 'verify', '--replica'], /^caretrail: .*--replica.*\n$/],
    [
      ['audit', 'verify', '--replica', 'ftp://elsewhere/x'],
      /^caretrail: --replica must be file:\/path\/to\/folder or s3:\/\/bucket\/prefix\?region=…&endpoint=…\n$/,
    ],
    [
      ['audit', 'verify', '--replica', 'file:/nonexistent/caretrail-replica'],
      /^caretrail: --replica: there is no folder \/nonexistent\/caretrail-replica\.\n$/,
    ],
    [['audit', 'record-restore'], /^caretrail: --replica needs the replica URL: /],
  ];
  for (const [args, stderr] of cases) {
    const result = await runCli(args, env);
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, stderr);
    assert.equal(result.stdout, '');
  }
  fs.rmSync(env.CARETRAIL_DATA_DIR, { recursive: true, force: true });
});
