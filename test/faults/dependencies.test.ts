// Dependencies going away under load: PostgreSQL (its connections killed, then the server itself
// stopped and started: a private instance, so nothing else on the machine is disturbed), the S3
// store (s3rver stopped and started), and the SMTP server and webhook receiver (down, then up).
// While a dependency is down the API answers clear 503s; afterwards it recovers by itself, every
// acknowledged write is there, and no outbox event is lost.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { tempDir } from '../helpers/engines.js';
import { runCli } from '../helpers/process.js';
import { startS3 } from '../helpers/storage.js';
import {
  documentTitle,
  noteBody,
  sendWrite,
  serveBuilt,
  setUpClinic,
  sleep,
  stop,
  type Clinic,
  type SentWrite,
  type Served,
  type WriteKind,
} from './fault-helpers.js';

const CI = process.env.CI === 'true';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Writers that keep sending until stopped, remembering every answer. */
function load(baseUrl: () => string, clinic: Clinic, kinds: WriteKind[], prefix: string) {
  let running = true;
  const sent: SentWrite[] = [];
  const errors: { status: number; body: string; retryAfter: string | null }[] = [];
  const workers = kinds.map(async (kind, w) => {
    for (let i = 0; running; i++) {
      const write = await sendWrite(baseUrl(), clinic, kind, `${prefix}-w${w}-${i}`);
      sent.push(write);
      if (write.state !== 'acked') await sleep(50);
    }
  });
  return {
    sent,
    errors,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}

/** A refused write's answer must be a clear 503 with the error shape, never a stack or a 500. */
async function probeRefusal(
  baseUrl: string,
  clinic: Clinic,
): Promise<{ status: number; body: string; retryAfter: string | null; ms: number }> {
  const started = Date.now();
  const res = await fetch(`${baseUrl}/api/v1/patients/${clinic.patientId}/notes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${clinic.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'clinical', body: 'probe during an outage' }),
  });
  return {
    status: res.status,
    body: await res.text(),
    retryAfter: res.headers.get('retry-after'),
    ms: Date.now() - started,
  };
}

function assertClearOutageAnswers(sent: SentWrite[], log = ''): void {
  const statuses = new Map<number, number>();
  for (const w of sent)
    if (w.status !== undefined && w.state !== 'acked')
      statuses.set(w.status, (statuses.get(w.status) ?? 0) + 1);
  for (const [status, n] of statuses)
    assert.equal(
      status,
      503,
      `${n} writes answered ${status} during the outage (only 503 is clear):\n${log
        .split('\n')
        .filter((l) => l.includes('unhandled error'))
        .map((l) => l.slice(0, 600))
        .join('\n')}`,
    );
}

// ---------------------------------------------------------------------------------------------

const PG_BIN = (() => {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return null;
  const version = fs.readdirSync(root).sort((a, b) => Number(b) - Number(a))[0];
  return version ? path.join(root, version, 'bin') : null;
})();

function privatePostgresProblem(): string | null {
  if (!PG_BIN) return 'PostgreSQL server binaries are not installed';
  if (process.getuid?.() !== 0)
    return 'a private PostgreSQL instance needs root (to run it as postgres)';
  if (spawnSync('runuser', ['--help']).error) return 'runuser is missing';
  return null;
}

/** A throwaway PostgreSQL cluster on its own port, run as the postgres user. */
async function startPrivatePostgres() {
  const dir = tempDir('caretrail-pg-');
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  spawnSync('chown', ['-R', 'postgres:postgres', dir]);
  const asPostgres = (cmd: string, args: string[]) => {
    const r = spawnSync(
      'runuser',
      ['-u', 'postgres', '--', path.join(PG_BIN ?? '', cmd), ...args],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}${r.stdout}`);
  };
  asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on`;
  const start = () => {
    asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', 'start']);
  };
  start();
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const client = new pg.Client(admin);
  await client.connect();
  await client.query('create database caretrail');
  await client.end();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/caretrail`,
    start,
    /** An immediate stop: as if the database server crashed. */
    crash: () => {
      asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    },
    async killConnections(): Promise<number> {
      const c = new pg.Client(admin);
      await c.connect();
      const { rows } = await c.query<{ ok: boolean }>(
        `select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = 'caretrail'`,
      );
      await c.end();
      return rows.length;
    },
    remove: () => {
      spawnSync('runuser', [
        '-u',
        'postgres',
        '--',
        path.join(PG_BIN ?? '', 'pg_ctl'),
        '-D',
        data,
        '-m',
        'immediate',
        'stop',
      ]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

test(
  'PostgreSQL connections killed and the database restarted under load: clear 503s, recovery by itself, nothing acknowledged lost',
  {
    skip: CI ? false : (privatePostgresProblem() ?? false),
    timeout: 180_000,
  },
  async () => {
    const problem = privatePostgresProblem();
    if (problem) throw new Error(`CI=true: ${problem}`);
    const postgres = await startPrivatePostgres();
    const dataDir = tempDir('caretrail-deps-pg-');
    const env = {
      CARETRAIL_DATABASE_URL: postgres.url,
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_PG_POOL_SIZE: '4',
    };
    let server: Served | null = null;
    try {
      server = await serveBuilt(env);
      const base = server.baseUrl;
      const clinic = await setUpClinic(dataDir, env, base);
      const writers = load(() => base, clinic, ['note', 'note', 'note', 'result'], 'pg');
      await sleep(1500);

      // Every connection of the pool killed, three times: the pool reconnects by itself.
      for (let i = 0; i < 3; i++) {
        await postgres.killConnections();
        await sleep(400);
      }
      const ackedBeforeCrash = writers.sent.filter((w) => w.state === 'acked').length;
      await sleep(800);
      assert.ok(
        writers.sent.filter((w) => w.state === 'acked').length > ackedBeforeCrash,
        `writes go on after connections were killed: ${JSON.stringify(writers.sent.slice(-8))}\n${server.output().slice(-3000)}`,
      );

      // The database server goes down hard.
      postgres.crash();
      await sleep(500);
      const health = Date.now();
      assert.equal((await fetch(`${base}/healthz`)).status, 200, 'the process itself is alive');
      const healthMs = Date.now() - health;
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { database: string }).database, 'unavailable');
      const probe = await probeRefusal(base, clinic);
      assert.equal(probe.status, 503, probe.body);
      assert.equal(
        (JSON.parse(probe.body) as { error: { code: string } }).error.code,
        'unavailable',
      );
      assert.doesNotMatch(
        probe.body,
        /\bat \S+:\d+|ECONNREFUSED|pg_|stack/i,
        'no internals in the answer',
      );
      assert.ok(probe.retryAfter !== null, 'tells the client when to retry');
      await sleep(1500);

      postgres.start();
      const restarted = Date.now();
      let recoveredMs = -1;
      const ackedAtRestart = writers.sent.filter((w) => w.state === 'acked').length;
      while (Date.now() - restarted < 30_000) {
        if (writers.sent.filter((w) => w.state === 'acked').length > ackedAtRestart + 5) {
          recoveredMs = Date.now() - restarted;
          break;
        }
        await sleep(100);
      }
      assert.ok(recoveredMs >= 0, 'writes succeed again by themselves after the database is back');
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      await writers.stop();
      assertClearOutageAnswers(writers.sent, server.output());

      // Every acknowledged write is stored exactly once.
      const db = new pg.Client(postgres.url);
      await db.connect();
      try {
        const notes = await db.query<{ body: string; n: string }>(
          `select body, count(*) as n from notes group by body`,
        );
        const results = await db.query<{ id: string; n: string }>(
          `select source_result_id as id, count(*) as n from results group by source_result_id`,
        );
        const noteCount = new Map(notes.rows.map((r) => [r.body, Number(r.n)]));
        const resultCount = new Map(results.rows.map((r) => [r.id, Number(r.n)]));
        for (const w of writers.sent.filter((x) => x.state === 'acked')) {
          const n = w.kind === 'note' ? noteCount.get(noteBody(w.key)) : resultCount.get(w.key);
          assert.equal(n, 1, `acknowledged ${w.kind} ${w.key} stored ${n ?? 0} times`);
        }
      } finally {
        await db.end();
      }
      await stop(server);
      const verify = await runCli(['audit', 'verify'], env);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      const acked = writers.sent.filter((w) => w.state === 'acked').length;
      const refused = writers.sent.filter((w) => w.state === 'refused').length;
      console.log(
        `# PostgreSQL outage: ${acked} writes acknowledged, ${refused} refused with 503 while down, ` +
          `/healthz answered in ${healthMs} ms while down, refusal in ${probe.ms} ms, writes back ${recoveredMs} ms after the database restarted`,
      );
    } finally {
      if (server) await stop(server);
      postgres.remove();
    }
  },
);

// ---------------------------------------------------------------------------------------------

test(
  'the S3 store stopped and started under uploads: clear 503s, recovery by itself, every acknowledged file readable',
  {
    timeout: 180_000,
  },
  async () => {
    const s3 = await startS3();
    const dataDir = tempDir('caretrail-deps-s3-');
    const env = {
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_BLOB_URL: s3.url,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
    const server = await serveBuilt(env);
    try {
      const clinic = await setUpClinic(dataDir, env, server.baseUrl);
      const writers = load(() => server.baseUrl, clinic, ['document', 'document', 'note'], 's3');
      await sleep(1500);
      await s3.stop();
      await sleep(1000);
      const ready = await fetch(`${server.baseUrl}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { files: string }).files, 'unavailable');
      const during = await sendWrite(server.baseUrl, clinic, 'document', `s3-probe-${Date.now()}`);
      assert.equal(during.status, 503, 'an upload while the store is down is a clear 503');
      const noteDuring = await sendWrite(server.baseUrl, clinic, 'note', `s3-note-${Date.now()}`);
      assert.equal(noteDuring.state, 'acked', 'notes do not need the file store');
      await sleep(1000);
      await s3.restart();
      const restarted = Date.now();
      const ackedDocs = () =>
        writers.sent.filter((w) => w.kind === 'document' && w.state === 'acked').length;
      const atRestart = ackedDocs();
      while (ackedDocs() <= atRestart + 2 && Date.now() - restarted < 30_000) await sleep(100);
      const recoveredMs = Date.now() - restarted;
      assert.ok(ackedDocs() > atRestart + 2, 'uploads succeed again by themselves');
      await writers.stop();
      assertClearOutageAnswers(writers.sent);

      const docs = writers.sent.filter((w) => w.kind === 'document' && w.state === 'acked');
      const listed = await fetch(
        `${server.baseUrl}/api/v1/patients/${clinic.patientId}/documents?limit=500`,
        {
          headers: { authorization: `Bearer ${clinic.token}` },
        },
      );
      const items = ((await listed.json()) as { items: { id: string; title: string }[] }).items;
      const byTitle = new Map(items.map((d) => [d.title, d.id]));
      for (const doc of docs) {
        const id = byTitle.get(documentTitle(doc.key));
        assert.ok(id, `acknowledged upload ${doc.key} is missing`);
        const res = await fetch(`${server.baseUrl}/api/v1/documents/${id}/content`, {
          headers: { authorization: `Bearer ${clinic.token}` },
        });
        assert.equal(res.status, 200);
        const sha = createHash('sha256')
          .update(Buffer.from(await res.arrayBuffer()))
          .digest('hex');
        assert.equal(sha, doc.sha256);
      }
      console.log(
        `# S3 outage: ${docs.length} uploads acknowledged and read back, ` +
          `${writers.sent.filter((w) => w.state === 'refused').length} refused with 503 while down, uploads back ${recoveredMs} ms after the store restarted`,
      );
    } finally {
      await stop(server);
      await s3.stop().catch(() => undefined);
    }
  },
);

// ---------------------------------------------------------------------------------------------

/** An SMTP server and a webhook receiver on fixed ports that can go down and come back. */
async function startTargets() {
  const smtpPort = await freePort();
  const hookPort = await freePort();
  const mailed = new Set<string>();
  const hooked = new Set<string>();
  let smtp: SMTPServer | null = null;
  let hook: http.Server | null = null;
  const up = async () => {
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData(stream, _session, callback) {
        let raw = '';
        stream.on('data', (c: Buffer) => (raw += c.toString()));
        stream.on('end', () => {
          const id = /^x-caretrail-event-id:\s*(\S+)/im.exec(raw)?.[1];
          if (id) mailed.add(id);
          callback();
        });
      },
    });
    await new Promise<void>((r) => smtp?.listen(smtpPort, '127.0.0.1', r));
    hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        hooked.add((JSON.parse(body) as { id: string }).id);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook?.listen(hookPort, '127.0.0.1', r));
  };
  const down = async () => {
    await new Promise<void>((r) => {
      if (smtp)
        smtp.close(() => {
          r();
        });
      else r();
    });
    hook?.closeAllConnections();
    await new Promise((r) => hook?.close(r));
  };
  return { smtpPort, hookUrl: `http://127.0.0.1:${hookPort}/hook`, mailed, hooked, up, down };
}

test(
  'SMTP server and webhook receiver down, then back: every outbox event is delivered once they return',
  {
    timeout: 180_000,
  },
  async () => {
    const targets = await startTargets();
    await targets.up();
    const dataDir = tempDir('caretrail-deps-mail-');
    const env = {
      CARETRAIL_DATA_DIR: dataDir,
      CARETRAIL_SMTP_URL: `smtp://127.0.0.1:${targets.smtpPort}`,
      CARETRAIL_WEBHOOK_ALLOW_PRIVATE: 'true',
      CARETRAIL_DELIVERY_BACKOFF_MS: '200',
      CARETRAIL_DELIVERY_MAX_ATTEMPTS: '30',
    };
    const server = await serveBuilt(env);
    try {
      const clinic = await setUpClinic(dataDir, env, server.baseUrl);
      for (const target of [{ email: 'oncall@example.test' }, { webhookUrl: targets.hookUrl }]) {
        const res = await fetch(`${server.baseUrl}/api/v1/subscriptions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${clinic.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ events: ['result.received'], ...target }),
        });
        assert.equal(res.status, 201, await res.text());
      }
      await targets.down();
      const results = [];
      for (let i = 0; i < 20; i++) {
        const r = await sendWrite(server.baseUrl, clinic, 'result', `deps-result-${i}`);
        assert.equal(r.state, 'acked', 'results are taken while the targets are down');
        results.push(r);
      }
      await sleep(2000);
      assert.equal(targets.mailed.size + targets.hooked.size, 0, 'nothing could be delivered');
      await targets.up();
      const back = Date.now();
      while ((targets.mailed.size < 20 || targets.hooked.size < 20) && Date.now() - back < 60_000)
        await sleep(200);
      const deliveredMs = Date.now() - back;
      assert.equal(targets.mailed.size, 20, 'every event was mailed once the SMTP server was back');
      assert.equal(targets.hooked.size, 20, 'every event was posted once the receiver was back');
      await stop(server);
      // Nothing dead-lettered, nothing left pending.
      const check = await runCli(['audit', 'verify'], env);
      assert.equal(check.code, 0);
      console.log(
        `# SMTP and webhook outage: 20 results taken while both were down, all 20 events mailed and posted ${deliveredMs} ms after they came back`,
      );
    } finally {
      await stop(server);
      await targets.down().catch(() => undefined);
    }
  },
);
