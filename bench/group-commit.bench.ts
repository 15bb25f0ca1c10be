// Durable note creates per second over HTTP, against the machine's single-commit (fsync) rate
// measured in the same run. Both figures come from the same disk, so their ratio is what counts.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { api, startServer, type ServerProcess } from '../test/helpers/process.js';
import { runCli } from '../test/helpers/process.js';

const PASSWORD = 'bench password 123';

/** Sequential one-row transactions with synchronous=FULL: each commit waits for its own fsync. */
function singleCommitRate(dir: string, seconds: number): number {
  const db = new BetterSqlite3(path.join(dir, 'fsync.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('create table t (id integer primary key, v text)');
  const insert = db.prepare('insert into t (v) values (?)');
  let n = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    insert.run('x');
    n++;
  }
  db.close();
  return n / seconds;
}

function post(
  agent: http.Agent,
  base: URL,
  urlPath: string,
  token: string,
  body: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        path: urlPath,
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          resolve(res.statusCode ?? 0);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function notesPerSecond(
  server: ServerProcess,
  token: string,
  patientId: string,
  concurrency: number,
  seconds: number,
): Promise<{ rate: number; errors: number }> {
  const base = new URL(server.baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const urlPath = `/api/v1/patients/${patientId}/notes`;
  const body = JSON.stringify({
    kind: 'clinical',
    body: 'Bench note: temperature 38.6 C, heart rate 92/min, bright and alert.',
  });
  let ok = 0;
  let errors = 0;
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const status = await post(agent, base, urlPath, token, body);
      if (status === 201) {
        if (measuring) ok++;
      } else errors++;
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  measuring = true;
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  stop = true;
  await Promise.all(workers);
  agent.destroy();
  return { rate: ok / elapsed, errors };
}

async function setUp(
  env: Record<string, string>,
  dir: string,
): Promise<{ server: ServerProcess; token: string; patientId: string }> {
  const pwFile = path.join(dir, 'pw');
  fs.writeFileSync(pwFile, PASSWORD);
  const created = await runCli(
    ['admin', 'create', '--org', 'Bench', '--email', 'admin@bench.test', '--password-file', pwFile],
    env,
  );
  if (created.code !== 0 && !created.stderr.includes('already exists'))
    throw new Error(created.stderr);
  const server = await startServer({ ...env, CARETRAIL_LOGIN_IP_MAX_FAILURES: '100000' });
  const admin = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: 'admin@bench.test', password: PASSWORD },
  });
  await api(server.baseUrl, 'POST', '/api/v1/users', {
    token: admin.json.token,
    body: { email: 'vet@bench.test', name: 'Vet', role: 'clinician', password: PASSWORD },
  });
  const vet = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: 'vet@bench.test', password: PASSWORD },
  });
  const patient = await api<{ id: string }>(server.baseUrl, 'POST', '/api/v1/patients', {
    token: vet.json.token,
    body: { name: 'Bench Dog', species: 'canine' },
  });
  return { server, token: vet.json.token, patientId: patient.json.id };
}

export async function groupCommitBench(options: {
  seconds: number;
  concurrency: number;
}): Promise<Record<string, number>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-bench-'));
  try {
    const fsyncRate = singleCommitRate(dir, 2);
    const results: Record<string, number> = { singleCommitPerSecond: fsyncRate };
    for (const [label, maxBatch] of [
      ['groupCommit', '1000'],
      ['noGroupCommit', '1'],
    ] as const) {
      const dataDir = path.join(dir, label);
      const env = {
        CARETRAIL_DATA_DIR: dataDir,
        CARETRAIL_DATABASE_URL: `sqlite:${path.join(dataDir, 'caretrail.db')}`,
        CARETRAIL_SQLITE_MAX_BATCH: maxBatch,
      };
      fs.mkdirSync(dataDir);
      const { server, token, patientId } = await setUp(env, dataDir);
      try {
        const { rate, errors } = await notesPerSecond(
          server,
          token,
          patientId,
          options.concurrency,
          options.seconds,
        );
        if (errors > 0) throw new Error(`${errors} note creates failed during the ${label} run`);
        results[`${label}NotesPerSecond`] = rate;
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
    }
    return results;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
