// Shared by the fault suite: a real `caretrail serve` from the built CLI (fast restarts), a clinic
// set up through the API, writes that remember whether they were acknowledged, and a seeded PRNG.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PASSWORD } from '../helpers/harness.js';
export { seededRandom } from '../helpers/random.js';
import { api, runCli, startServer, type ServerProcess } from '../helpers/process.js';

export const BUILT_CLI = path.resolve('dist/cli/main.js');
/** Long variants (hundreds of kills, bigger loads) run with CARETRAIL_FAULTS_LONG=1. */
export const LONG = process.env.CARETRAIL_FAULTS_LONG === '1';

export interface Served extends ServerProcess {
  pid: number;
  /** Milliseconds from spawn until the server said it was listening. */
  startMs: number;
}

/** Starts the built `caretrail serve` on a free port (npm run test:faults builds it first). */
export async function serveBuilt(env: Record<string, string>): Promise<Served> {
  if (!fs.existsSync(BUILT_CLI)) throw new Error('dist/cli/main.js is missing: npm run build');
  const started = Date.now();
  const server = await startServer(
    {
      // Checkpoints add fsyncs of their own: as rare as the setting allows.
      CARETRAIL_AUDIT_CHECKPOINT_SECONDS: '60',
      ...env,
    },
    [BUILT_CLI, 'serve', '--port', '0'],
    { tsx: false },
  );
  const pid = server.child.pid;
  if (pid === undefined) throw new Error('the server has no process id');
  return { ...server, pid, startMs: Date.now() - started };
}

export async function stop(served: Served, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (served.child.exitCode !== null || served.child.signalCode !== null) return;
  served.child.kill(signal);
  await served.exited;
}

export interface Clinic {
  token: string;
  patientId: string;
  microchip: string;
  integrationKey: string;
  email: string;
}

/** An organization with an admin (CLI), a clinician, a patient with a microchip and a device key. */
export async function setUpClinic(
  dataDir: string,
  env: Record<string, string>,
  baseUrl: string,
): Promise<Clinic> {
  const passwordFile = path.join(dataDir, 'admin-password');
  fs.writeFileSync(passwordFile, `${PASSWORD}\n`);
  const admin = `admin-${randomBytes(4).toString('hex')}@example.test`;
  const created = await runCli(
    ['admin', 'create', '--org', 'Fault Clinic', '--email', admin, '--password-file', passwordFile],
    env,
  );
  if (created.code !== 0) throw new Error(`admin create failed: ${created.stderr}`);
  const adminLogin = await api<{ token: string }>(baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: admin, password: PASSWORD },
  });
  const email = `vet-${randomBytes(4).toString('hex')}@example.test`;
  const user = await api(baseUrl, 'POST', '/api/v1/users', {
    token: adminLogin.json.token,
    body: { email, name: 'Fault Vet', role: 'clinician', password: PASSWORD },
  });
  if (user.status !== 201) throw new Error(`user create: ${user.status}`);
  const key = await api<{ key: string }>(baseUrl, 'POST', '/api/v1/integrations/keys', {
    token: adminLogin.json.token,
    body: { name: 'analyser' },
  });
  if (key.status !== 201) throw new Error(`integration key: ${key.status}`);
  const token = await signIn(baseUrl, email);
  const microchip = `98511${String(Date.now()).slice(-10)}`;
  const patient = await api<{ id: string }>(baseUrl, 'POST', '/api/v1/patients', {
    token,
    body: {
      name: 'Fault Test Dog',
      species: 'canine',
      identifiers: [{ system: 'microchip', value: microchip }],
    },
  });
  if (patient.status !== 201) throw new Error(`patient create: ${patient.status}`);
  return { token, patientId: patient.json.id, microchip, integrationKey: key.json.key, email };
}

export async function signIn(baseUrl: string, email: string): Promise<string> {
  const res = await api<{ token: string }>(baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email, password: PASSWORD },
  });
  if (res.status !== 200) throw new Error(`sign-in: ${res.status}`);
  return res.json.token;
}

export type WriteKind = 'note' | 'document' | 'result';

/** One write the workload sent: its idempotency key names it in the database too. */
export interface SentWrite {
  kind: WriteKind;
  key: string;
  /** 'acked': answered 2xx; 'refused': answered 4xx/5xx; 'unknown': no answer (connection died). */
  state: 'acked' | 'refused' | 'unknown';
  status?: number;
  /** Documents: the SHA-256 the server acknowledged. */
  sha256?: string;
  /** 'unknown': why the client got no answer (the error's code or message), for failure messages. */
  error?: string;
}

export const noteBody = (key: string) => `fault note ${key}`;
export const documentTitle = (key: string) => `fault document ${key}`;

/** Sends one write of `kind`, named by `key`; never throws. */
export async function sendWrite(
  baseUrl: string,
  clinic: Clinic,
  kind: WriteKind,
  key: string,
  options: { idempotencyKey?: boolean } = {},
): Promise<SentWrite> {
  const idempotency: Record<string, string> =
    options.idempotencyKey === false ? {} : { 'idempotency-key': key };
  try {
    let res: Response;
    if (kind === 'note') {
      res = await fetch(`${baseUrl}/api/v1/patients/${clinic.patientId}/notes`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${clinic.token}`,
          'content-type': 'application/json',
          ...idempotency,
        },
        body: JSON.stringify({ kind: 'clinical', body: noteBody(key) }),
      });
    } else if (kind === 'document') {
      const form = new FormData();
      form.append('title', documentTitle(key));
      // The same key must always carry the same bytes (a retry is the same request).
      const size = 16_384 + (deterministicBytes(key, 4).readUInt32BE(0) % 200_000);
      form.append('file', new Blob([deterministicBytes(key, size)]), `${key}.bin`);
      res = await fetch(`${baseUrl}/api/v1/patients/${clinic.patientId}/documents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${clinic.token}`, ...idempotency },
        body: form,
      });
    } else {
      res = await fetch(`${baseUrl}/api/v1/integrations/results`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${clinic.integrationKey}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          patient: { identifier: { system: 'microchip', value: clinic.microchip } },
          source: 'fault-analyser',
          kind: 'lab',
          resultId: key,
          observations: [{ code: 'HCT', value: 45, unit: '%' }],
        }),
      });
    }
    const text = await res.text();
    if (res.status >= 200 && res.status < 300) {
      const json = JSON.parse(text) as { sha256?: string };
      return {
        kind,
        key,
        state: 'acked',
        status: res.status,
        ...(json.sha256 ? { sha256: json.sha256 } : {}),
      };
    }
    return { kind, key, state: 'refused', status: res.status };
  } catch (err) {
    const cause = err instanceof Error ? (err.cause as { code?: string } | undefined) : undefined;
    const error = cause?.code ?? (err instanceof Error ? err.message : String(err));
    return { kind, key, state: 'unknown', error };
  }
}

/** Bytes that depend only on the key, so a retried upload sends exactly the same file. */
export function deterministicBytes(key: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let x = 2166136261;
  for (const c of key) x = Math.imul(x ^ c.charCodeAt(0), 16777619) >>> 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}
