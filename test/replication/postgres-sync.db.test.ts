// RPO 0 on PostgreSQL, on real processes: pg_receivewal streams WAL into a spool and is the
// server's synchronous standby, so a commit waits until its WAL is on the spool's disk (it hangs
// while the receiver is away); after the database machine is lost (an immediate stop right after
// the last acknowledged commit), the repository plus the spool restore every acknowledged row.
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
import {
  archivedCluster,
  assertCanRun,
  needsPgBackRest,
  sleep,
  type ArchivedCluster,
} from './postgres-helpers.js';

let primary: ArchivedCluster | null = null;
const receivers: PgReceiver[] = [];
after(async () => {
  for (const r of receivers) await r.stop().catch(() => undefined);
  await primary?.remove();
});

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
