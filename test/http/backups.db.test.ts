// The Backups page's API (GET /api/v1/admin/backups): admins only and audited; replication off
// and its warning; parts behind or unreachable named in the warnings; the last drill's figures
// from the data folder's last-drill.json (missing, damaged, old, failed); and on SQLite a real
// replicating server whose folder replica goes away, asynchronously and synchronously.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DrillResult } from '../../src/replication/drill.js';
import type { ReplicaPartStatus } from '../../src/replication/index.js';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { errorOf } from '../helpers/api.js';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

interface BackupsJson {
  replication: 'off' | 'ok' | 'degraded';
  parts: Record<string, ReplicaPartStatus>;
  lastDrill: DrillResult | null;
  warnings: string[];
}

const URL = '/api/v1/admin/backups';

/** A drill as `caretrail dr drill` writes it (the shape is the command's own type). */
function drill(startedAt: Date, changes: Partial<DrillResult> = {}): DrillResult {
  return {
    engine: 'sqlite',
    replica: 'file:/srv/replica',
    mode: 'async',
    startedAt: startedAt.toISOString(),
    loadSeconds: 7.4,
    acknowledged: { notes: 412, documents: 37 },
    missing: { notes: 2, documents: 0 },
    rpoSeconds: 0.31,
    rtoSeconds: 4.2,
    restoreSeconds: 1.6,
    restoredTo: startedAt.toISOString(),
    audit: { ok: true, message: 'intact: 1377 events checked' },
    files: { checked: 37, ok: 37, bad: 0 },
    objectives: { rpoSeconds: 1, rtoSeconds: 60 },
    passed: true,
    problems: [],
    ...changes,
  };
}

const DAY = 86_400_000;

describeEachEngine('backups page API', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let drillFile: string;
  const get = (who?: SignedIn) =>
    h.request({ method: 'GET', url: URL, ...(who ? { token: who.token } : {}) });
  const backups = async (who: SignedIn = admin): Promise<BackupsJson> => {
    const res = await get(who);
    assert.equal(res.statusCode, 200, res.body);
    return res.json<BackupsJson>();
  };

  before(async () => {
    h = await startHarness(url());
    admin = await h.newOrganization();
    drillFile = path.join(h.config.dataDir, 'last-drill.json');
  });
  after(async () => {
    await h.close();
  });

  test('replication off and no drill: both warnings, nothing else', async () => {
    const body = await backups();
    assert.equal(body.replication, 'off');
    assert.deepEqual(body.parts, {});
    assert.equal(body.lastDrill, null);
    assert.equal(body.warnings.length, 2, body.warnings.join('\n'));
    assert.match(body.warnings[0] ?? '', /^Replication is off: .*set CARETRAIL_REPLICA_URL/i);
    assert.match(body.warnings[1] ?? '', /No disaster-recovery drill .*caretrail dr drill/);
  });

  test('only admins: every other role is 404 like a missing resource, anonymous 401; all audited', async () => {
    for (const role of ['clinician', 'nurse', 'reception', 'auditor'] as const) {
      const person = await h.newUser(admin, role);
      const res = await get(person);
      assert.equal(res.statusCode, 404, `${role}: ${res.body}`);
      assert.equal(errorOf(res).code, 'not_found');
      assert.doesNotMatch(res.body, /replica|drill|backup/i, `${role} learns nothing`);
      const events = (await listAuditEvents(h.runtime.db.read, { actorUserId: person.userId }))
        .map((e) => e.event)
        .filter((e) => e.type === 'backups.status');
      assert.deepEqual(
        events.map((e) => [e.action, e.outcome]),
        [['R', 'denied']],
      );
    }
    assert.equal((await get()).statusCode, 401);
    // An admin of another clinic sees the same server-wide figures.
    const otherAdmin = await h.newOrganization();
    assert.equal((await backups(otherAdmin)).replication, 'off');

    const reads = (await listAuditEvents(h.runtime.db.read, { actorUserId: admin.userId }))
      .map((e) => e.event)
      .filter((e) => e.type === 'backups.status');
    assert.ok(reads.length >= 1);
    assert.deepEqual(
      reads.map((e) => [e.action, e.outcome, e.patientId, e.detail]),
      reads.map(() => ['R', 'success', null, { replication: 'off', warnings: 2 }]),
    );
  });

  test('a last-drill.json in the data folder: its figures come back', async () => {
    const result = drill(new Date(h.clock.now().getTime() - 3 * DAY));
    fs.writeFileSync(drillFile, JSON.stringify(result, null, 2));
    const body = await backups();
    assert.deepEqual(body.lastDrill, result);
    assert.ok(!body.warnings.some((w) => /drill/.test(w)), body.warnings.join('\n'));
  });

  test('a failed drill, and one older than 30 days, are warnings', async () => {
    const failed = drill(new Date(h.clock.now().getTime() - 40 * DAY), {
      passed: false,
      rtoSeconds: 75.5,
      problems: ['RTO 75.5 s is over the objective of 60 s'],
    });
    fs.writeFileSync(drillFile, JSON.stringify(failed));
    const body = await backups();
    assert.equal(body.lastDrill?.passed, false);
    const day = failed.startedAt.slice(0, 10);
    assert.ok(
      body.warnings.includes(
        `The last disaster-recovery drill (${day}) failed: RTO 75.5 s is over the objective of 60 s. Fix the cause and run “caretrail dr drill” again.`,
      ),
      body.warnings.join('\n'),
    );
    assert.ok(
      body.warnings.includes(
        `The last disaster-recovery drill was 40 days ago (${day}): run “caretrail dr drill” at least every 30 days.`,
      ),
      body.warnings.join('\n'),
    );
  });

  test('a damaged or unreadable drill file: no figures, a warning, no path anywhere', async () => {
    for (const damage of ['text', 'shape', 'folder'] as const) {
      fs.rmSync(drillFile, { recursive: true, force: true });
      if (damage === 'text') fs.writeFileSync(drillFile, '{"engine": "sqlite", "startedAt');
      if (damage === 'shape') fs.writeFileSync(drillFile, JSON.stringify({ passed: true }));
      if (damage === 'folder') fs.mkdirSync(drillFile);
      const res = await get(admin);
      assert.equal(res.statusCode, 200, `${damage}: ${res.body}`);
      const body = res.json<BackupsJson>();
      assert.equal(body.lastDrill, null, damage);
      assert.ok(
        body.warnings.includes(
          'The record of the last disaster-recovery drill cannot be read: run “caretrail dr drill” again.',
        ),
        `${damage}: ${body.warnings.join('\n')}`,
      );
      assert.ok(!res.body.includes(h.config.dataDir), `${damage}: the data folder is not named`);
    }
    fs.rmSync(drillFile, { recursive: true, force: true });
  });

  test('parts registered with the monitor: behind and unreachable are named, paths left out', async () => {
    let files: ReplicaPartStatus = {
      state: 'ok',
      lagSeconds: 0.2,
      lastError: null,
      details: { mode: 'async', lastShipAt: h.clock.now().toISOString() },
    };
    h.runtime.replication.register('files', () => files);
    let body = await backups();
    assert.equal(body.replication, 'ok');
    assert.equal(body.parts.files?.state, 'ok');
    assert.ok(!body.warnings.some((w) => /Replication is off|replica of/.test(w)));

    files = { state: 'behind', lagSeconds: 42.4, lastError: null, details: { mode: 'async' } };
    body = await backups();
    assert.equal(body.replication, 'degraded');
    assert.equal(body.parts.files?.lagSeconds, 42.4);
    assert.ok(
      body.warnings.some((w) => w.startsWith('The replica of the files is 42 seconds behind')),
      body.warnings.join('\n'),
    );

    const lastErrorAt = h.clock.now().toISOString();
    const error = "EACCES: permission denied, open '/mnt/offsite/caretrail/.tmp/5f2a.part'";
    files = {
      state: 'unreachable',
      lagSeconds: 130,
      lastError: error,
      details: { mode: 'sync', lastError: error, lastErrorAt },
    };
    const res = await get(admin);
    body = res.json<BackupsJson>();
    assert.equal(body.replication, 'degraded');
    assert.equal(body.parts.files?.lastError, "EACCES: permission denied, open '…'");
    assert.equal(body.parts.files.details.lastError, "EACCES: permission denied, open '…'");
    assert.ok(!res.body.includes('/mnt/offsite'), 'no path of the server in the answer');
    assert.ok(
      body.warnings.includes(
        `The replica of the files cannot be reached (since ${lastErrorAt.slice(0, 10)} ${lastErrorAt.slice(11, 19)} UTC): EACCES: permission denied, open '…'. ` +
          'Changes are not being copied off this server; check the replica’s disk or bucket, the network and the credentials.',
      ),
      body.warnings.join('\n'),
    );
    assert.ok(
      body.warnings.some((w) =>
        w.startsWith(
          'Writes are being refused: this server acknowledges a change only once it is on the replica (CARETRAIL_REPLICA_SYNC=true), and the replica of the files cannot be reached.',
        ),
      ),
      body.warnings.join('\n'),
    );
  });
});

// A server that really replicates (SQLite ships its own log; PostgreSQL uses pgBackRest).
describe('backups page API with SQLite replication to a folder', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  async function replicatingServer(sync: boolean) {
    const dataDir = tempDir('caretrail-backups-');
    const replicaDir = tempDir('caretrail-replica-');
    dirs.push(dataDir, replicaDir);
    const h = await startHarness(`sqlite:${path.join(dataDir, 'caretrail.db')}`, {
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_REPLICA_URL: `file:${replicaDir}`,
      CARETRAIL_REPLICA_SYNC: String(sync),
    });
    h.runtime.startJobs();
    const admin = await h.newOrganization();
    return { h, admin, replicaDir };
  }

  const read = (h: Harness, admin: SignedIn) =>
    h.request({ method: 'GET', url: URL, token: admin.token });

  async function until(
    h: Harness,
    admin: SignedIn,
    accept: (body: BackupsJson) => boolean,
  ): Promise<BackupsJson> {
    let last = '';
    for (let i = 0; i < 200; i++) {
      const res = await read(h, admin);
      last = res.body;
      if (res.statusCode === 200 && accept(res.json<BackupsJson>())) return res.json<BackupsJson>();
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`not reached; last answer: ${last}`);
  }

  /** The replica's folder replaced by a file: every write to it fails. */
  function breakReplica(replicaDir: string) {
    fs.rmSync(replicaDir, { recursive: true, force: true });
    fs.writeFileSync(replicaDir, 'not a folder');
  }

  test('asynchronous: ok with its generation and snapshot, then unreachable with a warning', async () => {
    const { h, admin, replicaDir } = await replicatingServer(false);
    try {
      const ok = await until(
        h,
        admin,
        (b) =>
          b.parts.database?.state === 'ok' &&
          typeof b.parts.database.details.generation === 'string' &&
          typeof b.parts.database.details.lastSnapshotAt === 'string',
      );
      assert.equal(ok.replication, 'ok');
      const details = ok.parts.database?.details ?? {};
      assert.equal(details.mode, 'async');
      assert.equal(details.retentionDays, 35);
      assert.equal(typeof details.lastSnapshotAt, 'string');
      assert.ok(!ok.warnings.some((w) => /Replication is off|replica of/.test(w)));

      breakReplica(replicaDir);
      // Every read of the page is itself a write (its audit event), so the log keeps moving.
      const down = await until(h, admin, (b) => b.parts.database?.state === 'unreachable');
      assert.equal(down.replication, 'degraded');
      const warning = down.warnings.find((w) => w.startsWith('The replica of the database'));
      assert.ok(warning, down.warnings.join('\n'));
      assert.match(
        warning,
        /cannot be reached \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\): .+\. Changes are not being copied/,
      );
      assert.ok(!down.warnings.some((w) => w.startsWith('Writes are being refused')));
      // Errors leave paths out; where the replica is stays in the details (the operator's setting).
      const part = down.parts.database;
      assert.ok(part?.lastError && !part.lastError.includes(replicaDir), part?.lastError ?? '');
      assert.ok(!JSON.stringify(down.warnings).includes(replicaDir), warning);
      assert.equal(part.details.destination, `file:${replicaDir}`);
    } finally {
      await h.close();
    }
  });

  test('synchronous: while the replica is down no write is taken, so the page says why with 503', async () => {
    const { h, admin, replicaDir } = await replicatingServer(true);
    try {
      await until(h, admin, (b) => b.parts.database?.details.generation !== null);
      breakReplica(replicaDir);
      let res = await read(h, admin);
      for (let i = 0; i < 100 && res.statusCode === 200; i++) {
        await new Promise((r) => setTimeout(r, 50));
        res = await read(h, admin);
      }
      // Reading the page is audited, and the audit event is a write refused like any other.
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(errorOf(res).code, 'unavailable');
      assert.match(errorOf(res).message, /replica cannot be reached.*CARETRAIL_REPLICA_SYNC/);
      assert.ok(!res.body.includes(replicaDir));
    } finally {
      await h.close();
    }
  });
});
