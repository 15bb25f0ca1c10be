// Care-team sharing (issue 6) over HTTP on both engines: owner consents, shares and invitations
// (with the real mail they send), revocation and expiry taking effect on the next request, who
// sees which notes and documents, write access, the owner portal, and the audit trail.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { errorOf, type PatientJson } from '../helpers/api.js';
import { describeEachEngine } from '../helpers/engines.js';
import { invitationToken } from '../helpers/invitations.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';
import { startMailServer, type MailServer, type ReceivedMail } from '../helpers/mail.js';

/** Anyone signed in: staff, or a person outside any organization. */
type Account = { token: string; userId: string; email: string };

type AccessJson = { via: string; role: string; write: boolean; expiresAt: string | null };

type SharedPatientJson = PatientJson & { access: AccessJson };

interface ShareJson {
  id: string;
  email: string;
  role: string;
  consentId: string | null;
  status: 'active' | 'pending' | 'expired' | 'revoked';
  invitation?: { expiresAt: string } | null;
}

interface ConsentJson {
  id: string;
  granteeEmail: string;
  method: string;
  consentedBy: { ownerId: string | null; userId: string | null };
  documentId: string | null;
  recordedBy: string;
  status: string;
  version: number;
  revokedBy: string | null;
  history?: { version: number; change: string; actorId: string }[];
}

/** A note or a document, as far as these tests read them. */
interface ItemJson {
  id: string;
  body?: string;
  visibility: string;
  authorId?: string;
  releaseAt?: string | null;
}

type UserJson = { email: string; name: string; organizationId: string | null; role: string | null };
type LoginJson = { token: string; user: { id: string } };

interface Clinic {
  admin: SignedIn;
  clinician: SignedIn;
  nurse: SignedIn;
  patient: PatientJson;
  /** `/api/v1/patients/<patient id>` */
  path: string;
  ownerId: string;
  ownerEmail: string;
  /** Another patient of the same clinic, with another owner. */
  other: PatientJson;
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
type Page<T> = { items: T[] };

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

/** The answer, after checking its status. */
function ok(res: LightMyRequestResponse, status = 200): LightMyRequestResponse {
  assert.equal(res.statusCode, status, res.body);
  return res;
}

/** A refusal that does not reveal more than it must: 403 or 404, never a success. */
function refused(res: LightMyRequestResponse): void {
  assert.ok([403, 404].includes(res.statusCode), `${res.statusCode} ${res.body}`);
}

const sorted = (ids: string[]) => [...ids].sort();
/** Note or document fields: visible outside the clinic to these care roles. */
const forRoles = (...roles: string[]) => ({ visibility: 'shared', sharedWith: roles });

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
  const get = (user: Account, path: string) => call(user, 'GET', path);
  const post = (user: Account | null, path: string, body?: unknown) =>
    call(user, 'POST', path, body);

  const later = (ms: number) => new Date(h.clock.now().getTime() + ms).toISOString();

  async function login(email: string, password = PASSWORD): Promise<Account> {
    const res = await post(null, '/api/v1/auth/login', { email, password });
    const { token, user } = ok(res).json<LoginJson>();
    return { token, userId: user.id, email };
  }

  async function newPatient(user: SignedIn, name: string, ownerEmail: string) {
    const res = await post(user, '/api/v1/patients', {
      name,
      species: 'canine',
      owners: [{ name: 'Olive Owner', email: ownerEmail }],
    });
    return ok(res, 201).json<PatientJson>();
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
    const path = `/api/v1/patients/${patient.id}`;
    return { admin, clinician, nurse, patient, path, ownerId, ownerEmail, other };
  }

  /** Staff record the owner's in-person consent for `email`. */
  async function consent(c: Clinic, email: string, scope = 'read', extra = {}) {
    const res = await post(c.clinician, `${c.path}/consents`, {
      granteeEmail: email,
      purpose: 'Behaviour training',
      scope,
      method: 'in_person',
      ownerId: c.ownerId,
      ...extra,
    });
    return ok(res, 201).json<ConsentJson>();
  }

  const shareRequest = (c: Clinic, email: string, role: string, access = 'read', extra = {}) =>
    post(c.clinician, `${c.path}/shares`, { email, role, access, ...extra });

  async function share(c: Clinic, email: string, role: string, access = 'read', extra = {}) {
    return ok(await shareRequest(c, email, role, access, extra), 201).json<ShareJson>();
  }

  /** The link goes only to the invitee's mailbox: read it from the queued mail. */
  async function tokenOf(created: ShareJson): Promise<string> {
    assert.ok(created.invitation, `an invitation for ${created.email}`);
    return invitationToken(h, created.email);
  }

  const acceptRequest = (token: string, name: string, password = PASSWORD) =>
    post(null, `/api/v1/invitations/${token}/accept`, { name, password });

  /** Accepts the invitation of a new share and signs in. */
  async function accept(created: ShareJson, name = 'Tess Sharee'): Promise<Account> {
    ok(await acceptRequest(await tokenOf(created), name));
    return login(created.email);
  }

  /** A person without an account, given a consented share and signed in. */
  async function sharee(c: Clinic, role: string, access = 'read', name = 'Tess Sharee') {
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

  /** A draft note; `patientPath` is `/api/v1/patients/<id>`. */
  async function note(user: Account, patientPath: string, body: string, extra = {}) {
    const res = await post(user, `${patientPath}/notes`, {
      kind: 'clinical',
      body,
      ...extra,
    });
    return ok(res, 201).json<ItemJson>();
  }

  /** A final note with visibility "owner" (not yet released). */
  async function ownerNote(c: Clinic, body: string): Promise<ItemJson> {
    const created = await note(c.clinician, c.path, body, { visibility: 'owner' });
    ok(await post(c.clinician, `/api/v1/notes/${created.id}/finalize`));
    return created;
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
    return ok(await upload(user, patientId, text), 201).json<ItemJson>();
  }

  /** The ids of a patient's notes or documents as `user` lists them, sorted. */
  async function listed(user: Account, c: Clinic, what: 'notes' | 'documents') {
    const res = ok(await get(user, `${c.path}/${what}`));
    return sorted(res.json<Page<ItemJson>>().items.map((i) => i.id));
  }

  const sharesOf = async (user: Account, c: Clinic) =>
    ok(await get(user, `${c.path}/shares`)).json<Page<ShareJson>>().items;
  /** The shares of the patient as `user` lists them: "role:status", sorted. */
  const shareStates = async (user: Account, c: Clinic) =>
    sorted((await sharesOf(user, c)).map((s) => `${s.role}:${s.status}`));

  void test('a trainer without an account: consent first, then a mailed invitation without the patient name, then sign-in', async () => {
    const c = await clinic();
    const email = uniqueEmail('trainer');
    const noConsent = await shareRequest(c, email, 'trainer');
    assert.equal(noConsent.statusCode, 409, noConsent.body);
    assert.equal(errorOf(noConsent).code, 'consent_required');

    const given = await consent(c, email, 'read');
    const tooWide = await shareRequest(c, email, 'trainer', 'write');
    assert.equal(tooWide.statusCode, 409, 'a read consent does not cover write access');
    assert.equal(errorOf(tooWide).code, 'consent_required');

    const created = await share(c, email, 'trainer', 'read');
    assert.deepEqual(
      [created.status, created.consentId, 'url' in (created.invitation ?? {})],
      ['pending', given.id, false],
    );
    await h.runtime.relay.runUntilIdle();
    const received = mail.messages.filter((m) => m.envelopeTo.includes(email));
    assert.equal(received.length, 1, 'one invitation mail');
    const [invitation] = received;
    assert.ok(invitation);
    const text = mailText(invitation);
    const token = await tokenOf(created);
    assert.ok(text.includes(`/invitations#token=${token}`), `the link is in the mail: ${text}`);
    for (const secret of [PATIENT_NAME, 'Biscuit', 'Featherstonehaugh'])
      assert.ok(!`${invitation.subject}\n${text}`.includes(secret), `no "${secret}" in the mail`);

    const user = ok(await acceptRequest(await tokenOf(created), 'Tess Trainer')).json<UserJson>();
    assert.deepEqual(
      [user.email, user.name, user.organizationId, user.role],
      [email, 'Tess Trainer', null, null],
    );
    const trainer = await login(email);
    const seen = ok(await get(trainer, c.path)).json<SharedPatientJson>();
    assert.equal(seen.name, PATIENT_NAME);
    assert.deepEqual(seen.access, { via: 'share', role: 'trainer', write: false, expiresAt: null });
    assert.deepEqual(
      (await sharesOf(c.clinician, c)).map((s) => [s.id, s.status]),
      [[created.id, 'active']],
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
      const res = await shareRequest(c, consented, 'walker', 'read', change);
      assert.equal(res.statusCode, 400, `${label}: ${res.body}`);
    }
    const reception = await h.newUser(c.admin, 'reception');
    const denied = await post(reception, `${c.path}/shares`, {
      email: consented,
      role: 'walker',
      access: 'read',
    });
    assert.equal(denied.statusCode, 403, denied.body);
    assert.deepEqual(await sharesOf(c.clinician, c), []);
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

    const short = await acceptRequest(await tokenOf(first), 'Cara Carer', 'elevenchars');
    assert.equal(short.statusCode, 400, short.body);
    const signIn = (email: string, password: string) =>
      post(null, '/api/v1/auth/login', { email, password });
    const noAccount = await signIn(firstEmail, 'elevenchars');
    assert.equal(noAccount.statusCode, 401, 'the refused password made no account');

    h.clock.advance(71 * HOUR);
    ok(await acceptRequest(await tokenOf(first), 'Cara Carer'));
    const replay = await acceptRequest(await tokenOf(first), 'Mallory', 'another long password');
    assert.equal(replay.statusCode, 404, replay.body);
    const carer = await login(firstEmail);
    assert.equal((await get(carer, c.path)).statusCode, 200);

    h.clock.advance(2 * HOUR);
    const expired = await acceptRequest(await tokenOf(second), 'Walt Walker');
    assert.equal(expired.statusCode, 404, expired.body);
    const none = await signIn(secondEmail, PASSWORD);
    assert.equal(none.statusCode, 401, 'an expired link creates no account');
  });

  void test("revoking a share ends access on the sharee's next request; a second revoke is 409; a sharee cannot revoke", async () => {
    const c = await clinic();
    const trainer = await sharee(c, 'trainer');
    assert.equal((await get(trainer, c.path)).statusCode, 200);
    const path = `${c.path}/shares/${trainer.share.id}`;

    refused(await call(trainer, 'DELETE', path));
    assert.equal((await get(trainer, c.path)).statusCode, 200, 'still shared');

    const revoked = ok(await call(c.nurse, 'DELETE', path)).json<ShareJson>();
    assert.equal(revoked.status, 'revoked');
    assert.equal((await get(trainer, c.path)).statusCode, 404);
    assert.equal((await get(trainer, `${c.path}/notes`)).statusCode, 404);
    assert.deepEqual(ok(await get(trainer, '/api/v1/me/patients')).json<Page<unknown>>().items, []);
    const again = await call(c.clinician, 'DELETE', path);
    assert.equal(again.statusCode, 409, again.body);
    assert.deepEqual(await shareStates(c.clinician, c), ['trainer:revoked']);
  });

  void test('a share past its expiresAt stops working without any job', async () => {
    const c = await clinic();
    const email = uniqueEmail('walker');
    await consent(c, email);
    const until = later(2 * HOUR);
    const walker = await accept(await share(c, email, 'walker', 'read', { expiresAt: until }));
    assert.equal(ok(await get(walker, c.path)).json<SharedPatientJson>().access.expiresAt, until);

    h.clock.advance(2 * HOUR + 1000);
    const again = await login(email);
    assert.equal((await get(again, c.path)).statusCode, 404);
    assert.deepEqual(ok(await get(again, '/api/v1/me/patients')).json<Page<unknown>>().items, []);
    const clinician = await login(c.clinician.email);
    assert.deepEqual(await shareStates(clinician, c), ['walker:expired']);
  });

  void test('a share whose consent has expired stops working and is listed as expired', async () => {
    const c = await clinic();
    const email = uniqueEmail('carer');
    await consent(c, email, 'read', { expiresAt: later(HOUR) });
    const carer = await accept(await share(c, email, 'carer'));
    assert.equal((await get(carer, c.path)).statusCode, 200);

    h.clock.advance(HOUR + 1000);
    const again = await login(email);
    assert.equal((await get(again, c.path)).statusCode, 404);
    const clinician = await login(c.clinician.email);
    const states = await shareStates(clinician, c);
    assert.deepEqual(states, ['carer:expired'], 'staff are not told the carer still has access');
  });

  void test('staff record consent for an owner on record; a signed form is a document of the same patient', async () => {
    const c = await clinic();
    const email = uniqueEmail('trainer');
    const form = await uploaded(c.nurse, c.patient.id, 'I consent to sharing with the trainer.');
    const foreignForm = await uploaded(c.nurse, c.other.id, 'A form about another dog.');
    const otherOwner = c.other.owners[0]?.id;
    assert.ok(otherOwner);
    const consentBody = { granteeEmail: email, purpose: 'Training', scope: 'read' };
    const cases: [string, Record<string, unknown>][] = [
      ['no ownerId', { method: 'in_person' }],
      ["another patient's owner", { method: 'in_person', ownerId: otherOwner }],
      ['portal, which is the owner’s own', { method: 'portal', ownerId: c.ownerId }],
      ['a signed form without its document', { method: 'signed_form', ownerId: c.ownerId }],
      [
        'a signed form of another patient',
        { method: 'signed_form', ownerId: c.ownerId, documentId: foreignForm.id },
      ],
    ];
    for (const [label, change] of cases) {
      const res = await post(c.nurse, `${c.path}/consents`, { ...consentBody, ...change });
      assert.equal(res.statusCode, 400, `${label}: ${res.body}`);
    }
    const signed = ok(
      await post(c.nurse, `${c.path}/consents`, {
        ...consentBody,
        method: 'signed_form',
        ownerId: c.ownerId,
        documentId: form.id,
      }),
      201,
    ).json<ConsentJson>();
    assert.deepEqual(
      [signed.method, signed.documentId, signed.consentedBy.ownerId, signed.recordedBy],
      ['signed_form', form.id, c.ownerId, c.nurse.userId],
    );
    const list = ok(await get(c.clinician, `${c.path}/consents`)).json<Page<ConsentJson>>();
    assert.deepEqual(
      list.items.map((i) => `${i.id}:${i.status}`),
      [`${signed.id}:active`],
    );
  });

  void test('the owner withdraws a consent in the portal: its shares end at once, and its history shows both versions', async () => {
    const c = await clinic();
    const olive = await owner(c);
    const walker = await sharee(c, 'walker', 'write');
    assert.equal((await get(walker, c.path)).statusCode, 200);
    const consentId = walker.share.consentId ?? '';

    const ownConsent = { granteeEmail: uniqueEmail('carer'), purpose: 'Holidays', scope: 'read' };
    const inPerson = await post(olive, `${c.path}/consents`, {
      ...ownConsent,
      method: 'in_person',
    });
    assert.equal(inPerson.statusCode, 400, 'the owner consents through the portal');
    const portal = ok(
      await post(olive, `${c.path}/consents`, { ...ownConsent, method: 'portal' }),
      201,
    ).json<ConsentJson>();
    assert.deepEqual(portal.consentedBy, { ownerId: null, userId: olive.userId });
    const mine = ok(await get(olive, `${c.path}/consents`)).json<Page<ConsentJson>>();
    assert.deepEqual(sorted(mine.items.map((i) => i.id)), sorted([consentId, portal.id]));

    const revoked = ok(
      await post(olive, `/api/v1/consents/${consentId}/revoke`),
    ).json<ConsentJson>();
    assert.deepEqual(
      [revoked.status, revoked.version, revoked.revokedBy],
      ['revoked', 2, olive.userId],
    );
    assert.equal((await get(walker, c.path)).statusCode, 404);
    const write = await post(walker, `${c.path}/notes`, { kind: 'behavior', body: 'Walked well.' });
    assert.equal(write.statusCode, 404, write.body);
    assert.deepEqual(await shareStates(c.clinician, c), ['owner:active', 'walker:revoked']);
    const detail = ok(await get(c.clinician, `/api/v1/consents/${consentId}`)).json<ConsentJson>();
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
    const internal = await note(c.clinician, c.path, 'Owner is behind on payments.');
    const forTrainer = await note(c.clinician, c.path, 'Reactive to bikes.', forRoles('trainer'));
    const forWalker = await note(c.clinician, c.path, 'Pulls on the lead.', forRoles('walker'));
    const forOwner = await note(c.clinician, c.path, 'Home care.', { visibility: 'owner' });
    const referral = await h.newUser(await h.newOrganization(), 'clinician');
    await consent(c, referral.email);
    const notice = await share(c, referral.email, 'clinician');
    // A staff account's email was typed by an admin: its holder confirms with the password.
    assert.ok(notice.invitation, 'a staff account confirms the share from the mailed link');
    ok(await acceptRequest(await tokenOf(notice), 'ignored'));
    const trainer = await sharee(c, 'trainer');
    const walker = await sharee(c, 'walker');

    const ids = (...items: ItemJson[]) => sorted(items.map((n) => n.id));
    assert.deepEqual(
      await listed(c.nurse, c, 'notes'),
      ids(internal, forTrainer, forWalker, forOwner),
    );
    assert.deepEqual(await listed(referral, c, 'notes'), ids(forTrainer, forWalker, forOwner));
    assert.deepEqual(await listed(trainer, c, 'notes'), [forTrainer.id]);
    assert.deepEqual(await listed(walker, c, 'notes'), [forWalker.id]);
    const read = ok(await get(trainer, `/api/v1/notes/${forTrainer.id}`)).json<ItemJson>();
    assert.equal(read.body, 'Reactive to bikes.');
    for (const [who, id] of [
      [referral, internal.id],
      [trainer, internal.id],
      [trainer, forWalker.id],
      [trainer, forOwner.id],
      [walker, internal.id],
    ] as const) {
      const res = await get(who, `/api/v1/notes/${id}`);
      assert.equal(res.statusCode, 404, res.body);
      assert.ok(!res.body.includes('payments'));
    }
  });

  void test('the owner sees final owner notes only once released, and a future release only when its time comes', async () => {
    const c = await clinic();
    const olive = await owner(c);
    const draft = await note(c.clinician, c.path, 'Draft advice.', { visibility: 'owner' });
    const draftRelease = await post(c.nurse, `/api/v1/notes/${draft.id}/release`);
    assert.equal(draftRelease.statusCode, 409, 'a draft cannot be released');
    const shared = await note(c.clinician, c.path, 'For the team.', { visibility: 'shared' });
    ok(await post(c.clinician, `/api/v1/notes/${shared.id}/finalize`));
    const notForOwner = await post(c.nurse, `/api/v1/notes/${shared.id}/release`);
    assert.equal(notForOwner.statusCode, 409, 'a shared note cannot be released to the owner');

    const advice = await ownerNote(c, 'Rest for a week.');
    assert.deepEqual(await listed(olive, c, 'notes'), []);
    assert.equal((await get(olive, `/api/v1/notes/${advice.id}`)).statusCode, 404);
    refused(await post(olive, `/api/v1/notes/${advice.id}/release`));
    assert.deepEqual(await listed(olive, c, 'notes'), [], 'the owner could not release it');

    const released = ok(await post(c.nurse, `/api/v1/notes/${advice.id}/release`)).json<ItemJson>();
    assert.equal(released.releaseAt, h.clock.now().toISOString());
    assert.deepEqual(await listed(olive, c, 'notes'), [advice.id]);
    const seen = ok(await get(olive, `/api/v1/notes/${advice.id}`)).json<ItemJson>();
    assert.equal(seen.body, 'Rest for a week.');

    const results = await ownerNote(c, 'Bloods normal.');
    const at = later(HOUR);
    const scheduled = ok(
      await post(c.clinician, `/api/v1/notes/${results.id}/release`, { at }),
    ).json<ItemJson>();
    assert.equal(scheduled.releaseAt, at);
    assert.deepEqual(await listed(olive, c, 'notes'), [advice.id]);
    assert.equal((await get(olive, `/api/v1/notes/${results.id}`)).statusCode, 404);

    h.clock.advance(HOUR + 1000);
    const next = await login(olive.email);
    assert.deepEqual(await listed(next, c, 'notes'), sorted([advice.id, results.id]));
    assert.equal(
      ok(await get(next, `/api/v1/notes/${results.id}`)).json<ItemJson>().body,
      'Bloods normal.',
    );
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
    ok(await call(c.nurse, 'PATCH', `/api/v1/documents/${plan.id}`, forRoles('trainer')));
    const photo = await uploaded(olive, c.patient.id, 'A photo from home.');
    assert.equal(photo.visibility, 'owner');

    assert.deepEqual(await listed(olive, c, 'documents'), sorted([leaflet.id, photo.id]));
    const content = await get(olive, `/api/v1/documents/${leaflet.id}/content`);
    assert.equal(content.statusCode, 200);
    assert.equal(content.body, 'Aftercare leaflet for the owner.');
    assert.deepEqual(await listed(trainer, c, 'documents'), [plan.id]);
    assert.deepEqual(
      await listed(c.clinician, c, 'documents'),
      sorted([lab.id, leaflet.id, plan.id, photo.id]),
    );
    for (const [who, id] of [
      [olive, lab.id],
      [olive, plan.id],
      [trainer, lab.id],
      [trainer, leaflet.id],
      [trainer, photo.id],
    ] as const) {
      const res = await get(who, `/api/v1/documents/${id}/content`);
      assert.equal(res.statusCode, 404, res.body);
      assert.ok(!res.body.includes('lab report'));
    }
  });

  void test("write access lets care roles add notes and files but never change others' work or the patient; read-only is 403", async () => {
    const c = await clinic();
    const trainer = await sharee(c, 'trainer', 'write');
    const walker = await sharee(c, 'walker', 'read');
    const olive = await owner(c, 'write');
    const plan = await note(
      c.clinician,
      c.path,
      'Plan: desensitisation.',
      forRoles('trainer', 'walker'),
    );

    const session = await note(trainer, c.path, 'Session 1: good focus.', {
      kind: 'training',
      ...forRoles('walker'),
    });
    assert.equal(session.authorId, trainer.userId);
    const own = await note(trainer, c.path, 'My private reminder.');
    await uploaded(trainer, c.patient.id, 'Session video transcript.');
    const edit = (user: Account, path: string, body: unknown, version: number) =>
      call(user, 'PATCH', path, body, { 'if-match': `"${version}"` });
    const edited = await edit(trainer, `/api/v1/notes/${session.id}`, { body: 'Great focus.' }, 1);
    assert.equal(edited.statusCode, 200, edited.body);

    const others = await edit(trainer, `/api/v1/notes/${plan.id}`, { body: 'No plan.' }, 1);
    assert.equal(others.statusCode, 403, others.body);
    const rename = await edit(trainer, c.path, { name: 'Renamed' }, c.patient.version);
    assert.equal(rename.statusCode, 403, rename.body);
    const stillPlan = ok(await get(c.clinician, `/api/v1/notes/${plan.id}`)).json<ItemJson>();
    assert.equal(stillPlan.body, 'Plan: desensitisation.');
    assert.equal(ok(await get(c.clinician, c.path)).json<PatientJson>().name, PATIENT_NAME);

    for (const who of [walker, olive]) {
      const res = await post(who, `${c.path}/notes`, { kind: 'behavior', body: 'Not stored.' });
      assert.equal(res.statusCode, 403, res.body);
    }
    assert.equal((await upload(walker, c.patient.id, 'Not stored.')).statusCode, 403);
    assert.deepEqual(
      await listed(walker, c, 'notes'),
      sorted([plan.id, session.id]),
      "the walker sees what is shared with walkers, not the trainer's own note",
    );
    const everything = sorted([plan.id, session.id, own.id]);
    assert.deepEqual(await listed(c.nurse, c, 'notes'), everything);
    assert.deepEqual(await listed(trainer, c, 'notes'), everything);
  });

  void test("the owner portal lists my animals with my access, and the access report shows the trainer's reads", async () => {
    const c = await clinic();
    const olive = await owner(c);
    const trainer = await sharee(c, 'trainer', 'read', 'Tess Trainer');
    ok(await get(trainer, c.path));

    const mine = ok(await get(olive, '/api/v1/me/patients')).json<Page<SharedPatientJson>>();
    const access = { via: 'share', role: 'owner', write: false, expiresAt: null };
    assert.deepEqual(
      mine.items.map((p) => [p.id, p.name, p.access]),
      [[c.patient.id, PATIENT_NAME, access]],
    );
    type Entry = { type: string; actor: { name: string | null; role: string | null } };
    const report = ok(await get(olive, `${c.path}/access-report`)).json<Page<Entry>>();
    const reads = report.items.filter(
      (e) => e.type === 'patient.read' && e.actor.role === 'trainer',
    );
    assert.deepEqual(
      reads.map((e) => e.actor.name),
      ['Tess Trainer'],
      JSON.stringify(report.items),
    );
    assert.deepEqual(await shareStates(olive, c), ['owner:active', 'trainer:active']);
    for (const path of ['access-report', 'shares', 'consents']) {
      const res = await get(trainer, `${c.path}/${path}`);
      assert.equal(res.statusCode, 403, `${path}: ${res.body}`);
    }
  });

  void test('a sharee reaches only the shared patient, and strangers reach nothing', async () => {
    const c = await clinic();
    const trainer = await sharee(c, 'trainer', 'write');
    const stranger = await h.newUser(await h.newOrganization(), 'clinician');
    const otherPath = `/api/v1/patients/${c.other.id}`;
    const elsewhere = await note(c.clinician, otherPath, 'About Pickles.', forRoles('trainer'));
    const newShare = { email: c.ownerEmail, role: 'owner', access: 'read' };
    const requests: [Account, Method, string, unknown?][] = [
      [trainer, 'GET', otherPath],
      [trainer, 'GET', `${otherPath}/notes`],
      [trainer, 'GET', `/api/v1/notes/${elsewhere.id}`],
      [trainer, 'POST', `${otherPath}/notes`, { kind: 'training', body: 'x' }],
      [stranger, 'GET', c.path],
      [stranger, 'GET', `${c.path}/shares`],
      [stranger, 'POST', `${c.path}/shares`, newShare],
    ];
    for (const [who, method, path, body] of requests) {
      const res = await call(who, method, path, body);
      assert.equal(res.statusCode, 404, `${method} ${path}: ${res.body}`);
      assert.ok(!res.body.includes('Pickles') && !res.body.includes('Biscuit'));
    }
    const mine = ok(await get(trainer, '/api/v1/me/patients')).json<Page<PatientJson>>();
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
    ok(await call(c.clinician, 'DELETE', `${c.path}/shares/${created.id}`));
    ok(await post(c.nurse, `/api/v1/consents/${given.id}/revoke`));

    const query = `patientId=${c.patient.id}&outcome=success&limit=500`;
    type Event = { type: string; actor: { userId: string | null } };
    const events = ok(await get(c.admin, `/api/v1/audit?${query}`)).json<Page<Event>>().items;
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

  /** The owner signed in through the invitation of an owner share. */
  async function ownerOf(c: Clinic, access = 'read'): Promise<Account> {
    return accept(await share(c, c.ownerEmail, 'owner', access), 'Olive Owner');
  }

  void test('a note’s history shows the owner only its final versions, never an earlier internal draft', async () => {
    const c = await clinic();
    const owner = await ownerOf(c);
    const draft = ok(
      await post(c.clinician, `${c.path}/notes`, {
        kind: 'clinical',
        body: 'Internal: suspect the owner skips the medication.',
      }),
      201,
    ).json<ItemJson>();
    const edit = await call(
      c.clinician,
      'PATCH',
      `/api/v1/notes/${draft.id}`,
      { body: 'Recovering well; keep the cone on for a week.', visibility: 'owner' },
      { 'if-match': '"1"' },
    );
    ok(edit);
    ok(await post(c.clinician, `/api/v1/notes/${draft.id}/finalize`));
    ok(await post(c.clinician, `/api/v1/notes/${draft.id}/release`));
    const history = ok(await get(owner, `/api/v1/notes/${draft.id}/history`));
    assert.ok(!history.body.includes('skips the medication'), 'the internal draft stays internal');
    const changes = history.json<{ items: { change: string }[] }>().items.map((i) => i.change);
    assert.deepEqual(changes, ['finalized', 'released']);
    const staff = ok(await get(c.clinician, `/api/v1/notes/${draft.id}/history`));
    assert.ok(staff.body.includes('skips the medication'), 'the clinic keeps the full history');
  });

  void test('someone removed from the patient’s owners loses owner access at once', async () => {
    const c = await clinic();
    const owner = await ownerOf(c);
    ok(await get(owner, c.path));
    const current = ok(await get(c.clinician, c.path)).json<PatientJson>();
    const change = await call(
      c.clinician,
      'PATCH',
      c.path,
      { owners: [{ name: 'New Owner', email: uniqueEmail('new-owner'), phone: '555-0100' }] },
      { 'if-match': `"${current.version}"` },
    );
    ok(change);
    const after = await get(owner, c.path);
    assert.equal(after.statusCode, 404, 'the former owner no longer reaches the patient');
    assert.ok(!after.body.includes('555-0100'), 'nor the new owner’s contact');
    assert.deepEqual(
      (await sharesOf(c.clinician, c)).map((s) => [s.role, s.status]),
      [['owner', 'revoked']],
    );
  });

  void test('the owner’s access report names who accessed the record, not which internal notes exist', async () => {
    const c = await clinic();
    const owner = await ownerOf(c);
    ok(
      await post(c.clinician, `${c.path}/notes`, { kind: 'clinical', body: 'Internal only.' }),
      201,
    );
    ok(await get(c.nurse, c.path));
    const report = ok(await get(owner, `${c.path}/access-report?limit=500`)).json<{
      items: { type: string; actor: { name: string } }[];
    }>();
    const types = new Set(report.items.map((i) => i.type));
    assert.ok(types.has('patient.read'), 'the nurse’s read is named');
    assert.ok(types.has('record.change'), 'the note written is a generic change');
    assert.ok(!types.has('note.create'), 'no note types reach the owner');
    const staff = ok(await get(c.admin, `${c.path}/access-report?limit=500`)).json<{
      items: { type: string }[];
    }>();
    assert.ok(
      staff.items.some((i) => i.type === 'note.create'),
      'the clinic sees the detail',
    );
  });

  void test('an invitation link is never shown to staff and never written to the log', async () => {
    const c = await clinic();
    const email = uniqueEmail('walker');
    await consent(c, email);
    const created = await share(c, email, 'walker');
    assert.deepEqual(Object.keys(created.invitation ?? {}), ['expiresAt']);
    const token = await tokenOf(created);
    ok(await acceptRequest(token, 'Wally Walker'));
    assert.equal((await acceptRequest(token, 'Wally Walker')).statusCode, 404);
    assert.ok(!h.logs.some((l) => l.includes(token)), 'the token is in no log line');
    assert.ok(
      h.logs.some((l) => l.includes('/api/v1/invitations/:token/accept')),
      'the request is logged by its route',
    );
  });

  void test('a retried share or consent with the same Idempotency-Key is made once, and invited once', async () => {
    const c = await clinic();
    const email = uniqueEmail('walker');
    const key = { 'idempotency-key': `consent-${email}` };
    const body = {
      granteeEmail: email,
      purpose: 'Walks',
      scope: 'read',
      method: 'in_person',
      ownerId: c.ownerId,
    };
    const first = ok(await call(c.clinician, 'POST', `${c.path}/consents`, body, key), 201);
    const again = ok(await call(c.clinician, 'POST', `${c.path}/consents`, body, key), 201);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.json<ConsentJson>().id, first.json<ConsentJson>().id);

    const shareKey = { 'idempotency-key': `share-${email}` };
    const shareBody = { email, role: 'walker', access: 'read' };
    const made = ok(await call(c.clinician, 'POST', `${c.path}/shares`, shareBody, shareKey), 201);
    const replay = ok(
      await call(c.clinician, 'POST', `${c.path}/shares`, shareBody, shareKey),
      201,
    );
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(replay.json<ShareJson>().id, made.json<ShareJson>().id);
    const other = await call(
      c.clinician,
      'POST',
      `${c.path}/shares`,
      { ...shareBody, access: 'write' },
      shareKey,
    );
    assert.equal(other.statusCode, 422, 'the same key with another body');
    assert.equal((await sharesOf(c.clinician, c)).length, 1, 'one share');
    const mails = await h.runtime.db.read
      .selectFrom('outbox')
      .select('payload')
      .where('topic', '=', 'mail')
      .execute();
    const invitations = mails.filter((m) => (JSON.parse(m.payload) as { to: string }).to === email);
    assert.equal(invitations.length, 1, 'one invitation mail');
  });
});
