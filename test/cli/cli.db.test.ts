// The command line as an operator uses it: bad settings, first-run setup link, migrate, and a
// graceful SIGTERM that lets in-flight requests finish.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { PASSWORD } from '../helpers/harness.js';
import { api, runCli, startServer } from '../helpers/process.js';

test('a bad setting stops the start with one line naming it, exit code 2', async () => {
  const result = await runCli(['serve'], {
    CARETRAIL_PORT: 'eighty',
    CARETRAIL_DATA_DIR: tempDir(),
  });
  assert.equal(result.code, 2);
  assert.equal(
    result.stderr,
    'caretrail: Invalid configuration: CARETRAIL_PORT must be an integer between 0 and 65535 (got "eighty").\n',
  );
  const unknown = await runCli(['serve', '--prot', '1'], {});
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^caretrail: .*'--prot'.*\n$/);
});

test('help lists the commands', async () => {
  const result = await runCli(['help'], {});
  assert.equal(result.code, 0);
  assert.match(result.stdout, /serve/);
  assert.match(result.stdout, /admin create --org NAME --email EMAIL --password-file FILE/);
});

describeEachEngine('caretrail serve', ({ url, engine }) => {
  test(
    'first start prints a one-time setup link that creates the first admin; migrate then has nothing to do',
    { timeout: 60_000 },
    async () => {
      const dataDir = tempDir();
      const env = { CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: dataDir };
      const server = await startServer(env);
      try {
        const deadline = Date.now() + 10_000;
        while (!/setup#token=/.test(server.output()) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 50));
        const match = /(http:\/\/\S+\/setup)#token=(\S+)/.exec(server.output());
        assert.ok(match?.[1] && match[2], `no setup link printed:\n${server.output()}`);
        const [, pageUrl, token] = match;
        assert.equal(new URL(pageUrl).origin, server.baseUrl, 'the link points at this server');
        assert.equal((await fetch(pageUrl)).status, 200);
        const created = await api(server.baseUrl, 'POST', '/api/v1/setup', {
          body: {
            token,
            organizationName: 'Harbour Vets',
            name: 'First Admin',
            email: 'first@example.test',
            password: PASSWORD,
          },
        });
        assert.equal(created.status, 201);
        const login = await api(server.baseUrl, 'POST', '/api/v1/auth/login', {
          body: { email: 'first@example.test', password: PASSWORD },
        });
        assert.equal(login.status, 200);
        const health = await fetch(`${server.baseUrl}/healthz`);
        assert.equal(health.status, 200);
        assert.equal((await fetch(`${server.baseUrl}/readyz`)).status, 200);
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
      const migrate = await runCli(['migrate'], env);
      assert.equal(migrate.code, 0, migrate.stderr);
      assert.equal(migrate.stdout, 'The database schema is up to date.\n');
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  );

  test(
    'SIGTERM lets requests already being processed finish, then exits 0',
    { timeout: 60_000 },
    async () => {
      const dataDir = tempDir();
      const env = { CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: dataDir };
      const pw = path.join(dataDir, 'pw');
      fs.writeFileSync(pw, PASSWORD);
      const admin = await runCli(
        [
          'admin',
          'create',
          '--org',
          'Term Clinic',
          '--email',
          'term-admin@example.test',
          '--password-file',
          pw,
        ],
        env,
      );
      assert.equal(admin.code, 0, admin.stderr);
      const server = await startServer(env);
      // A failed assertion must not leave the server running: its pipes would keep this file's
      // process (and the whole test run) waiting for it.
      try {
        const adminLogin = await api<{ token: string }>(
          server.baseUrl,
          'POST',
          '/api/v1/auth/login',
          { body: { email: 'term-admin@example.test', password: PASSWORD } },
        );
        await api(server.baseUrl, 'POST', '/api/v1/users', {
          token: adminLogin.json.token,
          body: {
            email: 'term-vet@example.test',
            name: 'Vet',
            role: 'clinician',
            password: PASSWORD,
          },
        });
        const vet = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
          body: { email: 'term-vet@example.test', password: PASSWORD },
        });
        const patient = await api<{ id: string }>(server.baseUrl, 'POST', '/api/v1/patients', {
          token: vet.json.token,
          body: { name: 'Termite', species: 'canine' },
        });
        assert.equal(patient.status, 201);

        // Hold the database's write lock from outside so that note creates stall mid-request.
        let release: () => Promise<void>;
        let arrived: () => Promise<boolean> = () => Promise.resolve(true);
        if (engine === 'postgres') {
          const client = new pg.Client({ connectionString: url() });
          await client.connect();
          await client.query('begin');
          // The patient's row: a note's foreign key check waits for it (audit events no longer
          // lock anything shared on PostgreSQL).
          await client.query('select * from patients where id = $1 for update', [patient.json.id]);
          const watcher = new pg.Client({ connectionString: url() });
          await watcher.connect();
          // Every request has reached the server once each waits for the lock in a backend.
          arrived = async () => {
            const { rows } = await watcher.query<{ n: string }>(
              `select count(*) as n from pg_stat_activity
                where datname = current_database() and wait_event_type = 'Lock'`,
            );
            return Number(rows[0]?.n ?? 0) >= 8;
          };
          release = async () => {
            await watcher.end();
            await client.query('commit');
            await client.end();
          };
        } else {
          const raw = new BetterSqlite3(url().slice('sqlite:'.length));
          raw.exec('begin immediate');
          release = () => {
            raw.exec('commit');
            raw.close();
            return Promise.resolve();
          };
        }
        const inFlight = Array.from({ length: engine === 'postgres' ? 8 : 1 }, (_, i) =>
          api<{ id: string }>(server.baseUrl, 'POST', `/api/v1/patients/${patient.json.id}/notes`, {
            token: vet.json.token,
            body: { kind: 'visit', body: `in flight ${i}` },
          }),
        );
        // The requests reach the server and wait for the lock (on a busy machine that can take a
        // while: a request that arrives after SIGTERM is rightly refused with 503).
        await new Promise((r) => setTimeout(r, 400));
        for (let waited = 0; !(await arrived()); waited += 100) {
          assert.ok(waited < 20_000, 'the in-flight requests never reached the database');
          await new Promise((r) => setTimeout(r, 100));
        }
        server.child.kill('SIGTERM');
        await new Promise((r) => setTimeout(r, 300));
        await release();
        const results = await Promise.all(inFlight);
        const exit = await server.exited;
        assert.deepEqual(
          results.map((r) => r.status),
          results.map(() => 201),
          'every in-flight request completed',
        );
        assert.equal(exit.code, 0, server.output().split('\n').slice(-8).join('\n'));
        assert.match(server.output(), /"msg":"stopped cleanly"/);
        await assert.rejects(fetch(`${server.baseUrl}/healthz`), 'the server no longer listens');
      } finally {
        if (server.child.exitCode === null && server.child.signalCode === null)
          server.child.kill('SIGKILL');
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  );
});
