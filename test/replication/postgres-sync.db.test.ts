// RPO 0 on PostgreSQL, on real processes: pg_receivewal streams WAL into a spool and is the
// server's synchronous standby, so a commit waits until its WAL is on the spool's disk (it hangs
// while the receiver is away); after the database machine is lost (an immediate stop right after
// the last acknowledged commit), the repository plus the spool restore every acknowledged row.
// A Caretrail server in synchronous mode does not hang meanwhile: while the receiver is away it
// answers writes 503 (refused before they start, or, for one already under way, not acknowledged)
// and /readyz says degraded; once the receiver is back, writes go on and a retry with the same
// Idempotency-Key gets the held write's outcome, never a second copy.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { freePort, localCluster, pgBinDir } from '../../src/replication/postgres/cluster.js';
import {
  pgBackup,
  pgReceiveWal,
  pgReplicateSetup,
  pgReplicateStatus,
  pgRestore,
  type PgReceiver,
} from '../../src/replication/postgres/index.js';
import { runTool } from '../../src/replication/postgres/run.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import {
  archivedCluster,
  assertCanRun,
  needsPgBackRest,
  sleep,
  type ArchivedCluster,
} from './postgres-helpers.js';

let primary: ArchivedCluster | null = null;
let second: ArchivedCluster | null = null;
let server: Harness | null = null;
const receivers: PgReceiver[] = [];
after(async () => {
  await server?.close().catch(() => undefined);
  for (const r of receivers) await r.stop().catch(() => undefined);
  await primary?.remove();
  await second?.remove();
});

/** A cluster in synchronous mode with its receiver connected as synchronous standby. */
async function synchronousCluster(): Promise<{
  p: ArchivedCluster;
  spool: string;
  receive: () => Promise<PgReceiver>;
}> {
  const p = await archivedCluster({ CARETRAIL_REPLICA_SYNC: 'true' });
  const spool = path.join(p.dir, 'spool');
  const receive = async () => {
    const r = await pgReceiveWal(p.config, { ...p.options, spool });
    receivers.push(r);
    for (let i = 0; i < 100; i++) {
      if ((await pgReplicateStatus(p.config, p.options)).receiver?.connected) break;
      await sleep(100);
    }
    return r;
  };
  return { p, spool, receive };
}

test(
  'synchronous WAL receiver: commits wait for it, and after the machine is lost the repository plus its spool hold every acknowledged commit',
  needsPgBackRest(240_000),
  async () => {
    assertCanRun();
    primary = await archivedCluster({ CARETRAIL_REPLICA_SYNC: 'true' });
    const p = primary;
    const spool = path.join(p.dir, 'spool');
    const receive = async () => {
      const r = await pgReceiveWal(p.config, { ...p.options, spool });
      receivers.push(r);
      return r;
    };
    await p.sql('create table t (x text)');
    await pgBackup(p.config, { ...p.options, type: 'full' });

    // Setup leaves synchronous_standby_names alone until the receiver is there.
    const waiting = await pgReplicateSetup(p.config, { ...p.options, apply: true });
    assert.equal(waiting.waitingForReceiver, true);
    assert.equal((await p.cluster.query('show synchronous_standby_names')).trim(), '');
    let receiver = await receive();
    for (let i = 0; i < 100; i++) {
      if ((await pgReplicateStatus(p.config, p.options)).receiver?.connected) break;
      await sleep(100);
    }
    const applied = await pgReplicateSetup(p.config, { ...p.options, apply: true });
    assert.deepEqual(
      applied.applied.map((c) => c.name),
      ['synchronous_standby_names'],
    );
    await sleep(500);
    const status = await pgReplicateStatus(p.config, p.options);
    assert.deepEqual(status.receiver?.syncState, 'sync');
    assert.deepEqual(status.errors, []);

    // Without the receiver a commit does not come back.
    await receiver.stop();
    const pending = runTool(
      path.join(pgBinDir(), 'psql'),
      ['-X', '-h', path.join(p.dir, 'pg'), '-p', String(p.cluster.port), '-U', 'postgres'].concat([
        '-d',
        'caretrail',
        '-c',
        "insert into t values ('waited for the receiver')",
      ]),
      { user: 'postgres', timeoutMs: 60_000 },
    );
    let answered = false;
    void pending.then(() => (answered = true));
    await sleep(2000);
    assert.equal(answered, false, 'the commit waits while no synchronous standby has it');
    const down = await pgReplicateStatus(p.config, p.options);
    assert.ok(down.errors.some((e) => e.startsWith('the WAL receiver is not connected')));
    receiver = await receive();
    assert.equal((await pending).code, 0, 'and completes once the receiver is back');

    // The machine is lost right after the last acknowledged commit.
    const acknowledged = ['waited for the receiver'];
    for (let i = 0; i < 40; i++) {
      await p.sql(`insert into t values ('row ${i}')`);
      acknowledged.push(`row ${i}`);
    }
    await p.cluster.stop('immediate');
    await receiver.stop();
    assert.ok(
      fs.readdirSync(spool).some((n) => n.endsWith('.partial')),
      'the spool holds the segment being written',
    );

    const to = path.join(p.dir, 'restored');
    const port = await freePort();
    const report = await pgRestore(p.config, { to, spool, port });
    const restored = localCluster({
      dataDir: to,
      port,
      socketDir: path.join(p.dir, 'pg'),
      user: 'postgres',
      bin: pgBinDir(),
      logFile: '',
    });
    try {
      const rows = (await restored.query('select x from t', 'caretrail')).split('\n');
      const missing = acknowledged.filter((x) => !rows.includes(x));
      assert.deepEqual(missing, [], 'every acknowledged commit was restored');
      assert.ok(report.walFromSpool >= 1);
    } finally {
      await restored.stop('immediate');
    }
  },
);

test(
  'a server in synchronous mode answers 503 instead of hanging while the WAL receiver is away, and loses or doubles nothing',
  needsPgBackRest(240_000),
  async () => {
    assertCanRun();
    const { p, receive } = await synchronousCluster();
    second = p;
    await pgBackup(p.config, { ...p.options, type: 'full' });
    let receiver = await receive();
    await pgReplicateSetup(p.config, { ...p.options, apply: true });
    assert.equal(
      (await p.cluster.query('show synchronous_standby_names')).trim(),
      'caretrail_receivewal',
    );
    server = await startHarness(p.config.databaseUrl, {
      CARETRAIL_REPLICA_URL: p.config.replicaUrl,
      CARETRAIL_REPLICA_SYNC: 'true',
      CARETRAIL_MASTER_KEY: p.masterKey,
    });
    const h = server;
    h.runtime.startJobs();
    const admin = await h.newOrganization();
    const create = (name: string, key: string) =>
      h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: admin.token,
        headers: { 'idempotency-key': key },
        body: { name, species: 'canine' },
      });
    const readiness = async () =>
      (await h.request({ method: 'GET', url: '/readyz' })).json<{ replica: string }>().replica;
    const database = () => h.runtime.replication.parts().database;
    const waitFor = async (what: string, done: () => Promise<boolean>) => {
      for (let i = 0; i < 200; i++) {
        if (await done()) return;
        await sleep(100);
      }
      throw new Error(`timed out waiting for ${what}`);
    };

    const first = await create('Before', 'key-before');
    assert.equal(first.statusCode, 201, first.body);
    await waitFor('the receiver to be seen in step', async () => (await readiness()) === 'ok');
    assert.equal(database()?.details.receiverConnected, true);

    await receiver.stop();
    // A write under way as the receiver goes: answered 503 within seconds, not held forever.
    const started = Date.now();
    const held = await create('Held', 'key-held');
    const heldSeconds = (Date.now() - started) / 1000;
    assert.equal(held.statusCode, 503, held.body);
    assert.equal(held.json<{ error: { code: string } }>().error.code, 'unavailable');
    assert.ok(heldSeconds < 10, `answered after ${heldSeconds.toFixed(1)} s`);
    assert.match(held.headers['retry-after']?.toString() ?? '', /^\d+$/);
    await waitFor('/readyz to say degraded', async () => (await readiness()) === 'degraded');
    assert.match(database()?.lastError ?? '', /WAL receiver is not connected/);

    // Once it is known to be away, writes are refused before they start: nothing is written.
    const refused = await create('Refused', 'key-refused');
    assert.equal(refused.statusCode, 503, refused.body);
    assert.match(
      refused.json<{ error: { message: string } }>().error.message,
      /WAL receiver is not connected.*Nothing was saved/,
    );
    const named = async (name: string) =>
      Number(
        await p.sql(
          `select count(*) from patients where organization_id = '${admin.organizationId}' and name = '${name}'`,
        ),
      );
    assert.equal(await named('Refused'), 0);
    // A chart read is audited, and its audit event is a write: synchronous mode refuses it too
    // rather than let an access go unrecorded on the replica (docs/DISASTER-RECOVERY.md).
    const list = await h.request({ method: 'GET', url: '/api/v1/patients', token: admin.token });
    assert.equal(list.statusCode, 503, list.body);
    assert.match(list.json<{ error: { message: string } }>().error.message, /WAL receiver/);
    assert.equal((await h.request({ method: 'GET', url: '/readyz' })).statusCode, 200);

    receiver = await receive();
    await waitFor('/readyz to say ok again', async () => (await readiness()) === 'ok');
    for (const [name, key] of [
      ['Held', 'key-held'],
      ['Refused', 'key-refused'],
      ['After', 'key-after'],
    ] as const) {
      const retried = await create(name, key);
      assert.equal(retried.statusCode, 201, `${name}: ${retried.body}`);
      assert.equal(await named(name), 1, `${name} exists exactly once`);
    }
    assert.equal(await named('Before'), 1);
  },
);
