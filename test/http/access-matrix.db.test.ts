// The access matrix: every registered route × every kind of caller × every relation to the
// patient, with the answer each must get. Everything a caller may not know exists is 404, and no
// refusal carries patient data. A route without a row here fails the test.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import sharp from 'sharp';
import { buildDicom } from '../helpers/dicom-fixtures.js';
import { describeEachEngine } from '../helpers/engines.js';
import { invitationToken } from '../helpers/invitations.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';

/**
 * The callers, in the order of the columns below.
 * - A: staff of the patient's organization (admin, clinician, nurse, reception, auditor)
 * - B: the same roles in another organization, with no relation to the patient
 * - S: people the patient is shared with: the owner (write), a trainer (write), a walker
 *   (read), a carer (read), and a referral clinician of a third organization (read; on the
 *   organization-level routes they are a clinician of their own organization)
 * - X: a trainer whose share expired, one whose share was revoked, someone with an account
 *   but no relation to this patient, and a clinician of another organization using break-glass
 * - K: an integration key of the patient's organization, and an anonymous caller
 */
const CALLERS = [
  'A.admin',
  'A.clinician',
  'A.nurse',
  'A.reception',
  'A.auditor',
  'B.admin',
  'B.clinician',
  'B.nurse',
  'B.reception',
  'B.auditor',
  'owner',
  'trainer',
  'walker',
  'carer',
  'referral',
  'expired',
  'revoked',
  'stranger',
  'break-glass',
  'key',
  'anonymous',
] as const;
type Caller = (typeof CALLERS)[number];

/**
 * Expected statuses, one per caller, grouped as above:
 *                  A: adm cli nur rec aud | B: adm cli nur rec aud | S: own tra wal car ref | X: exp rev str btg | key anon
 */
const EXPECTED: Record<string, string> = {
  // Backups page (replication and drills, server-wide): admins only
  'GET /api/v1/admin/backups':
    '200 404 404 404 404 | 200 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  // Audit trail: admins and auditors of their own organization only
  'GET /api/v1/audit':
    '200 404 404 404 200 | 200 404 404 404 200 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/audit/alerts':
    '200 404 404 404 200 | 200 404 404 404 200 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/audit/export.csv':
    '200 404 404 404 200 | 200 404 404 404 200 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/audit/verify':
    '200 404 404 404 200 | 200 404 404 404 200 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  // Sign-in is public (wrong credentials for everyone); sign-out ends the caller's own session
  'POST /api/v1/auth/login':
    '401 401 401 401 401 | 401 401 401 401 401 | 401 401 401 401 401 | 401 401 401 401 | 401 401',
  'POST /api/v1/auth/session':
    '401 401 401 401 401 | 401 401 401 401 401 | 401 401 401 401 401 | 401 401 401 401 | 401 401',
  'GET /api/v1/auth/session':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 404 401',
  'POST /api/v1/auth/logout':
    '204 204 204 204 204 | 204 204 204 204 204 | 204 204 204 204 204 | 204 204 204 204 | 404 401',
  // Consents: staff who manage shares, and the owner
  'GET /api/v1/consents/:id':
    '200 200 200 404 404 | 404 404 404 404 404 | 200 404 404 404 404 | 404 404 404 404 | 404 401',
  'POST /api/v1/consents/:id/revoke':
    '200 200 200 404 404 | 404 404 404 404 404 | 200 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/patients/:id/consents':
    '200 200 200 403 403 | 404 404 404 404 404 | 200 403 403 403 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/patients/:id/consents':
    '201 201 201 403 403 | 404 404 404 404 404 | 201 403 403 403 403 | 404 404 404 403 | 404 401',
  // Documents (the one read here is marked for the owner and shared with every care role;
  // the ones changed were added by the patient's clinician)
  'GET /api/v1/patients/:id/documents':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'POST /api/v1/patients/:id/documents':
    '403 201 201 403 403 | 404 404 404 404 404 | 201 201 403 403 403 | 404 404 404 403 | 404 401',
  'GET /api/v1/documents/:id':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'PATCH /api/v1/documents/:id':
    '403 200 200 403 403 | 404 404 404 404 404 | 403 403 403 403 403 | 404 404 404 403 | 404 401',
  'DELETE /api/v1/documents/:id':
    '403 200 200 403 403 | 404 404 404 404 404 | 403 403 403 403 403 | 404 404 404 403 | 404 401',
  // (a deleted document is the clinic's alone: gone for everyone outside it)
  'POST /api/v1/documents/:id/restore':
    '403 200 200 403 403 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'POST /api/v1/documents/:id/purge':
    '200 403 403 403 403 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/documents/:id/content':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'PUT /api/v1/documents/:id/content':
    '403 200 200 403 403 | 404 404 404 404 404 | 403 403 403 403 403 | 404 404 404 403 | 404 401',
  'GET /api/v1/documents/:id/thumbnail':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'GET /api/v1/documents/:id/versions':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'GET /api/v1/documents/:id/versions/:version/content':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  // Integration keys: admins of the key's organization
  'GET /api/v1/integrations/keys':
    '200 403 403 403 403 | 200 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/integrations/keys':
    '201 403 403 403 403 | 201 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  'DELETE /api/v1/integrations/keys/:id':
    '204 403 403 403 403 | 404 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  // Device results: posted by integration keys only; the unmatched queue is clinical staff's
  'POST /api/v1/integrations/results':
    '404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 201 401',
  'POST /api/v1/integrations/hl7v2':
    '404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 200 401',
  'POST /api/v1/integrations/dicom':
    '404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 201 401',
  // The original message of a result: staff who read the patient's notes (no break-glass)
  'GET /api/v1/results/:id/original':
    '403 200 200 403 403 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/integrations/unmatched':
    '403 200 200 403 403 | 403 200 200 403 403 | 404 404 404 404 200 | 404 404 404 200 | 404 401',
  'POST /api/v1/integrations/unmatched/:id/assign':
    '403 200 200 403 403 | 403 404 404 403 403 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'POST /api/v1/integrations/unmatched/:id/discard':
    '403 200 200 403 403 | 403 404 404 403 403 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  // An invitation link (mailed to the invitee) works once, for whoever holds it
  'POST /api/v1/invitations/:token/accept':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 200 200',
  // The caller's own account
  'GET /api/v1/me':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 404 401',
  'POST /api/v1/me/mfa/totp':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 404 401',
  'POST /api/v1/me/mfa/totp/verify':
    '400 400 400 400 400 | 400 400 400 400 400 | 400 400 400 400 400 | 400 400 400 400 | 404 401',
  'GET /api/v1/me/patients':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 404 401',
  'GET /api/v1/me/sessions':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 404 401',
  'DELETE /api/v1/me/sessions/:id':
    '204 204 204 204 204 | 204 204 204 204 204 | 204 204 204 204 204 | 204 204 204 204 | 404 401',
  // Notes: the one read is final, for the owner, released, shared with every care role; the
  // changed ones were written by the patient's clinician and are not released (the owner does
  // not see them)
  'GET /api/v1/patients/:id/notes':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'POST /api/v1/patients/:id/notes':
    '403 201 201 403 403 | 404 404 404 404 404 | 403 201 403 403 403 | 404 404 404 403 | 404 401',
  'GET /api/v1/notes/:id':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'GET /api/v1/notes/:id/history':
    '403 200 200 403 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'PATCH /api/v1/notes/:id':
    '403 200 403 403 403 | 404 404 404 404 404 | 404 403 403 403 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/notes/:id/finalize':
    '403 200 403 403 403 | 404 404 404 404 404 | 404 403 403 403 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/notes/:id/addenda':
    '403 201 201 403 403 | 404 404 404 404 404 | 404 403 403 403 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/notes/:id/release':
    '403 200 200 403 403 | 404 404 404 404 404 | 404 403 403 403 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/notes/:id/addenda/:addendumId/release':
    '403 200 200 403 403 | 404 404 404 404 404 | 404 403 403 403 403 | 404 404 404 403 | 404 401',
  // Patients: the register is the organization's; a shared patient is read through its id
  'GET /api/v1/patients':
    '200 200 200 200 403 | 200 200 200 200 403 | 404 404 404 404 200 | 404 404 404 200 | 404 401',
  'POST /api/v1/patients':
    '201 201 201 201 403 | 201 201 201 201 403 | 404 404 404 404 201 | 404 404 404 201 | 404 401',
  'GET /api/v1/patients/:id':
    '200 200 200 200 403 | 404 404 404 404 404 | 200 200 200 200 200 | 404 404 404 200 | 404 401',
  'PATCH /api/v1/patients/:id':
    '200 200 200 200 403 | 404 404 404 404 404 | 403 403 403 403 403 | 404 404 404 403 | 404 401',
  'GET /api/v1/patients/:id/access-report':
    '200 200 200 200 403 | 404 404 404 404 404 | 200 403 403 403 403 | 404 404 404 403 | 404 401',
  // Break-glass: clinicians only; those who already reach the patient are told so (409)
  'POST /api/v1/patients/:id/break-glass':
    '403 409 403 403 403 | 403 200 403 403 403 | 404 404 404 404 409 | 404 404 404 409 | 404 401',
  // Shares
  'GET /api/v1/patients/:id/shares':
    '200 200 200 403 403 | 404 404 404 404 404 | 200 403 403 403 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/patients/:id/shares':
    '201 201 201 403 403 | 404 404 404 404 404 | 403 403 403 403 403 | 404 404 404 403 | 404 401',
  'DELETE /api/v1/patients/:id/shares/:shareId':
    '200 200 200 403 403 | 404 404 404 404 404 | 403 403 403 403 403 | 404 404 404 403 | 404 401',
  // First-run setup is over: its link is invalid for everyone
  'POST /api/v1/setup':
    '404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 404 | 404 404 404 404 | 404 404',
  // Notification subscriptions: staff of the organization (a patient of another one is 404)
  'GET /api/v1/subscriptions':
    '200 200 200 403 403 | 200 200 200 403 403 | 404 404 404 404 200 | 404 404 404 200 | 404 401',
  'POST /api/v1/subscriptions':
    '201 201 201 403 403 | 404 404 404 403 403 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'DELETE /api/v1/subscriptions/:id':
    '204 204 204 403 403 | 404 404 404 403 403 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  'GET /api/v1/subscriptions/:id/deliveries':
    '200 200 200 403 403 | 404 404 404 403 403 | 404 404 404 404 404 | 404 404 404 404 | 404 401',
  // Staff accounts: admins of the organization
  'GET /api/v1/users':
    '200 403 403 403 403 | 200 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/users':
    '201 403 403 403 403 | 201 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  'PATCH /api/v1/users/:id':
    '200 403 403 403 403 | 404 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  'POST /api/v1/users/:id/logout':
    '200 403 403 403 403 | 404 403 403 403 403 | 404 404 404 404 403 | 404 404 404 403 | 404 401',
  // Public pages and probes
  'GET /healthz':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 200 200',
  'GET /readyz':
    '200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 200 | 200 200 200 200 | 200 200',
};

function expectedRow(route: string): Map<Caller, number> {
  const row = EXPECTED[route];
  if (row === undefined) throw new Error(`no row for ${route}`);
  const codes = row
    .split(/[\s|]+/)
    .filter((c) => c !== '')
    .map(Number);
  assert.equal(
    codes.length,
    CALLERS.length,
    `${route}: ${codes.length} answers for ${CALLERS.length} callers`,
  );
  return new Map(CALLERS.map((c, i) => [c, codes[i] ?? 0]));
}

interface Person {
  token: string;
  email: string;
  userId: string;
}

interface Request {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Sent instead of the caller's own token (a fresh session of theirs, or a fresh colleague). */
  token?: string;
}

/** What no refusal may contain: the patient's name, its owner's email, the note and file text. */
const SECRETS = {
  patientName: 'Biscuit-Matrix-Patient',
  ownerName: 'Olive Matrix-Owner',
  noteBody: 'Matrix note body: allergic to penicillin',
  fileText: 'Matrix file text: hip dysplasia grade 2',
};

function multipart(
  fields: Record<string, string>,
  file: { name: string; bytes: Buffer; type: string },
) {
  const boundary = `matrix${randomUUID().replace(/-/g, '')}`;
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields))
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      ),
    );
  parts.push(
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${file.name}"\r\nContent-Type: ${file.type}\r\n\r\n`,
    ),
    file.bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  );
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

describeEachEngine('access matrix', ({ url }) => {
  let h: Harness;
  const callers = new Map<Caller, Person | { token: string } | null>();
  let clinicianA: SignedIn;
  let adminA: SignedIn;
  let adminB: SignedIn;
  let patientId: string;
  let ownerRecordId: string;
  let ownerEmail: string;
  let matchedResultId = '';
  let readNoteId: string;
  let readDocumentId: string;
  let consentId: string;
  let subscriptionId: string;

  async function call(token: string | undefined, req: Request) {
    const body = req.body;
    return h.runtime.app.inject({
      method: req.method,
      url: req.url,
      headers: {
        ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined && !Buffer.isBuffer(body)
          ? { 'content-type': 'application/json' }
          : {}),
        ...req.headers,
      },
      ...(body !== undefined
        ? { payload: Buffer.isBuffer(body) ? body : JSON.stringify(body) }
        : {}),
    });
  }

  async function ok<T>(token: string | undefined, req: Request, status = 201): Promise<T> {
    const res = await call(token, req);
    assert.equal(res.statusCode, status, `${req.method} ${req.url}: ${res.body}`);
    return res.json<T>();
  }

  async function login(email: string): Promise<Person> {
    const json = await ok<{ token: string; user: { id: string } }>(
      undefined,
      { method: 'POST', url: '/api/v1/auth/login', body: { email, password: PASSWORD } },
      200,
    );
    return { token: json.token, email, userId: json.user.id };
  }

  /** Records consent for `email` (as the clinician, for the owner on record) and returns its id. */
  async function consentFor(email: string, scope: 'read' | 'write'): Promise<string> {
    const consent = await ok<{ id: string }>(clinicianA.token, {
      method: 'POST',
      url: `/api/v1/patients/${patientId}/consents`,
      body: {
        granteeEmail: email,
        purpose: 'training',
        scope,
        method: 'in_person',
        ownerId: ownerRecordId,
      },
    });
    return consent.id;
  }

  /** Shares the patient with `email` (an invitation is mailed when it has no account). */
  async function share(
    email: string,
    role: string,
    access: 'read' | 'write',
    extra: { expiresAt?: string; patient?: string; token?: string } = {},
  ) {
    if (role !== 'owner' && extra.patient === undefined) await consentFor(email, access);
    return ok<{ id: string; invitation: { expiresAt: string } | null }>(
      extra.token ?? clinicianA.token,
      {
        method: 'POST',
        url: `/api/v1/patients/${extra.patient ?? patientId}/shares`,
        body: { email, role, access, ...(extra.expiresAt ? { expiresAt: extra.expiresAt } : {}) },
      },
    );
  }

  /** Accepts the invitation mailed to `email` and signs the new person in. */
  async function accept(email: string): Promise<Person> {
    const token = await invitationToken(h, email);
    await ok(
      undefined,
      {
        method: 'POST',
        url: `/api/v1/invitations/${token}/accept`,
        body: { name: 'Sam Sharee', password: PASSWORD },
      },
      200,
    );
    return login(email);
  }

  async function invitedPerson(
    role: string,
    access: 'read' | 'write',
    extra: { expiresAt?: string } = {},
  ) {
    const email = uniqueEmail(role);
    const created = await share(email, role, access, extra);
    assert.ok(created.invitation, 'a person without an account is invited');
    return { person: await accept(email), shareId: created.id };
  }

  async function note(options: { final?: boolean; released?: boolean } = {}): Promise<string> {
    const created = await ok<{ id: string }>(clinicianA.token, {
      method: 'POST',
      url: `/api/v1/patients/${patientId}/notes`,
      body: {
        kind: 'clinical',
        body: SECRETS.noteBody,
        visibility: 'owner',
        sharedWith: ['trainer', 'walker', 'carer'],
      },
    });
    if (options.final || options.released)
      await ok(
        clinicianA.token,
        { method: 'POST', url: `/api/v1/notes/${created.id}/finalize` },
        200,
      );
    if (options.released)
      await ok(
        clinicianA.token,
        { method: 'POST', url: `/api/v1/notes/${created.id}/release` },
        200,
      );
    return created.id;
  }

  async function documentFor(options: { png?: boolean; deleted?: boolean } = {}): Promise<string> {
    const file = options.png
      ? {
          name: 'xray.png',
          type: 'image/png',
          bytes: await sharp({
            create: { width: 16, height: 16, channels: 3, background: '#336699' },
          })
            .png()
            .toBuffer(),
        }
      : { name: 'report.txt', type: 'text/plain', bytes: Buffer.from(SECRETS.fileText) };
    const form = multipart({ visibility: 'owner', sharedWith: 'trainer,walker,carer' }, file);
    const created = await ok<{ id: string }>(clinicianA.token, {
      method: 'POST',
      url: `/api/v1/patients/${patientId}/documents`,
      body: form.body,
      headers: { 'content-type': form.contentType },
    });
    if (options.deleted)
      await ok(clinicianA.token, { method: 'DELETE', url: `/api/v1/documents/${created.id}` }, 200);
    return created.id;
  }

  /** A lab result for a microchip no patient has (it waits in the unmatched queue). */
  const deviceResult = () => ({
    patient: {
      identifier: {
        system: 'microchip',
        value: `9000${Date.now()}${Math.floor(Math.random() * 1000)}`.slice(0, 15),
      },
    },
    source: 'analyzer',
    kind: 'lab',
    observations: [{ code: 'HCT', value: 38.2, unit: '%' }],
  });

  async function unmatchedResult(): Promise<string> {
    const key = callers.get('key');
    const answer = await ok<{ id: string; status: string }>(key?.token, {
      method: 'POST',
      url: '/api/v1/integrations/results',
      body: deviceResult(),
    });
    assert.equal(answer.status, 'unmatched');
    return answer.id;
  }

  async function colleague(admin: SignedIn, role: string): Promise<SignedIn> {
    return h.newUser(admin, role as 'nurse');
  }

  /** How each route is called: a fresh target where the call changes or uses something up. */
  function requestFor(route: string, caller: Caller): Promise<Request> {
    const person = callers.get(caller);
    const own = person && 'email' in person ? person : null;
    const fresh = async () => (own ? (await login(own.email)).token : undefined);
    const p = `/api/v1/patients/${patientId}`;
    const at = async (req: Request) => req;
    switch (route) {
      case 'GET /api/v1/admin/backups':
        return at({ method: 'GET', url: route.slice(4) });
      case 'GET /api/v1/audit':
      case 'GET /api/v1/audit/alerts':
      case 'GET /api/v1/audit/verify':
        return at({ method: 'GET', url: route.slice(4) });
      case 'GET /api/v1/audit/export.csv':
        return at({ method: 'GET', url: `/api/v1/audit/export.csv?patientId=${patientId}` });
      case 'POST /api/v1/auth/login':
      case 'POST /api/v1/auth/session':
        return at({
          method: 'POST',
          url: route.slice(5),
          body: { email: uniqueEmail('nobody'), password: 'not the password' },
        });
      case 'POST /api/v1/auth/logout':
        return (async () => ({
          method: 'POST' as const,
          url: '/api/v1/auth/logout',
          ...(own ? { token: await fresh() } : {}),
        }))();
      case 'GET /api/v1/consents/:id':
        return at({ method: 'GET', url: `/api/v1/consents/${consentId}` });
      case 'POST /api/v1/consents/:id/revoke':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/consents/${await consentFor(uniqueEmail('c'), 'read')}/revoke`,
        }))();
      case 'GET /api/v1/patients/:id/consents':
        return at({ method: 'GET', url: `${p}/consents` });
      case 'POST /api/v1/patients/:id/consents':
        return at({
          method: 'POST',
          url: `${p}/consents`,
          body:
            caller === 'owner'
              ? {
                  granteeEmail: uniqueEmail('c'),
                  purpose: 'walks',
                  scope: 'read',
                  method: 'portal',
                }
              : {
                  granteeEmail: uniqueEmail('c'),
                  purpose: 'walks',
                  scope: 'read',
                  method: 'in_person',
                  ownerId: ownerRecordId,
                },
        });
      case 'GET /api/v1/patients/:id/documents':
        return at({ method: 'GET', url: `${p}/documents` });
      case 'POST /api/v1/patients/:id/documents': {
        const form = multipart(
          {},
          { name: 'photo.txt', type: 'text/plain', bytes: Buffer.from('a photo, really') },
        );
        return at({
          method: 'POST',
          url: `${p}/documents`,
          body: form.body,
          headers: { 'content-type': form.contentType },
        });
      }
      case 'GET /api/v1/documents/:id':
      case 'GET /api/v1/documents/:id/content':
      case 'GET /api/v1/documents/:id/thumbnail':
      case 'GET /api/v1/documents/:id/versions':
        return at({ method: 'GET', url: route.slice(4).replace(':id', readDocumentId) });
      case 'GET /api/v1/documents/:id/versions/:version/content':
        return at({ method: 'GET', url: `/api/v1/documents/${readDocumentId}/versions/1/content` });
      case 'PATCH /api/v1/documents/:id':
        return (async () => ({
          method: 'PATCH' as const,
          url: `/api/v1/documents/${await documentFor()}`,
          body: { title: 'renamed' },
        }))();
      case 'DELETE /api/v1/documents/:id':
        return (async () => ({
          method: 'DELETE' as const,
          url: `/api/v1/documents/${await documentFor()}`,
        }))();
      case 'POST /api/v1/documents/:id/restore':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/documents/${await documentFor({ deleted: true })}/restore`,
        }))();
      case 'POST /api/v1/documents/:id/purge':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/documents/${await documentFor({ deleted: true })}/purge`,
          body: { reason: 'retention period over' },
        }))();
      case 'PUT /api/v1/documents/:id/content':
        return (async () => ({
          method: 'PUT' as const,
          url: `/api/v1/documents/${await documentFor()}/content`,
          body: Buffer.from('a new version'),
          headers: { 'content-type': 'text/plain' },
        }))();
      case 'GET /api/v1/integrations/keys':
        return at({ method: 'GET', url: '/api/v1/integrations/keys' });
      case 'POST /api/v1/integrations/keys':
        return at({ method: 'POST', url: '/api/v1/integrations/keys', body: { name: 'Analyzer' } });
      case 'DELETE /api/v1/integrations/keys/:id':
        return (async () => {
          const key = await ok<{ id: string }>(adminA.token, {
            method: 'POST',
            url: '/api/v1/integrations/keys',
            body: { name: 'Old analyzer' },
          });
          return { method: 'DELETE' as const, url: `/api/v1/integrations/keys/${key.id}` };
        })();
      case 'POST /api/v1/integrations/results':
        return at({ method: 'POST', url: '/api/v1/integrations/results', body: deviceResult() });
      case 'POST /api/v1/integrations/hl7v2':
        return at({
          method: 'POST',
          url: '/api/v1/integrations/hl7v2',
          body: Buffer.from(
            [
              `MSH|^~\\&|ANALYZER|LAB|CARETRAIL||20261123101500||ORU^R01|M-${randomUUID()}|P|2.5.1`,
              'PID|1||900000000000042^^^MICROCHIP^MC',
              'OBX|1|NM|HCT^Hematocrit||38.2|%|37-55|N|||F',
            ].join('\r'),
          ),
          headers: { 'content-type': 'x-application/hl7-v2+er7' },
        });
      case 'POST /api/v1/integrations/dicom':
        return at({
          method: 'POST',
          url: '/api/v1/integrations/dicom',
          body: buildDicom({
            patientId: '900000000000042',
            sopInstanceUid: `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`,
          }),
          headers: { 'content-type': 'application/dicom' },
        });
      case 'GET /api/v1/results/:id/original':
        return at({ method: 'GET', url: `/api/v1/results/${matchedResultId}/original` });
      case 'GET /api/v1/integrations/unmatched':
        return at({ method: 'GET', url: '/api/v1/integrations/unmatched' });
      case 'POST /api/v1/integrations/unmatched/:id/assign':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/integrations/unmatched/${await unmatchedResult()}/assign`,
          body: { patientId },
        }))();
      case 'POST /api/v1/integrations/unmatched/:id/discard':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/integrations/unmatched/${await unmatchedResult()}/discard`,
          body: { reason: 'quality control sample' },
        }))();
      case 'POST /api/v1/invitations/:token/accept':
        return (async () => {
          const email = uniqueEmail('invitee');
          await share(email, 'walker', 'read');
          const token = await invitationToken(h, email);
          return {
            method: 'POST' as const,
            url: `/api/v1/invitations/${token}/accept`,
            body: { name: 'New Walker', password: PASSWORD },
          };
        })();
      case 'GET /api/v1/me':
      case 'GET /api/v1/auth/session':
      case 'GET /api/v1/me/patients':
      case 'GET /api/v1/me/sessions':
        return at({ method: 'GET', url: route.slice(4) });
      case 'POST /api/v1/me/mfa/totp':
        return at({ method: 'POST', url: '/api/v1/me/mfa/totp' });
      case 'POST /api/v1/me/mfa/totp/verify':
        return (async () => {
          // Enrolment started, and a code that does not match (a fixed code
          // would match a random secret about once in 300,000 tries).
          let code = '000000';
          if (own) {
            const { secret } = await ok<{ secret: string }>(
              own.token,
              { method: 'POST', url: '/api/v1/me/mfa/totp' },
              200,
            );
            code = codeThatDoesNotMatch(secret, h.clock.now().getTime());
          }
          return {
            method: 'POST' as const,
            url: '/api/v1/me/mfa/totp/verify',
            body: { code, password: PASSWORD },
          };
        })();
      case 'DELETE /api/v1/me/sessions/:id':
        return (async () => {
          if (!own)
            return { method: 'DELETE' as const, url: `/api/v1/me/sessions/${randomUUID()}` };
          // Another session of the caller's (another device) is ended.
          const other = await fresh();
          const sessions = await ok<{ items: { id: string; current: boolean }[] }>(
            other,
            { method: 'GET', url: '/api/v1/me/sessions' },
            200,
          );
          const id = sessions.items.find((s) => s.current)?.id ?? '';
          return { method: 'DELETE' as const, url: `/api/v1/me/sessions/${id}` };
        })();
      case 'GET /api/v1/patients/:id/notes':
        return at({ method: 'GET', url: `${p}/notes` });
      case 'POST /api/v1/patients/:id/notes':
        return at({
          method: 'POST',
          url: `${p}/notes`,
          body: { kind: 'training', body: 'Sits on command now.' },
        });
      case 'GET /api/v1/notes/:id':
      case 'GET /api/v1/notes/:id/history':
        return at({ method: 'GET', url: route.slice(4).replace(':id', readNoteId) });
      case 'PATCH /api/v1/notes/:id':
        return (async () => ({
          method: 'PATCH' as const,
          url: `/api/v1/notes/${await note()}`,
          body: { body: 'changed' },
          headers: { 'if-match': '"1"' },
        }))();
      case 'POST /api/v1/notes/:id/finalize':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/notes/${await note()}/finalize`,
        }))();
      case 'POST /api/v1/notes/:id/addenda':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/notes/${await note({ final: true })}/addenda`,
          body: { body: 'Also: check again in a week.' },
        }))();
      case 'POST /api/v1/notes/:id/release':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/notes/${await note({ final: true })}/release`,
        }))();
      case 'POST /api/v1/notes/:id/addenda/:addendumId/release':
        return (async () => {
          const id = await note({ final: true });
          const amended = await ok<{ addenda: { id: string }[] }>(clinicianA.token, {
            method: 'POST',
            url: `/api/v1/notes/${id}/addenda`,
            body: { body: 'Also: check again in a week.' },
          });
          const addendumId = amended.addenda[0]?.id ?? '';
          return {
            method: 'POST' as const,
            url: `/api/v1/notes/${id}/addenda/${addendumId}/release`,
          };
        })();
      case 'GET /api/v1/patients':
        return at({ method: 'GET', url: '/api/v1/patients?q=Biscuit' });
      case 'POST /api/v1/patients':
        return at({
          method: 'POST',
          url: '/api/v1/patients',
          body: { name: 'Another dog', species: 'canine' },
        });
      case 'GET /api/v1/patients/:id':
        return at({ method: 'GET', url: p });
      case 'PATCH /api/v1/patients/:id':
        return (async () => {
          const current = await ok<{ version: number }>(
            clinicianA.token,
            { method: 'GET', url: p },
            200,
          );
          return {
            method: 'PATCH' as const,
            url: p,
            body: { breed: 'Beagle' },
            headers: { 'if-match': `"${current.version}"` },
          };
        })();
      case 'GET /api/v1/patients/:id/access-report':
        return at({ method: 'GET', url: `${p}/access-report` });
      case 'POST /api/v1/patients/:id/break-glass':
        return (async () => {
          const req: Request = {
            method: 'POST',
            url: `${p}/break-glass`,
            body: { reason: 'Collapsed in our waiting room, owner unreachable' },
          };
          // A fresh colleague, so the grant does not change this caller's answers on other rows.
          if (caller === 'B.clinician') req.token = (await colleague(adminB, 'clinician')).token;
          return req;
        })();
      case 'GET /api/v1/patients/:id/shares':
        return at({ method: 'GET', url: `${p}/shares` });
      case 'POST /api/v1/patients/:id/shares':
        return (async () => {
          const email = uniqueEmail('trainer');
          await consentFor(email, 'read');
          return {
            method: 'POST' as const,
            url: `${p}/shares`,
            body: { email, role: 'trainer', access: 'read' },
          };
        })();
      case 'DELETE /api/v1/patients/:id/shares/:shareId':
        return (async () => ({
          method: 'DELETE' as const,
          url: `${p}/shares/${(await share(uniqueEmail('carer'), 'carer', 'read')).id}`,
        }))();
      case 'POST /api/v1/setup':
        return at({
          method: 'POST',
          url: '/api/v1/setup',
          body: {
            token: 'not-a-setup-token',
            organizationName: 'X',
            name: 'X',
            email: uniqueEmail('x'),
            password: PASSWORD,
          },
        });
      case 'GET /api/v1/subscriptions':
        return at({ method: 'GET', url: '/api/v1/subscriptions' });
      case 'POST /api/v1/subscriptions':
        return at({
          method: 'POST',
          url: '/api/v1/subscriptions',
          body: { events: ['note.finalized'], patientId, email: uniqueEmail('follow') },
        });
      case 'DELETE /api/v1/subscriptions/:id':
        return (async () => {
          const s = await ok<{ id: string }>(adminA.token, {
            method: 'POST',
            url: '/api/v1/subscriptions',
            body: { events: ['note.finalized'], patientId, email: uniqueEmail('follow') },
          });
          return { method: 'DELETE' as const, url: `/api/v1/subscriptions/${s.id}` };
        })();
      case 'GET /api/v1/subscriptions/:id/deliveries':
        return at({ method: 'GET', url: `/api/v1/subscriptions/${subscriptionId}/deliveries` });
      case 'GET /api/v1/users':
        return at({ method: 'GET', url: '/api/v1/users' });
      case 'POST /api/v1/users':
        return at({
          method: 'POST',
          url: '/api/v1/users',
          body: {
            email: uniqueEmail('nurse'),
            name: 'New Nurse',
            role: 'nurse',
            password: PASSWORD,
          },
        });
      case 'PATCH /api/v1/users/:id':
        return (async () => ({
          method: 'PATCH' as const,
          url: `/api/v1/users/${(await colleague(adminA, 'nurse')).userId}`,
          body: { name: 'Renamed' },
        }))();
      case 'POST /api/v1/users/:id/logout':
        return (async () => ({
          method: 'POST' as const,
          url: `/api/v1/users/${(await colleague(adminA, 'nurse')).userId}/logout`,
        }))();
      case 'GET /healthz':
      case 'GET /readyz':
        return at({ method: 'GET', url: route.slice(4) });
      default:
        throw new Error(`no request for ${route}`);
    }
  }

  before(async () => {
    h = await startHarness(url(), {
      // The clock moves on to expire a share; sessions must outlive that.
      CARETRAIL_SESSION_IDLE_MINUTES: '43200',
      CARETRAIL_LOGIN_IP_MAX_FAILURES: '1000',
    });
    adminA = await h.newOrganization();
    clinicianA = await h.newUser(adminA, 'clinician');
    adminB = await h.newOrganization();
    const adminC = await h.newOrganization();
    const adminD = await h.newOrganization();
    callers.set('A.admin', adminA);
    callers.set('B.admin', adminB);
    callers.set('A.clinician', clinicianA);
    for (const role of ['nurse', 'reception', 'auditor'] as const)
      callers.set(`A.${role}`, await h.newUser(adminA, role));
    for (const role of ['clinician', 'nurse', 'reception', 'auditor'] as const)
      callers.set(`B.${role}`, await h.newUser(adminB, role));

    ownerEmail = uniqueEmail('owner');
    const patient = await ok<{ id: string; owners: { id: string }[] }>(clinicianA.token, {
      method: 'POST',
      url: '/api/v1/patients',
      body: {
        name: SECRETS.patientName,
        species: 'canine',
        owners: [{ name: SECRETS.ownerName, email: ownerEmail }],
      },
    });
    patientId = patient.id;
    ownerRecordId = patient.owners[0]?.id ?? '';

    const ownerShare = await share(ownerEmail, 'owner', 'write');
    assert.ok(ownerShare.invitation);
    callers.set('owner', await accept(ownerEmail));
    callers.set('trainer', (await invitedPerson('trainer', 'write')).person);
    callers.set('walker', (await invitedPerson('walker', 'read')).person);
    callers.set('carer', (await invitedPerson('carer', 'read')).person);
    // A referral vet: a clinician of a third organization, who confirms the share from the
    // mailed link with their password.
    const referral = await h.newUser(adminC, 'clinician');
    await consentFor(referral.email, 'read');
    await ok(clinicianA.token, {
      method: 'POST',
      url: `/api/v1/patients/${patientId}/shares`,
      body: { email: referral.email, role: 'clinician', access: 'read' },
    });
    await accept(referral.email);
    callers.set('referral', referral);
    const expiresAt = new Date(h.clock.now().getTime() + 60_000).toISOString();
    callers.set('expired', (await invitedPerson('trainer', 'write', { expiresAt })).person);
    const revoked = await invitedPerson('trainer', 'write');
    await ok(
      clinicianA.token,
      { method: 'DELETE', url: `/api/v1/patients/${patientId}/shares/${revoked.shareId}` },
      200,
    );
    callers.set('revoked', revoked.person);
    // Someone with an account (the owner of a patient of organization B) and no relation to ours.
    const clinicianB = callers.get('B.clinician') as SignedIn;
    const strangerEmail = uniqueEmail('stranger');
    const otherPatient = await ok<{ id: string }>(clinicianB.token, {
      method: 'POST',
      url: '/api/v1/patients',
      body: {
        name: 'Other dog',
        species: 'canine',
        owners: [{ name: 'Other owner', email: strangerEmail }],
      },
    });
    const strangerShare = await share(strangerEmail, 'owner', 'read', {
      patient: otherPatient.id,
      token: clinicianB.token,
    });
    assert.ok(strangerShare.invitation);
    callers.set('stranger', await accept(strangerEmail));
    const emergency = await h.newUser(adminD, 'clinician');
    await ok(
      emergency.token,
      {
        method: 'POST',
        url: `/api/v1/patients/${patientId}/break-glass`,
        body: { reason: 'Found injured, microchip scanned at our clinic' },
      },
      200,
    );
    callers.set('break-glass', emergency);
    const key = await ok<{ key: string }>(adminA.token, {
      method: 'POST',
      url: '/api/v1/integrations/keys',
      body: { name: 'Lab analyzer' },
    });
    callers.set('key', { token: key.key });
    callers.set('anonymous', null);

    readNoteId = await note({ released: true });
    matchedResultId = await unmatchedResult();
    await ok(
      callers.get('A.clinician')?.token,
      {
        method: 'POST',
        url: `/api/v1/integrations/unmatched/${matchedResultId}/assign`,
        body: { patientId },
      },
      200,
    );
    readDocumentId = await documentFor({ png: true });
    await h.runtime.relay.runUntilIdle();
    consentId = await consentFor(uniqueEmail('consent'), 'read');
    subscriptionId = (
      await ok<{ id: string }>(adminA.token, {
        method: 'POST',
        url: '/api/v1/subscriptions',
        body: { events: ['document.created'], patientId, email: uniqueEmail('follow') },
      })
    ).id;
    // The share of "expired" ends.
    h.clock.advance(120_000);
  });
  after(async () => {
    await h.close();
  });

  test('every registered route has a row, and every row a route', () => {
    const registered = h.runtime.app.routes.map((r) => `${r.method} ${r.url}`).sort();
    assert.deepEqual(registered, Object.keys(EXPECTED).sort());
  });

  for (const route of Object.keys(EXPECTED)) {
    test(route, async () => {
      const expected = expectedRow(route);
      const wrong: string[] = [];
      for (const caller of CALLERS) {
        const req = await requestFor(route, caller);
        const person = callers.get(caller);
        const res = await call(req.token ?? person?.token, req);
        const want = expected.get(caller);
        if (res.statusCode !== want)
          wrong.push(`${caller}: ${res.statusCode} (want ${want}) ${res.body.slice(0, 160)}`);
        if (res.statusCode >= 400) {
          const text = res.body;
          for (const secret of Object.values(SECRETS))
            assert.ok(
              !text.includes(secret),
              `${route} as ${caller}: a refusal shows patient data`,
            );
          assert.ok(
            !text.includes(ownerEmail),
            `${route} as ${caller}: a refusal shows the owner's email`,
          );
          if (
            route.startsWith('GET /api/') ||
            route.startsWith('POST /api/') ||
            route.startsWith('PATCH /api/') ||
            route.startsWith('PUT /api/') ||
            route.startsWith('DELETE /api/')
          ) {
            const error = res.json<{ error?: { code?: string } }>().error;
            assert.ok(error?.code, `${route} as ${caller}: the one error shape`);
          }
        }
      }
      assert.deepEqual(wrong, [], `${route}:\n${wrong.join('\n')}`);
    });
  }
});

/** A six-digit code that no step within a minute either side of `now` accepts for `secret`. */
function codeThatDoesNotMatch(secret: string, now: number): string {
  const totp = new TOTP({ secret: Secret.fromBase32(secret) });
  const taken = new Set<string>();
  for (let step = -2; step <= 2; step++)
    taken.add(totp.generate({ timestamp: now + step * 30_000 }));
  for (let n = 0; ; n++) {
    const code = String(n).padStart(6, '0');
    if (!taken.has(code)) return code;
  }
}
