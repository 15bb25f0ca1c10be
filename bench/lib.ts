// A signed-in clinic with one patient on a fresh server (the MLLP bench's set-up).
import fs from 'node:fs';
import path from 'node:path';
import { api, runCli, type ServerProcess } from '../test/helpers/process.js';

export const BENCH_PASSWORD = 'bench password 123';

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
