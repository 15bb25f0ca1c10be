// Shared benchmark pieces: a keep-alive HTTP load generator and a signed-in clinic to load.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { api, runCli, type ServerProcess } from '../test/helpers/process.js';

export const BENCH_PASSWORD = 'bench password 123';

function send(agent: http.Agent, base: URL, request: LoadRequest): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        path: request.path,
        method: request.method,
        headers: {
          authorization: `Bearer ${request.token}`,
          ...(request.body !== undefined
            ? {
                'content-type': 'application/json',
                'content-length': Buffer.byteLength(request.body),
              }
            : {}),
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
    req.end(request.body);
  });
}

export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  token: string;
  body?: string;
}

/** Requests per second answered with `expect`, from `concurrency` keep-alive clients, after 1 s of warm-up. */
export async function measureRate(
  server: ServerProcess,
  request: LoadRequest,
  expect: number,
  options: { concurrency: number; seconds: number },
): Promise<number> {
  const base = new URL(server.baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  let ok = 0;
  let errors = 0;
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const status = await send(agent, base, request);
      if (status === expect) {
        if (measuring) ok++;
      } else errors++;
    }
  };
  const workers = Array.from({ length: options.concurrency }, worker);
  await new Promise((r) => setTimeout(r, 1000));
  measuring = true;
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, options.seconds * 1000));
  measuring = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  stop = true;
  await Promise.all(workers);
  agent.destroy();
  if (errors > 0) throw new Error(`${errors} requests to ${request.path} did not answer ${expect}`);
  return ok / elapsed;
}

/** Creates an admin (CLI), then over HTTP a clinician and one patient; returns their token and id. */
export async function clinicWithPatient(
  server: ServerProcess,
  env: Record<string, string>,
  dir: string,
): Promise<{ token: string; patientId: string }> {
  const pwFile = path.join(dir, 'pw');
  fs.writeFileSync(pwFile, BENCH_PASSWORD);
  const created = await runCli(
    ['admin', 'create', '--org', 'Bench', '--email', 'admin@bench.test', '--password-file', pwFile],
    env,
  );
  if (created.code !== 0) throw new Error(created.stderr);
  const admin = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: 'admin@bench.test', password: BENCH_PASSWORD },
  });
  await api(server.baseUrl, 'POST', '/api/v1/users', {
    token: admin.json.token,
    body: { email: 'vet@bench.test', name: 'Vet', role: 'clinician', password: BENCH_PASSWORD },
  });
  const vet = await api<{ token: string }>(server.baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: 'vet@bench.test', password: BENCH_PASSWORD },
  });
  const patient = await api<{ id: string }>(server.baseUrl, 'POST', '/api/v1/patients', {
    token: vet.json.token,
    body: { name: 'Bench Dog', species: 'canine', owners: [{ name: 'Bench Owner' }] },
  });
  return { token: vet.json.token, patientId: patient.json.id };
}
