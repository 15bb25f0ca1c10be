// Care-team sharing (issue 6) over HTTP on both engines: owner consents, shares and invitations
// (with the real mail they send), revocation and expiry taking effect on the next request, who
// sees which notes and documents, write access, the owner portal, and the audit trail.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { errorOf, type PatientJson } from '../helpers/api.js';
import { describeEachEngine } from '../helpers/engines.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';
import { startMailServer, type MailServer, type ReceivedMail } from '../helpers/mail.js';

/** Anyone signed in: staff, or a person outside any organization. */
interface Account {
  token: string;
  userId: string;
  email: string;
}

interface AccessJson {
  via: string;
  role: string;
  write: boolean;
  expiresAt: string | null;
}

type SharedPatientJson = PatientJson & { access: AccessJson };

interface ShareJson {
  id: string;
  patientId: string;
  email: string;
  userId: string | null;
  role: string;
  access: string;
  expiresAt: string | null;
  consentId: string | null;
  status: 'active' | 'pending' | 'expired' | 'revoked';
  revokedAt: string | null;
  invitation?: { url: string; expiresAt: string } | null;
}

interface ConsentJson {
  id: string;
  granteeEmail: string;
  scope: string;
  method: string;
  consentedBy: { ownerId: string | null; userId: string | null };
  documentId: string | null;
  recordedBy: string;
  status: string;
  version: number;
  revokedBy: string | null;
  history?: { version: number; change: string; actorId: string }[];
}

interface ItemJson {
  id: string;
  body?: string;
  visibility: string;
  authorId?: string;
  releaseAt?: string | null;
}

interface UserJson {
  id: string;
  email: string;
  name: string;
  organizationId: string | null;
  role: string | null;
}

interface Clinic {
  admin: SignedIn;
  clinician: SignedIn;
  nurse: SignedIn;
  patient: PatientJson;
  ownerId: string;
  ownerEmail: string;
  /** Another patient of the same clinic, with another owner. */
  other: PatientJson;
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
type CareRole = 'trainer' | 'walker' | 'carer' | 'clinician';

const PATIENT_NAME = 'Biscuit Featherstonehaugh';
const HOUR = 3_600_000;

/** The text of a received mail, whatever transfer encoding the sender chose. */
function mailText(m: ReceivedMail): string {
  const encoding = (m.headers.get('content-transfer-encoding') ?? '').toLowerCase();
  if (encoding === 'base64') return Buffer.from(m.body, 'base64').toString('utf8');
  if (encoding !== 'quoted-printable') return m.body;
  const bytes = m.body
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

const statusOf = (res: LightMyRequestResponse) => `${res.statusCode} ${res.body}`;

describeEachEngine('sharing', ({ url }) => {
  let h: Harness;
  let mail: MailServer;
  before(async () => {
    mail = await startMailServer();
    h = await startHarness(url(), { CARETRAIL_SMTP_URL: mail.url });
  });
  after(async () => {
    await h.close();
    await mail.close();
  });

  const call = (
    user: Account | null,
    method: Method,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ) =>
    h.request({
      method,
      url: path,
      ...(user ? { token: user.token } : {}),
      ...(body !== undefined ? { body } : {}),
      ...(headers ? { headers } : {}),
    });

  /** The JSON answer, after checking the status. */
  function ok<T>(res: LightMyRequestResponse, status = 200): T {
    assert.equal(res.statusCode, status, res.body);
    return res.json<T>();
  }

  const later = (ms: number) => new Date(h.clock.now().getTime() + ms).toISOString();

  async function login(email: string, password = PASSWORD): Promise<Account> {
    const res = await call(null, 'POST', '/api/v1/auth/login', { email, password });
    const json = ok<{ token: string; user: { id: string } }>(res);
    return { token: json.token, userId: json.user.id, email };
  }

  async function newPatient(user: SignedIn, name: string, ownerEmail: string) {
    const res = await call(user, 'POST', '/api/v1/patients', {
      name,
      species: 'canine',
      owners: [{ name: 'Olive Owner', email: ownerEmail }],
    });
    return ok<PatientJson>(res, 201);
  }

  /** A clinic with an admin, a clinician and a nurse, and two patients with their owners. */
  async function clinic(): Promise<Clinic> {
    const admin = await h.newOrganization();
    const clinician = await h.newUser(admin, 'clinician');
    const nurse = await h.newUser(admin, 'nurse');
    const ownerEmail = uniqueEmail('owner');
    const patient = await newPatient(clinician, PATIENT_NAME, ownerEmail);
    const other = await newPatient(clinician, 'Pickles', uniqueEmail('other-owner'));
    const ownerId = patient.owners[0]?.id;
    assert.ok(ownerId);
    return { admin, clinician, nurse, patient, ownerId, ownerEmail, other };
  }

  /** Staff record the owner's in-person consent for `email`. */
  async function consent(c: Clinic, email: string, scope = 'read', extra = {}) {
    const res = await call(c.clinician, 'POST', `/api/v1/patients/${c.patient.id}/consents`, {
      granteeEmail: email,
      purpose: 'Behaviour training',
      scope,
      method: 'in_person',
      ownerId: c.ownerId,
      ...extra,
    });
    return ok<ConsentJson>(res, 201);
  }

  const shareRequest = (c: Clinic, email: string, role: string, access = 'read', extra = {}) =>
    call(c.clinician, 'POST', `/api/v1/patients/${c.patient.id}/shares`, {
      email,
      role,
      access,
      ...extra,
    });

  async function share(c: Clinic, email: string, role: string, access = 'read', extra = {}) {
    return ok<ShareJson>(await shareRequest(c, email, role, access, extra), 201);
  }

  function tokenOf(created: ShareJson): string {
    const match = /\/invitations\/([^/]+)$/.exec(created.invitation?.url ?? '');
    assert.ok(match?.[1], `an invitation link in ${JSON.stringify(created.invitation)}`);
    return match[1];
  }

  const acceptRequest = (token: string, name: string, password = PASSWORD) =>
    call(null, 'POST', `/api/v1/invitations/${token}/accept`, { name, password });

  /** Accepts the invitation of a new share and signs in. */
  async function accept(created: ShareJson, name = 'Tess Sharee'): Promise<Account> {
    ok<UserJson>(await acceptRequest(tokenOf(created), name));
    return login(created.email);
  }

  /** A person without an account, given a consented share and signed in. */
  async function sharee(c: Clinic, role: CareRole, access = 'read', name = 'Tess Sharee') {
    const email = uniqueEmail(role);
    await consent(c, email, access);
    const created = await share(c, email, role, access);
    return { ...(await accept(created, name)), share: created };
  }

  /** The owner on record, given an owner share and signed in. */
  async function owner(c: Clinic, access = 'read') {
    const created = await share(c, c.ownerEmail, 'owner', access);
    assert.equal(created.consentId, null, 'owner access rests on no consent');
    return { ...(await accept(created, 'Olive Owner')), share: created };
  }

  async function note(user: Account, patientId: string, body: string, extra = {}) {
    const res = await call(user, 'POST', `/api/v1/patients/${patientId}/notes`, {
      kind: 'clinical',
      body,
      ...extra,
    });
    return ok<ItemJson>(res, 201);
  }

  async function finalize(user: Account, id: string): Promise<void> {
    ok(await call(user, 'POST', `/api/v1/notes/${id}/finalize`));
  }

  /** A multipart upload of a small text file, as a browser sends it. */
  async function upload(user: Account, patientId: string, text: string) {
    const form = new FormData();
    form.append('file', new Blob([text], { type: 'text/plain' }), 'file.txt');
    const encoded = new Request('http://caretrail.test/', { method: 'POST', body: form });
    return h.runtime.app.inject({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/documents`,
      headers: {
        authorization: `Bearer ${user.token}`,
        'content-type': encoded.headers.get('content-type') ?? '',
      },
      payload: Buffer.from(await encoded.arrayBuffer()),
    });
  }

  async function uploaded(user: Account, patientId: string, text: string): Promise<ItemJson> {
    return ok<ItemJson>(await upload(user, patientId, text), 201);
  }

  /** The ids of a patient's notes or documents as `user` lists them. */
  async function listed(user: Account, patientId: string, what: 'notes' | 'documents') {
    const res = await call(user, 'GET', `/api/v1/patients/${patientId}/${what}`);
    return ok<{ items: ItemJson[] }>(res)
      .items.map((i) => i.id)
      .sort();
  }

  async function sharesOf(user: Account, patientId: string): Promise<ShareJson[]> {
    return ok<{ items: ShareJson[] }>(
      await call(user, 'GET', `/api/v1/patients/${patientId}/shares`),
    ).items;
  }

  const getPatient = (user: Account, id: string) => call(user, 'GET', `/api/v1/patients/${id}`);

  void test('a trainer without an account: consent first, then a mailed invitation without the patient name, then sign-in', async () => {
    const c = await clinic();
    const email = uniqueEmail('trainer');
    const refused = await shareRequest(c, email, 'trainer');
    assert.equal(refused.statusCode, 409, refused.body);
    assert.equal(errorOf(refused).code, 'consent_required');

    const given = await consent(c, email, 'read');
    const tooWide = await shareRequest(c, email, 'trainer', 'write');
    assert.equal(tooWide.statusCode, 409, 'a read consent does not cover write access');
    assert.equal(errorOf(tooWide).code, 'consent_required');

    const created = await share(c, email, 'trainer', 'read');
    assert.equal(created.status, 'pending');
    assert.equal(created.userId, null);
    assert.equal(created.consentId, given.id);
    const token = tokenOf(created);

    await h.runtime.relay.runUntilIdle();
    const received = mail.messages.filter((m) => m.envelopeTo.includes(email));
    assert.equal(received.length, 1, 'one invitation mail');
    const [invitation] = received;
    assert.ok(invitation);
    const text = mailText(invitation);
    assert.ok(text.includes(created.invitation?.url ?? '-'), `the link is in the mail: ${text}`);
    for (const secret of [PATIENT_NAME, 'Biscuit', 'Featherstonehaugh'])
      assert.ok(!`${invitation.subject}\n${text}`.includes(secret), `no "${secret}" in the mail`);

    const user = ok<UserJson>(await acceptRequest(token, 'Tess Trainer'));
    assert.deepEqual(
      [user.email, user.name, user.organizationId, user.role],
      [email, 'Tess Trainer', null, null],
    );
    const trainer = await login(email);
    const seen = ok<SharedPatientJson>(await getPatient(trainer, c.patient.id));
    assert.equal(seen.name, PATIENT_NAME);
    assert.deepEqual(seen.access, { via: 'share', role: 'trainer', write: false, expiresAt: null });
    const [listedShare] = await sharesOf(c.clinician, c.patient.id);
    assert.deepEqual(
      [listedShare?.id, listedShare?.status, listedShare?.userId],
      [created.id, 'active', trainer.userId],
    );
  });

  void test('bad shares are refused with 400 and none is created; reception may not share', async () => {
    const c = await clinic();
    const consented = uniqueEmail('walker');
    await consent(c, consented, 'write');
    const cases: [string, Record<string, unknown>][] = [
      ['yourself', { email: c.clinician.email.toUpperCase() }],
      ['a malformed email', { email: 'not an address' }],
      ['an unknown role', { role: 'groomer' }],
      ['an unknown access', { access: 'admin' }],
      ['an expiry in the past', { expiresAt: later(-60_000) }],
      ['an expiry that is no time', { expiresAt: 'next tuesday!' }],
      ['a nurse of the clinic', { email: c.nurse.email }],
      ['owner access for someone not an owner on record', { role: 'owner' }],
    ];
    for (const [label, change] of cases) {
      const res = await call(c.clinician, 'POST', `/api/v1/patients/${c.patient.id}/shares`, {
        email: consented,
        role: 'walker',
        access: 'read',
        ...change,
      });
      assert.equal(res.statusCode, 400, `${label}: ${res.body}`);
    }
    const reception = await h.newUser(c.admin, 'reception');
    const denied = await call(reception, 'POST', `/api/v1/patients/${c.patient.id}/shares`, {
      email: consented,
      role: 'walker',
      access: 'read',
    });
    assert.equal(denied.statusCode, 403, denied.body);
    assert.deepEqual(await sharesOf(c.clinician, c.patient.id), []);
  });

  void test('an invitation works once, wants a 12-character password, and expires after 72 hours', async () => {
    const c = await clinic();
    const firstEmail = uniqueEmail('carer');
    await consent(c, firstEmail);
    const first = await share(c, firstEmail, 'carer');
    assert.equal(first.invitation?.expiresAt, later(72 * HOUR));
    const secondEmail = uniqueEmail('walker');
    await consent(c, secondEmail);
    const second = await share(c, secondEmail, 'walker');

    const short = await acceptRequest(tokenOf(first), 'Cara Carer', 'elevenchars');
    assert.equal(short.statusCode, 400, short.body);
    const noAccount = await call(null, 'POST', '/api/v1/auth/login', {
      email: firstEmail,
      password: 'elevenchars',
    });
    assert.equal(noAccount.statusCode, 401, 'the refused password made no account');

    h.clock.advance(71 * HOUR);
    ok(await acceptRequest(tokenOf(first), 'Cara Carer'), 200);
    const replay = await acceptRequest(tokenOf(first), 'Mallory', 'another long password');
    assert.equal(replay.statusCode, 404, replay.body);
    const carer = await login(firstEmail);
    assert.equal((await getPatient(carer, c.patient.id)).statusCode, 200);

    h.clock.advance(2 * HOUR);
    const expired = await acceptRequest(tokenOf(second), 'Walt Walker');
    assert.equal(expired.statusCode, 404, expired.body);
    const none = await call(null, 'POST', '/api/v1/auth/login', {
      email: secondEmail,
      password: PASSWORD,
    });
    assert.equal(none.statusCode, 401, 'an expired link creates no account');
  });

  void test("revoking a share ends access on the sharee's next request; a second revoke is 409; a sharee cannot revoke", async () => {
    const c = await clinic();
    const trainer = await sharee(c, 'trainer');
    assert.equal((await getPatient(trainer, c.patient.id)).statusCode, 200);
    const path = `/api/v1/patients/${c.patient.id}/shares/${trainer.share.id}`;

    const bySharee = await call(trainer, 'DELETE', path);
    assert.ok([403, 404].includes(bySharee.statusCode), statusOf(bySharee));
    assert.equal((await getPatient(trainer, c.patient.id)).statusCode, 200, 'still shared');

    const revoked = ok<ShareJson>(await call(c.nurse, 'DELETE', path));
    assert.equal(revoked.status, 'revoked');
    assert.equal((await getPatient(trainer, c.patient.id)).statusCode, 404);
    const notes = await call(trainer, 'GET', `/api/v1/patients/${c.patient.id}/notes`);
    assert.equal(notes.statusCode, 404);
    assert.deepEqual(ok<{ items: unknown[] }>(await call(trainer, 'GET', '/api/v1/me/patients')), {
      items: [],
      nextCursor: null,
    });
    const again = await call(c.clinician, 'DELETE', path);
    assert.equal(again.statusCode, 409, again.body);
    const [listedShare] = await sharesOf(c.clinician, c.patient.id);
    assert.equal(listedShare?.status, 'revoked');
  });

  void test('a share past its expiresAt stops working without any job', async () => {
    const c = await clinic();
    const email = uniqueEmail('walker');
    await consent(c, email);
    const until = later(2 * HOUR);
    const walker = await accept(await share(c, email, 'walker', 'read', { expiresAt: until }));
    const before = ok<SharedPatientJson>(await getPatient(walker, c.patient.id));
    assert.equal(before.access.expiresAt, until);

    h.clock.advance(2 * HOUR + 1000);
    const again = await login(email);
    assert.equal((await getPatient(again, c.patient.id)).statusCode, 404);
    const mine = ok<{ items: unknown[] }>(await call(again, 'GET', '/api/v1/me/patients'));
    assert.deepEqual(mine.items, []);
    const clinician = await login(c.clinician.email);
    assert.equal((await sharesOf(clinician, c.patient.id))[0]?.status, 'expired');
  });

  void test('a share whose consent has expired stops working and is not listed as active', async () => {
    const c = await clinic();
    const email = uniqueEmail('carer');
    await consent(c, email, 'read', { expiresAt: later(HOUR) });
    const carer = await accept(await share(c, email, 'carer'));
    assert.equal((await getPatient(carer, c.patient.id)).statusCode, 200);

    h.clock.advance(HOUR + 1000);
    const again = await login(email);
    assert.equal((await getPatient(again, c.patient.id)).statusCode, 404);
    const clinician = await login(c.clinician.email);
    const [listedShare] = await sharesOf(clinician, c.patient.id);
    assert.notEqual(listedShare?.status, 'active', 'staff are not told the carer still has access');
  });

  void test('staff record consent for an owner on record; a signed form is a document of the same patient', async () => {
    const c = await clinic();
    const email = uniqueEmail('trainer');
    const form = await uploaded(c.nurse, c.patient.id, 'I consent to sharing with the trainer.');
    const foreignForm = await uploaded(c.nurse, c.other.id, 'A form about another dog.');
    const otherOwner = c.other.owners[0]?.id;
    assert.ok(otherOwner);
    const cases: [string, Record<string, unknown>][] = [
      ['no ownerId', { ownerId: undefined }],
      ["another patient's owner", { ownerId: otherOwner }],
      ['portal, which is the owner’s own', { method: 'portal' }],
      ['a signed form without its document', { method: 'signed_form' }],
      ['a signed form of another patient', { method: 'signed_form', documentId: foreignForm.id }],
    ];
    for (const [label, change] of cases) {
      const res = await call(c.nurse, 'POST', `/api/v1/patients/${c.patient.id}/consents`, {
        granteeEmail: email,
        purpose: 'Training',
        scope: 'read',
        method: 'in_person',
        ownerId: c.ownerId,
        ...change,
      });
      assert.equal(res.statusCode, 400, `${label}: ${res.body}`);
    }
    const signed = ok<ConsentJson>(
      await call(c.nurse, 'POST', `/api/v1/patients/${c.patient.id}/consents`, {
        granteeEmail: email,
        purpose: 'Training',
        scope: 'read',
        method: 'signed_form',
        ownerId: c.ownerId,
        documentId: form.id,
      }),
      201,
    );
    assert.deepEqual(
      [signed.method, signed.documentId, signed.consentedBy.ownerId, signed.recordedBy],
      ['signed_form', form.id, c.ownerId, c.nurse.userId],
    );
    const list = ok<{ items: ConsentJson[] }>(
      await call(c.clinician, 'GET', `/api/v1/patients/${c.patient.id}/consents`),
    );
    assert.deepEqual(
      list.items.map((i) => [i.id, i.status]),
      [[signed.id, 'active']],
    );
  });

  void test('the owner withdraws a consent in the portal: its shares end at once, and its history shows both versions', async () => {
    const c = await clinic();
    const olive = await owner(c);
    const walker = await sharee(c, 'walker', 'write');
    assert.equal((await getPatient(walker, c.patient.id)).statusCode, 200);
    const consentId = walker.share.consentId ?? '';

    const inPerson = await call(olive, 'POST', `/api/v1/patients/${c.patient.id}/consents`, {
      granteeEmail: uniqueEmail('carer'),
      purpose: 'Holiday care',
      scope: 'read',
      method: 'in_person',
    });
    assert.equal(inPerson.statusCode, 400, 'the owner consents through the portal');
    const portal = ok<ConsentJson>(
      await call(olive, 'POST', `/api/v1/patients/${c.patient.id}/consents`, {
        granteeEmail: uniqueEmail('carer'),
        purpose: 'Holiday care',
        scope: 'read',
        method: 'portal',
      }),
      201,
    );
    assert.deepEqual(portal.consentedBy, { ownerId: null, userId: olive.userId });
    const mine = ok<{ items: ConsentJson[] }>(
      await call(olive, 'GET', `/api/v1/patients/${c.patient.id}/consents`),
    );
    assert.ok(mine.items.some((i) => i.id === consentId));

    const revoked = ok<ConsentJson>(
      await call(olive, 'POST', `/api/v1/consents/${consentId}/revoke`),
    );
    assert.deepEqual(
      [revoked.status, revoked.version, revoked.revokedBy],
      ['revoked', 2, olive.userId],
    );
    assert.equal((await getPatient(walker, c.patient.id)).statusCode, 404);
    const write = await call(walker, 'POST', `/api/v1/patients/${c.patient.id}/notes`, {
      kind: 'behavior',
      body: 'Walked well.',
    });
    assert.equal(write.statusCode, 404, write.body);
    const listedShare = (await sharesOf(c.clinician, c.patient.id)).find(
      (s) => s.id === walker.share.id,
    );
    assert.equal(listedShare?.status, 'revoked');
    const detail = ok<ConsentJson>(await call(c.clinician, 'GET', `/api/v1/consents/${consentId}`));
    assert.deepEqual(
      detail.history?.map((v) => [v.version, v.change, v.actorId]),
      [
        [1, 'created', c.clinician.userId],
        [2, 'revoked', olive.userId],
      ],
    );
  });

  void test('internal notes never leave the clinic; shared notes reach referral clinicians and the care roles listed', async () => {
    const c = await clinic();
    const internal = await note(c.clinician, c.patient.id, 'Owner is behind on payments.');
    const forTrainer = await note(c.clinician, c.patient.id, 'Reactive to bikes.', {
      visibility: 'shared',
      sharedWith: ['trainer'],
    });
    const forWalker = await note(c.clinician, c.patient.id, 'Pulls on the lead.', {
      visibility: 'shared',
      sharedWith: ['walker'],
    });
    const forOwner = await note(c.clinician, c.patient.id, 'Home care advice.', {
      visibility: 'owner',
    });
    const otherClinic = await h.newOrganization();
    const referral = await h.newUser(otherClinic, 'clinician');
    await consent(c, referral.email);
    const notice = await share(c, referral.email, 'clinician');
    assert.equal(notice.invitation, null, 'an existing account gets no invitation');
    const trainer = await sharee(c, 'trainer');
    const walker = await sharee(c, 'walker');

    const all = [internal, forTrainer, forWalker, forOwner].map((n) => n.id).sort();
    assert.deepEqual(await listed(c.nurse, c.patient.id, 'notes'), all);
    assert.deepEqual(
      await listed(referral, c.patient.id, 'notes'),
      [forTrainer, forWalker, forOwner].map((n) => n.id).sort(),
    );
    assert.deepEqual(await listed(trainer, c.patient.id, 'notes'), [forTrainer.id]);
    assert.deepEqual(await listed(walker, c.patient.id, 'notes'), [forWalker.id]);
    const read = ok<ItemJson>(await call(trainer, 'GET', `/api/v1/notes/${forTrainer.id}`));
    assert.equal(read.body, 'Reactive to bikes.');
    for (const [who, id] of [
      [referral, internal.id],
      [trainer, internal.id],
      [trainer, forWalker.id],
      [trainer, forOwner.id],
      [walker, internal.id],
    ] as const) {
      const res = await call(who, 'GET', `/api/v1/notes/${id}`);
      assert.equal(res.statusCode, 404, res.body);
      assert.ok(!res.body.includes('payments'));
    }
  });

  void test('the owner sees final owner notes only once released, and a future release only when its time comes', async () => {
    const c = await clinic();
    const olive = await owner(c);
    const advice = await note(c.clinician, c.patient.id, 'Rest for a week.', {
      visibility: 'owner',
    });
    const draftRelease = await call(c.nurse, 'POST', `/api/v1/notes/${advice.id}/release`);
    assert.equal(draftRelease.statusCode, 409, 'a draft cannot be released');
    await finalize(c.clinician, advice.id);
    const shared = await note(c.clinician, c.patient.id, 'For the team only.', {
      visibility: 'shared',
    });
    await finalize(c.clinician, shared.id);
    const notForOwner = await call(c.nurse, 'POST', `/api/v1/notes/${shared.id}/release`);
    assert.equal(notForOwner.statusCode, 409, 'a shared note cannot be released to the owner');

    assert.deepEqual(await listed(olive, c.patient.id, 'notes'), []);
    assert.equal((await call(olive, 'GET', `/api/v1/notes/${advice.id}`)).statusCode, 404);
    const byOwner = await call(olive, 'POST', `/api/v1/notes/${advice.id}/release`);
    assert.ok([403, 404].includes(byOwner.statusCode), statusOf(byOwner));

    const released = ok<ItemJson>(
      await call(c.nurse, 'POST', `/api/v1/notes/${advice.id}/release`),
    );
    assert.equal(released.releaseAt, h.clock.now().toISOString());
    assert.deepEqual(await listed(olive, c.patient.id, 'notes'), [advice.id]);
    const seen = ok<ItemJson>(await call(olive, 'GET', `/api/v1/notes/${advice.id}`));
    assert.equal(seen.body, 'Rest for a week.');

    const results = await note(c.clinician, c.patient.id, 'Bloods normal.', {
      visibility: 'owner',
    });
    await finalize(c.clinician, results.id);
    const at = later(HOUR);
    const scheduled = ok<ItemJson>(
      await call(c.clinician, 'POST', `/api/v1/notes/${results.id}/release`, { at }),
    );
    assert.equal(scheduled.releaseAt, at);
    assert.deepEqual(await listed(olive, c.patient.id, 'notes'), [advice.id]);
    assert.equal((await call(olive, 'GET', `/api/v1/notes/${results.id}`)).statusCode, 404);

    h.clock.advance(HOUR + 1000);
    const next = await login(olive.email);
    assert.deepEqual(await listed(next, c.patient.id, 'notes'), [advice.id, results.id].sort());
    assert.equal((await call(next, 'GET', `/api/v1/notes/${results.id}`)).statusCode, 200);
  });

  void test('documents: the owner sees those marked for them and their own uploads; a care role only what is shared with it', async () => {
    const c = await clinic();
    const olive = await owner(c, 'write');
    const trainer = await sharee(c, 'trainer');
    const lab = await uploaded(c.clinician, c.patient.id, 'Internal lab report.');
    assert.equal(lab.visibility, 'internal');
    const leaflet = await uploaded(c.clinician, c.patient.id, 'Aftercare leaflet for the owner.');
    ok(
      await call(c.clinician, 'PATCH', `/api/v1/documents/${leaflet.id}`, { visibility: 'owner' }),
    );
    const plan = await uploaded(c.nurse, c.patient.id, 'Training plan.');
    ok(
      await call(c.nurse, 'PATCH', `/api/v1/documents/${plan.id}`, {
        visibility: 'shared',
        sharedWith: ['trainer'],
      }),
    );
    const photo = await uploaded(olive, c.patient.id, 'A photo from home.');
    assert.equal(photo.visibility, 'owner');

    assert.deepEqual(await listed(olive, c.patient.id, 'documents'), [leaflet.id, photo.id].sort());
    const content = await call(olive, 'GET', `/api/v1/documents/${leaflet.id}/content`);
    assert.equal(content.statusCode, 200);
    assert.equal(content.body, 'Aftercare leaflet for the owner.');
    assert.deepEqual(await listed(trainer, c.patient.id, 'documents'), [plan.id]);
    assert.deepEqual(
      await listed(c.clinician, c.patient.id, 'documents'),
      [lab.id, leaflet.id, plan.id, photo.id].sort(),
    );
    for (const [who, id] of [
      [olive, lab.id],
      [olive, plan.id],
      [trainer, lab.id],
      [trainer, leaflet.id],
      [trainer, photo.id],
    ] as const) {
      const res = await call(who, 'GET', `/api/v1/documents/${id}/content`);
      assert.equal(res.statusCode, 404, res.body);
      assert.ok(!res.body.includes('lab report'));
    }
  });

  void test("write access lets care roles add notes and files but never change others' work or the patient; read-only is 403", async () => {
    const c = await clinic();
    const trainer = await sharee(c, 'trainer', 'write');
    const walker = await sharee(c, 'walker', 'read');
    const olive = await owner(c, 'write');
    const plan = await note(c.clinician, c.patient.id, 'Plan: desensitisation.', {
      visibility: 'shared',
      sharedWith: ['trainer', 'walker'],
    });

    const session = await note(trainer, c.patient.id, 'Session 1: good focus.', {
      kind: 'training',
      visibility: 'shared',
      sharedWith: ['walker'],
    });
    assert.equal(session.authorId, trainer.userId);
    const own = await note(trainer, c.patient.id, 'My private reminder.');
    await uploaded(trainer, c.patient.id, 'Session video transcript.');
    const edited = await call(
      trainer,
      'PATCH',
      `/api/v1/notes/${session.id}`,
      { body: 'Session 1: great focus.' },
      { 'if-match': '"1"' },
    );
    assert.equal(edited.statusCode, 200, edited.body);

    const others = await call(
      trainer,
      'PATCH',
      `/api/v1/notes/${plan.id}`,
      { body: 'Plan: none needed.' },
      { 'if-match': '"1"' },
    );
    assert.equal(others.statusCode, 403, others.body);
    const rename = await call(
      trainer,
      'PATCH',
      `/api/v1/patients/${c.patient.id}`,
      { name: 'Renamed' },
      { 'if-match': `"${c.patient.version}"` },
    );
    assert.equal(rename.statusCode, 403, rename.body);
    const stillPlan = ok<ItemJson>(await call(c.clinician, 'GET', `/api/v1/notes/${plan.id}`));
    assert.equal(stillPlan.body, 'Plan: desensitisation.');
    const stillNamed = ok<PatientJson>(await getPatient(c.clinician, c.patient.id));
    assert.equal(stillNamed.name, PATIENT_NAME);

    for (const who of [walker, olive]) {
      const res = await call(who, 'POST', `/api/v1/patients/${c.patient.id}/notes`, {
        kind: 'behavior',
        body: 'Should not be stored.',
      });
      assert.equal(res.statusCode, 403, res.body);
    }
    assert.equal((await upload(walker, c.patient.id, 'Not stored.')).statusCode, 403);
    assert.deepEqual(
      await listed(walker, c.patient.id, 'notes'),
      [plan.id, session.id].sort(),
      "the walker sees what is shared with walkers, not the trainer's own note",
    );
    assert.deepEqual(
      await listed(c.nurse, c.patient.id, 'notes'),
      [plan.id, session.id, own.id].sort(),
    );
    assert.deepEqual(
      await listed(trainer, c.patient.id, 'notes'),
      [plan.id, session.id, own.id].sort(),
    );
  });

  void test("the owner portal lists my animals with my access, and the access report shows the trainer's reads", async () => {
    const c = await clinic();
    const olive = await owner(c);
    const trainer = await sharee(c, 'trainer', 'read', 'Tess Trainer');
    ok(await getPatient(trainer, c.patient.id));

    const mine = ok<{ items: SharedPatientJson[] }>(
      await call(olive, 'GET', '/api/v1/me/patients'),
    );
    assert.deepEqual(
      mine.items.map((p) => [p.id, p.name, p.access]),
      [
        [
          c.patient.id,
          PATIENT_NAME,
          { via: 'share', role: 'owner', write: false, expiresAt: null },
        ],
      ],
    );
    const report = ok<{
      items: { type: string; actor: { name: string | null; role: string | null } }[];
    }>(await call(olive, 'GET', `/api/v1/patients/${c.patient.id}/access-report`));
    assert.ok(
      report.items.some(
        (e) =>
          e.type === 'patient.read' &&
          e.actor.name === 'Tess Trainer' &&
          e.actor.role === 'trainer',
      ),
      JSON.stringify(report.items),
    );
    const shares = await sharesOf(olive, c.patient.id);
    assert.deepEqual(shares.map((s) => [s.role, s.status]).sort(), [
      ['owner', 'active'],
      ['trainer', 'active'],
    ]);
    for (const path of ['access-report', 'shares', 'consents']) {
      const res = await call(trainer, 'GET', `/api/v1/patients/${c.patient.id}/${path}`);
      assert.equal(res.statusCode, 403, `${path}: ${res.body}`);
    }
  });

  void test('a sharee reaches only the shared patient, and strangers reach nothing', async () => {
    const c = await clinic();
    const trainer = await sharee(c, 'trainer', 'write');
    const elsewhere = await note(c.clinician, c.other.id, 'About Pickles.', {
      visibility: 'shared',
      sharedWith: ['trainer'],
    });
    const stranger = await h.newUser(await h.newOrganization(), 'clinician');
    const requests: [Account, Method, string][] = [
      [trainer, 'GET', `/api/v1/patients/${c.other.id}`],
      [trainer, 'GET', `/api/v1/patients/${c.other.id}/notes`],
      [trainer, 'GET', `/api/v1/notes/${elsewhere.id}`],
      [trainer, 'POST', `/api/v1/patients/${c.other.id}/notes`],
      [stranger, 'GET', `/api/v1/patients/${c.patient.id}`],
      [stranger, 'GET', `/api/v1/patients/${c.patient.id}/shares`],
      [stranger, 'POST', `/api/v1/patients/${c.patient.id}/shares`],
    ];
    for (const [who, method, path] of requests) {
      const body =
        method === 'GET'
          ? undefined
          : path.endsWith('/shares')
            ? { email: uniqueEmail('x'), role: 'owner', access: 'read' }
            : { kind: 'training', body: 'x' };
      const res = await call(who, method, path, body);
      assert.equal(res.statusCode, 404, `${method} ${path}: ${res.body}`);
      assert.ok(!res.body.includes('Pickles') && !res.body.includes('Biscuit'));
    }
    const mine = ok<{ items: PatientJson[] }>(await call(trainer, 'GET', '/api/v1/me/patients'));
    assert.deepEqual(
      mine.items.map((p) => p.id),
      [c.patient.id],
    );
  });

  void test("every grant, acceptance, revoke and consent change is in the organization's audit trail", async () => {
    const c = await clinic();
    const given = await consent(c, uniqueEmail('carer'), 'read');
    const created = await share(c, given.granteeEmail, 'carer');
    const carer = await accept(created);
    ok(await call(c.clinician, 'DELETE', `/api/v1/patients/${c.patient.id}/shares/${created.id}`));
    ok(await call(c.nurse, 'POST', `/api/v1/consents/${given.id}/revoke`));

    const res = await call(
      c.admin,
      'GET',
      `/api/v1/audit?patientId=${c.patient.id}&outcome=success&limit=500`,
    );
    const events = ok<{ items: { type: string; actor: { userId: string | null } }[] }>(res).items;
    const actorsOf = (type: string) =>
      events.filter((e) => e.type === type).map((e) => e.actor.userId);
    assert.deepEqual(actorsOf('consent.create'), [c.clinician.userId]);
    assert.deepEqual(actorsOf('share.create'), [c.clinician.userId]);
    assert.deepEqual(actorsOf('share.revoke'), [c.clinician.userId]);
    assert.deepEqual(actorsOf('consent.revoke'), [c.nurse.userId]);
    assert.deepEqual(
      actorsOf('invitation.accept'),
      [carer.userId],
      `the acceptance is in the patient's trail: ${events.map((e) => e.type).join(', ')}`,
    );
  });
});
