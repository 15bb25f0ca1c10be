// What both drills (SQLite: drill.ts; PostgreSQL: postgres/drill.ts) do the same way: a clinic
// set up through the API, three note writers and an uploader remembering every acknowledged
// write, and the tally after the restore (acknowledged writes missing, files read back by
// SHA-256, RPO and RTO against their objectives).
import { createHash, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Ack {
  kind: 'note' | 'document';
  key: string;
  /** When the 2xx arrived (ms). */
  at: number;
  sha256?: string;
  id?: string;
}

export async function call(
  base: string,
  method: string,
  url: string,
  body: unknown,
  token?: string,
): Promise<{ status: number; json: { id?: string; token?: string } }> {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    json: (text ? JSON.parse(text) : {}) as { id?: string; token?: string },
  };
}

/** Polls /readyz until 200; `gone()` names why the server cannot come up (it exited), or null. */
export async function waitReady(
  base: string,
  gone: () => string | null,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const why = gone();
    if (why !== null) throw new Error(why);
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`no healthy Caretrail server at ${base} within ${String(timeoutMs / 1000)} s`);
}

export interface DrillClinic {
  token: string;
  patientId: string;
  vet: string;
  password: string;
}

/**
 * An organization whose admin `createAdmin` makes (`caretrail admin create` with these
 * arguments), a clinician signed in, and a patient.
 */
export async function setUpClinic(
  base: string,
  work: string,
  createAdmin: (args: string[]) => Promise<{ ok: boolean; output: string }>,
): Promise<DrillClinic> {
  const password = `drill-${randomBytes(8).toString('hex')}`;
  const passwordFile = path.join(work, 'drill-password');
  fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  const admin = `drill-admin-${randomBytes(3).toString('hex')}@example.test`;
  const vet = `drill-vet-${randomBytes(3).toString('hex')}@example.test`;
  const created = await createAdmin([
    'admin',
    'create',
    '--org',
    'Drill Clinic',
    '--email',
    admin,
    '--password-file',
    passwordFile,
  ]);
  if (!created.ok) throw new Error(`admin create failed: ${created.output.trim()}`);
  const adminLogin = await call(base, 'POST', '/api/v1/auth/login', { email: admin, password });
  if (adminLogin.status !== 200) throw new Error(`sign-in answered ${String(adminLogin.status)}`);
  const user = await call(
    base,
    'POST',
    '/api/v1/users',
    { email: vet, name: 'Drill Vet', role: 'clinician', password },
    adminLogin.json.token,
  );
  if (user.status !== 201) throw new Error(`clinician create answered ${String(user.status)}`);
  const login = await call(base, 'POST', '/api/v1/auth/login', { email: vet, password });
  if (login.status !== 200) throw new Error(`sign-in answered ${String(login.status)}`);
  const token = login.json.token ?? '';
  const patient = await call(
    base,
    'POST',
    '/api/v1/patients',
    { name: 'Drill Dog', species: 'canine' },
    token,
  );
  if (patient.status !== 201) throw new Error(`patient create answered ${String(patient.status)}`);
  return { token, patientId: patient.json.id ?? '', vet, password };
}

/** Three note writers and an uploader until `stop()`; every acknowledged write remembered. */
export function startLoad(base: string, token: string, patientId: string) {
  let running = true;
  let n = 0;
  const acks: Ack[] = [];
  const notes = async () => {
    while (running) {
      const key = `drill-${String(n++)}-${randomBytes(3).toString('hex')}`;
      try {
        const res = await call(
          base,
          'POST',
          `/api/v1/patients/${patientId}/notes`,
          { kind: 'clinical', body: noteBody(key) },
          token,
        );
        if (res.status === 201) acks.push({ kind: 'note', key, at: Date.now() });
      } catch {
        await sleep(5); // the server is gone
      }
    }
  };
  const uploads = async () => {
    while (running) {
      const key = `drill-file-${String(n++)}-${randomBytes(3).toString('hex')}`;
      const bytes = randomBytes(32_768 + randomInt(65_536));
      const form = new FormData();
      form.append('title', uploadTitle(key));
      form.append('file', new Blob([bytes]), `${key}.bin`);
      try {
        const res = await fetch(`${base}/api/v1/patients/${patientId}/documents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
          body: form,
        });
        const json = (await res.json()) as { id?: string };
        if (res.status === 201)
          acks.push({
            kind: 'document',
            key,
            at: Date.now(),
            sha256: createHash('sha256').update(bytes).digest('hex'),
            ...(json.id !== undefined ? { id: json.id } : {}),
          });
      } catch {
        await sleep(5);
      }
    }
  };
  const workers = [notes(), notes(), notes(), uploads()];
  return {
    acks,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}

export const noteBody = (key: string) => `drill note ${key}`;
export const uploadTitle = (key: string) => `drill upload ${key}`;

export interface Tally {
  missing: { notes: number; documents: number };
  rpoSeconds: number;
  files: { checked: number; ok: number; bad: number };
}

/**
 * After the restore: which acknowledged writes are missing (`present` holds the restored note
 * bodies and document titles; `lostFiles` the documents whose file never reached the replica),
 * the RPO (seconds from the oldest missing write to the kill), and every restored upload read
 * back from the restored server by SHA-256. Objectives missed are added to `problems`.
 */
export async function tally(options: {
  acks: Ack[];
  killAt: number;
  present: { notes: Set<string>; documents: Set<string> };
  lostFiles?: Set<string>;
  base: string;
  clinic: DrillClinic;
  rtoSeconds: number;
  objectives: { rpoSeconds: number; rtoSeconds: number };
  problems: string[];
}): Promise<Tally> {
  const { acks, present, problems, objectives } = options;
  const lost = options.lostFiles ?? new Set<string>();
  const missing = acks.filter((a) =>
    a.kind === 'note'
      ? !present.notes.has(noteBody(a.key))
      : lost.has(a.id ?? '') || !present.documents.has(uploadTitle(a.key)),
  );
  const files = { checked: 0, ok: 0, bad: 0 };
  const login = await call(options.base, 'POST', '/api/v1/auth/login', {
    email: options.clinic.vet,
    password: options.clinic.password,
  });
  for (const doc of acks.filter((a) => a.kind === 'document' && !missing.includes(a))) {
    files.checked += 1;
    const res = await fetch(`${options.base}/api/v1/documents/${doc.id ?? ''}/content`, {
      headers: { authorization: `Bearer ${login.json.token ?? ''}` },
    });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status === 200 && createHash('sha256').update(body).digest('hex') === doc.sha256)
      files.ok += 1;
    else files.bad += 1;
  }
  const oldestMissing = Math.min(...missing.map((a) => a.at));
  const rpoSeconds =
    missing.length === 0 ? 0 : Math.max(0, (options.killAt - oldestMissing) / 1000);
  if (rpoSeconds > objectives.rpoSeconds)
    problems.push(
      `RPO ${rpoSeconds.toFixed(2)} s is over the objective of ${String(objectives.rpoSeconds)} s`,
    );
  if (options.rtoSeconds > objectives.rtoSeconds)
    problems.push(
      `RTO ${options.rtoSeconds.toFixed(1)} s is over the objective of ${String(objectives.rtoSeconds)} s`,
    );
  if (files.bad > 0)
    problems.push(`${String(files.bad)} restored uploads did not read back intact`);
  return {
    missing: {
      notes: missing.filter((a) => a.kind === 'note').length,
      documents: missing.filter((a) => a.kind === 'document').length,
    },
    rpoSeconds,
    files,
  };
}
