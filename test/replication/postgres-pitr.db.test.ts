// PostgreSQL disaster recovery with pgBackRest, on real processes: a private PostgreSQL 15
// cluster archiving into a temporary repository. Setup changes nothing without --apply; a
// restore to a moment between two writes holds the first only, a restore of the latest state
// holds both; the repository reveals neither the data nor the pass; a damaged or missing WAL
// segment is named; moments outside the window and occupied folders are refused.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { repositoryCipherPass } from '../../src/replication/postgres/cipher-pass.js';
import {
  createPrivateCluster,
  freePort,
  localCluster,
  pgBinDir,
} from '../../src/replication/postgres/cluster.js';
import {
  PgReplicationError,
  pgBackup,
  pgReplicateSetup,
  pgReplicateStatus,
  pgRestore,
  pgVerify,
} from '../../src/replication/postgres/index.js';
import { listArchivedWal } from '../../src/replication/postgres/wal-names.js';
import { tempDir } from '../helpers/engines.js';
import { runCli } from '../helpers/process.js';
import {
  archivedCluster,
  assertCanRun,
  filesUnder,
  needsPgBackRest,
  sleep,
  type ArchivedCluster,
} from './postgres-helpers.js';

let primary: ArchivedCluster | null = null;
const restoredDirs: string[] = [];

before(async () => {
  if (needsPgBackRest(0).skip === false) primary = await archivedCluster();
});
after(async () => {
  for (const dir of restoredDirs) {
    await localCluster({
      dataDir: dir,
      port: 0,
      socketDir: '',
      user: 'postgres',
      bin: pgBinDir(),
      logFile: '',
    })
      .stop('immediate')
      .catch(() => undefined);
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  }
  await primary?.remove();
});

function ready(): ArchivedCluster {
  assertCanRun();
  if (!primary) throw new Error('the archived cluster did not start');
  return primary;
}

/** A folder for a restored data directory (removed, with its server, after the tests). */
function restoreTarget(): string {
  const parent = tempDir('caretrail-pgdr-restored-');
  fs.chmodSync(parent, 0o755);
  const dir = path.join(parent, 'data');
  restoredDirs.push(dir);
  return dir;
}

/** Waits until the repository holds a WAL segment that arrived after `moment`. */
async function waitArchivedAfter(repository: string, moment: Date): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (listArchivedWal(repository).some((s) => s.archivedAt > moment)) return;
    await sleep(100);
  }
  throw new Error(`no WAL segment reached the repository after ${moment.toISOString()}`);
}

/** Rows of the table `t` in a restored server. */
async function rowsOf(dataDir: string, port: number): Promise<string[]> {
  const cluster = localCluster({
    dataDir,
    port,
    socketDir: path.join(ready().dir, 'pg'),
    user: 'postgres',
    bin: pgBinDir(),
    logFile: '',
  });
  const out = await cluster.query('select x from t order by x', 'caretrail');
  return out.split('\n').filter((l) => l !== '');
}

async function stopRestored(dataDir: string): Promise<void> {
  await localCluster({
    dataDir,
    port: 0,
    socketDir: '',
    user: 'postgres',
    bin: pgBinDir(),
    logFile: '',
  }).stop('fast');
}

test(
  'setup without --apply changes nothing and prints the ALTER SYSTEM lines; with --apply and the restart it asks for, WAL reaches the repository',
  needsPgBackRest(120_000),
  async () => {
    assertCanRun();
    const dir = tempDir('caretrail-pgdr-setup-');
    fs.chmodSync(dir, 0o755);
    const cluster = await createPrivateCluster({ dir: path.join(dir, 'pg') });
    try {
      const key = Buffer.alloc(32, 7);
      const config = loadConfig({
        CARETRAIL_DATABASE_URL: cluster.url('postgres'),
        CARETRAIL_REPLICA_URL: `file:${path.join(dir, 'repository')}`,
        CARETRAIL_MASTER_KEY: key.toString('base64'),
        CARETRAIL_REPLICA_RETENTION_DAYS: '14',
      });
      const options = {
        configFile: path.join(dir, 'etc', 'pgbackrest.conf'),
        stateDir: path.join(dir, 'pgbackrest'),
      };
      const dry = await pgReplicateSetup(config, options);
      assert.deepEqual(
        dry.changes.map((c) => c.name),
        ['archive_mode', 'archive_command', 'archive_timeout'],
      );
      assert.ok(dry.changes.every((c) => c.sql.startsWith(`ALTER SYSTEM SET ${c.name} = '`)));
      assert.match(
        dry.changes.find((c) => c.name === 'archive_command')?.sql ?? '',
        /pgbackrest --config=\S+pgbackrest\.conf --stanza=caretrail archive-push %p/,
      );
      assert.equal(dry.applied.length, 0);
      assert.equal(dry.checked, false);
      assert.equal((await cluster.query('show archive_mode')).trim(), 'off', 'nothing changed');
      assert.equal((await cluster.query('show archive_command')).trim(), '(disabled)');

      // The configuration file: the pass derived from the master key, private to postgres.
      const text = fs.readFileSync(options.configFile, 'utf8');
      const pass = repositoryCipherPass(key);
      assert.ok(text.includes(`repo1-cipher-pass=${pass}`));
      assert.match(text, /^repo1-cipher-type=aes-256-cbc$/m);
      assert.match(text, /^repo1-retention-full-type=time$/m);
      assert.match(text, /^repo1-retention-full=14$/m);
      assert.match(text, new RegExp(`^pg1-path=${cluster.dataDir}$`, 'm'));
      const stat = fs.statSync(options.configFile);
      assert.equal(stat.mode & 0o777, 0o600);
      assert.equal(stat.uid, fs.statSync(cluster.dataDir).uid, 'owned by the cluster owner');

      const applied = await pgReplicateSetup(config, { ...options, apply: true });
      assert.equal(applied.applied.length, 3);
      assert.equal(applied.restartNeeded, true, 'archive_mode waits for a restart');
      assert.equal(applied.checked, false);
      await cluster.stop();
      await cluster.start();
      const done = await pgReplicateSetup(config, options);
      assert.deepEqual(done.changes, []);
      assert.equal(done.checked, true, 'pgbackrest check: a WAL segment reached the repository');
      const repoFiles = filesUnder(path.join(dir, 'repository'));
      assert.ok(repoFiles.some((f) => /archive\/caretrail\/15-1\/.+\.zst$/.test(f)));
      for (const file of repoFiles)
        assert.ok(!fs.readFileSync(file).includes(pass), `${file} does not hold the pass`);
    } finally {
      await cluster.stop('immediate').catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'a restore to a moment between two writes holds the first only; a restore of the latest state holds both',
  needsPgBackRest(180_000),
  async () => {
    const p = ready();
    await p.sql('create table t (x text)');
    await pgBackup(p.config, { ...p.options, type: 'full' });
    // Backup times are whole seconds: the first write lands after the earliest restorable moment.
    await sleep(1100);
    await p.sql("insert into t values ('first')");
    const firstAt = new Date((await p.sql('select clock_timestamp()')).trim());
    await sleep(1200);
    await p.sql("insert into t values ('second')");
    const secondAt = new Date((await p.sql('select clock_timestamp()')).trim());
    await waitArchivedAfter(p.repository, secondAt);

    const to = restoreTarget();
    const between = new Date(firstAt.getTime() + 500);
    const port = await freePort();
    const atReport = await pgRestore(p.config, { to, at: between.toISOString(), port });
    assert.deepEqual(await rowsOf(to, port), ['first']);
    assert.equal(atReport.target, between.toISOString());
    assert.ok(atReport.restoredTo !== null);
    const restoredTo = new Date(atReport.restoredTo);
    assert.ok(restoredTo <= between && restoredTo >= new Date(firstAt.getTime() - 1000));
    assert.ok(atReport.walFromRepository > 0);
    assert.ok(atReport.durationSeconds > 0);
    await stopRestored(to);

    // A configuration kept outside the data directory (Debian's layout) is copied in, without
    // its data_directory line (which would start PostgreSQL on the old directory).
    const confDir = tempDir('caretrail-pgdr-conf-');
    for (const name of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf'])
      fs.copyFileSync(path.join(p.cluster.dataDir, name), path.join(confDir, name));
    fs.appendFileSync(
      path.join(confDir, 'postgresql.conf'),
      "\ndata_directory = '/nonexistent/old-cluster'\n",
    );
    const port2 = await freePort();
    const latest = await pgRestore(p.config, {
      to,
      force: true,
      port: port2,
      configFrom: confDir,
    }).finally(() => {
      fs.rmSync(confDir, { recursive: true, force: true });
    });
    assert.match(
      fs.readFileSync(path.join(to, 'postgresql.conf'), 'utf8'),
      /^# \(caretrail restore\) data_directory =/m,
    );
    assert.deepEqual(await rowsOf(to, port2), ['first', 'second']);
    assert.equal(latest.target, 'latest');
    assert.ok(new Date(latest.restoredTo ?? 0) >= new Date(secondAt.getTime() - 1000));
    await stopRestored(to);
  },
);

test(
  'status: the newest backup, the newest archived WAL and the lag; archiving that fails is reported',
  needsPgBackRest(60_000),
  async () => {
    const p = ready();
    const status = await pgReplicateStatus(p.config, p.options);
    assert.deepEqual(status.errors, []);
    assert.equal(status.engine, 'postgres');
    assert.equal(status.repository, `file:${p.repository}`);
    assert.equal(status.retentionDays, 35);
    assert.ok(status.backups >= 1);
    assert.ok(status.lastBackupAt !== null && status.lastBackup !== null);
    assert.ok(status.lastBackup.sizeBytes > status.lastBackup.repositoryBytes);
    assert.ok(status.earliestRestorableAt !== null);
    assert.ok(new Date(status.earliestRestorableAt) > new Date(status.lastBackupAt));
    assert.ok(status.lastArchivedAt !== null && status.lastArchivedWal !== null);
    assert.ok(status.lagSeconds !== null && status.lagSeconds <= 60);

    await p.cluster.query("alter system set archive_command = 'false'");
    await p.cluster.query('select pg_reload_conf()');
    try {
      await p.sql("insert into t values ('not archived'); select pg_switch_wal()");
      await sleep(1500);
      const broken = await pgReplicateStatus(p.config, p.options);
      assert.ok(broken.errors.some((e) => e.startsWith('archive_command is "false"')));
      assert.ok(broken.errors.some((e) => e.startsWith('archiving is failing')));
      assert.ok(broken.lagSeconds !== null && broken.lagSeconds > 0, 'a finished segment waits');
    } finally {
      await pgReplicateSetup(p.config, { ...p.options, apply: true });
    }
    await sleep(1500);
    await p.sql('delete from t where x = $$not archived$$');
    assert.deepEqual((await pgReplicateStatus(p.config, p.options)).errors, []);
  },
);

test(
  'the repository reveals no patient data and no pass: a marker in the database is in its WAL but in no repository file',
  needsPgBackRest(120_000),
  async () => {
    const p = ready();
    const marker = `CARETRAIL-PLAINTEXT-MARKER-${Date.now()}`;
    await p.sql(`insert into t values ('${marker}'); checkpoint`);
    const writtenAt = new Date();
    await pgBackup(p.config, { ...p.options, type: 'incr' });
    await waitArchivedAfter(p.repository, writtenAt);
    const walFiles = filesUnder(path.join(p.cluster.dataDir, 'pg_wal'));
    assert.ok(
      walFiles.some((f) => fs.readFileSync(f).includes(marker)),
      'control: the marker is readable in the server WAL',
    );
    const pass = fs
      .readFileSync(p.options.configFile, 'utf8')
      .match(/^repo1-cipher-pass=(.+)$/m)?.[1];
    assert.ok(pass !== undefined && pass.length >= 40);
    const files = filesUnder(p.repository);
    assert.ok(files.length > 100);
    for (const file of files) {
      const bytes = fs.readFileSync(file);
      assert.ok(!bytes.includes(marker), `${file} holds the marker`);
      assert.ok(!bytes.includes(pass), `${file} holds the pass`);
      assert.equal(bytes.subarray(0, 8).toString('latin1'), 'Salted__', `${file} is encrypted`);
    }
  },
);

test(
  'restore refuses a moment in the future, outside retention or before the first backup, an occupied folder without --force, a running server even with it, and another master key',
  needsPgBackRest(120_000),
  async () => {
    const p = ready();
    const to = restoreTarget();
    const refused = async (options: Parameters<typeof pgRestore>[1], pattern: RegExp) => {
      const port = await freePort();
      await assert.rejects(pgRestore(p.config, { port, ...options }), (err: unknown) => {
        assert.ok(err instanceof PgReplicationError, String(err));
        assert.match(err.message, pattern);
        assert.doesNotMatch(err.message, /\n/);
        return true;
      });
    };
    await refused({ to, at: new Date(Date.now() + 60_000).toISOString() }, /is in the future/);
    await refused(
      { to, at: new Date(Date.now() - 36 * 86_400_000).toISOString() },
      /outside the retention window of 35 days/,
    );
    await refused(
      { to, at: new Date(Date.now() - 86_400_000).toISOString() },
      /before the earliest restorable moment/,
    );
    await refused({ to, at: 'yesterday' }, /must be an ISO 8601 moment/);
    assert.ok(!fs.existsSync(to), 'nothing was created');

    fs.mkdirSync(to, { recursive: true });
    fs.writeFileSync(path.join(to, 'keep-me'), 'important');
    await refused({ to }, /is not empty: restore into a new folder, or pass --force/);
    assert.equal(fs.readFileSync(path.join(to, 'keep-me'), 'utf8'), 'important');
    await refused({ to: p.cluster.dataDir, force: true }, /belongs to a running PostgreSQL/);

    const otherKey = loadConfig({
      CARETRAIL_DATABASE_URL: p.config.databaseUrl,
      CARETRAIL_REPLICA_URL: p.config.replicaUrl,
      CARETRAIL_MASTER_KEY: Buffer.alloc(32, 9).toString('base64'),
    });
    const port = await freePort();
    await assert.rejects(pgRestore(otherKey, { to, force: true, port }), (err: unknown) => {
      assert.ok(err instanceof PgReplicationError);
      assert.match(err.message, /does not open with any master key/);
      assert.ok(!err.message.includes(repositoryCipherPass(Buffer.alloc(32, 9))));
      return true;
    });
    assert.equal(fs.readFileSync(path.join(to, 'keep-me'), 'utf8'), 'important');
  },
);

test(
  'a damaged WAL segment is named by verify and stops a restore of the latest state, which says so; a missing one is named before anything is restored',
  needsPgBackRest(180_000),
  async () => {
    const p = ready();
    await p.sql("insert into t values ('after damage'); select pg_switch_wal()");
    await waitArchivedAfter(p.repository, new Date());
    await p.sql("insert into t values ('later'); select pg_switch_wal()");
    await waitArchivedAfter(p.repository, new Date());
    const segments = listArchivedWal(p.repository);
    const victim = segments[segments.length - 2];
    assert.ok(victim);
    const original = fs.readFileSync(victim.file);
    const to = restoreTarget();
    try {
      const damaged = Buffer.from(original);
      damaged[Math.floor(damaged.length / 2)] =
        (damaged[Math.floor(damaged.length / 2)] ?? 0) ^ 0xff;
      fs.writeFileSync(victim.file, damaged);
      const verified = await pgVerify(p.config, p.options);
      assert.equal(verified.ok, false);
      assert.deepEqual(
        verified.invalid.map((i) => path.basename(i.file)),
        [path.basename(victim.file)],
      );
      await assert.rejects(pgRestore(p.config, { to, port: await freePort() }), (err: unknown) => {
        assert.ok(err instanceof PgReplicationError, String(err));
        assert.match(err.message, /recovery stopped early/);
        assert.ok(err.message.includes(victim.name), err.message);
        return true;
      });
      fs.writeFileSync(victim.file, original);

      fs.renameSync(victim.file, `${victim.file}.moved`);
      const status = await pgReplicateStatus(p.config, p.options);
      assert.ok(status.errors.some((e) => e.includes(victim.name)));
      assert.deepEqual((await pgVerify(p.config, p.options)).missing, [victim.name]);
      await assert.rejects(
        pgRestore(p.config, { to, force: true, port: await freePort() }),
        (err: unknown) => {
          assert.ok(err instanceof PgReplicationError, String(err));
          assert.equal(
            err.message,
            `WAL segment ${victim.name} is missing from the repository: the latest state cannot be reached (restore with --at before it was written, or put it back)`,
          );
          return true;
        },
      );
    } finally {
      if (fs.existsSync(`${victim.file}.moved`)) fs.renameSync(`${victim.file}.moved`, victim.file);
      fs.writeFileSync(victim.file, original);
    }
    assert.equal((await pgVerify(p.config, p.options)).ok, true);
  },
);

test(
  'the CLI: replicate setup, status and backup print plain lines; restore errors are one line, never a stack or the pass',
  needsPgBackRest(180_000),
  async () => {
    const p = ready();
    const env = {
      CARETRAIL_DATABASE_URL: p.config.databaseUrl,
      CARETRAIL_REPLICA_URL: p.config.replicaUrl,
      CARETRAIL_MASTER_KEY: p.masterKey,
      CARETRAIL_DATA_DIR: path.join(p.dir, 'app'),
      CARETRAIL_AUDIT_SIGNING_KEY: generateKeyPairSync('ed25519')
        .privateKey.export({ format: 'pem', type: 'pkcs8' })
        .toString(),
    };
    const files = ['--pgbackrest-config', p.options.configFile];
    const pass = repositoryCipherPass(Buffer.from(p.masterKey, 'base64'));
    const outputs: string[] = [];
    const cli = async (args: string[]) => {
      const r = await runCli(args, env);
      outputs.push(r.stdout, r.stderr);
      return r;
    };

    const setup = await cli(['replicate', 'setup', ...files]);
    assert.equal(setup.code, 0, setup.stderr);
    assert.match(setup.stdout, /pgbackrest check passed: WAL reaches the repository/);
    const backup = await cli(['replicate', 'backup', '--type', 'incr', ...files]);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stdout, /^Backup \d{8}-\d{6}F_\d{8}-\d{6}I \(incr\): database /m);
    const status = await cli(['replicate', 'status', ...files]);
    assert.equal(status.code, 0, status.stdout);
    assert.match(status.stdout, /last archived WAL: [0-9A-F]{24} at \S+; lag \d+\.\d s/);
    assert.doesNotMatch(status.stdout, /PROBLEM/);
    assert.match(
      status.stdout,
      /^Files and audit anchors: the database holds no Caretrail schema yet/m,
    );

    const to = restoreTarget();
    fs.mkdirSync(to, { recursive: true });
    fs.writeFileSync(path.join(to, 'keep-me'), '');
    const occupied = await cli(['restore', '--to', to, '--pg-port', String(await freePort())]);
    assert.equal(occupied.code, 1);
    assert.equal(
      occupied.stderr,
      `caretrail: ${to} is not empty: restore into a new folder, or pass --force to replace what it holds\n`,
    );
    const future = await cli(['restore', '--to', to, '--force', '--at', '2999-01-01T00:00:00Z']);
    assert.equal(future.code, 1);
    assert.match(future.stderr, /^caretrail: --at 2999-01-01T00:00:00\.000Z is in the future/);
    assert.equal(future.stderr.split('\n').length, 2, 'one line');

    // A Caretrail schema, restored by the CLI, whose audit trail it verifies.
    const migrated = await cli(['migrate']);
    assert.equal(migrated.code, 0, migrated.stderr);
    await p.sql('select pg_switch_wal()');
    await waitArchivedAfter(p.repository, new Date());
    const restorePort = await freePort();
    // No document yet: the files step runs against the restored database and finds none to copy.
    const blobReplica = path.join(p.dir, 'blob-replica');
    fs.mkdirSync(blobReplica, { recursive: true });
    const restored = await cli([
      'restore',
      '--to',
      to,
      '--force',
      '--pg-port',
      String(restorePort),
      '--blobs-from',
      `file:${blobReplica}`,
      '--blobs-to',
      `file:${path.join(p.dir, 'files-restored')}`,
    ]);
    try {
      assert.equal(restored.code, 0, restored.stderr + restored.stdout);
      assert.match(
        restored.stdout,
        /^Restored PostgreSQL into \S+ from backup \S+, target latest:$/m,
      );
      assert.match(
        restored.stdout,
        /^ {2}restored to \d{4}-\d\d-\d\dT\S+Z \(the last transaction/m,
      );
      assert.match(restored.stdout, /^ {2}audit trail: intact \(\d+ events/m);
      assert.match(
        restored.stdout,
        new RegExp(
          `^ {2}files: 0 copied and verified \\(SHA-256\\) into file:${p.dir}/files-restored$`,
          'm',
        ),
      );
      assert.deepEqual(
        await rowsOf(to, restorePort),
        await rowsOf(p.cluster.dataDir, p.cluster.port),
        'every row of the server',
      );
    } finally {
      await stopRestored(to);
    }

    const broken = await runCli(['replicate', 'status', ...files], {
      ...env,
      CARETRAIL_REPLICA_URL: `file:${path.join(p.dir, 'elsewhere')}`,
    });
    outputs.push(broken.stdout, broken.stderr);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /PROBLEM: .*names another repository/);
    // Migrated by now: the files' and anchors' lines read from the database.
    assert.match(broken.stdout, /^Files: no blob replica \(CARETRAIL_BLOB_REPLICA_URL is empty\)/m);
    assert.match(broken.stdout, /^Audit anchors: newest shipped none; 0 waiting$/m);
    for (const text of outputs) assert.ok(!text.includes(pass), 'the pass is never printed');
  },
);
