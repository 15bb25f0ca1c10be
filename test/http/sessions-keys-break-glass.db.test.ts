// Sessions (inactivity logoff, "my sessions", admin force-logout), integration keys (shown once,
// stored hashed, ingest-only, revocable, per organization) and break-glass access (read-only,
// time-limited, marked BTG in the audit trail, alerted and mailed to the patient's admins), on
// both engines. Only time is moved by hand; mail goes to a real SMTP server.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { errorOf } from '../helpers/api.js';
import { describeEachEngine } from '../helpers/engines.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';
import { startMailServer, type MailServer, type ReceivedMail } from '../helpers/mail.js';
import type { Role } from '../../src/domain/roles.js';

const MINUTE = 60_000;
const IDLE_MINUTES = 10;
const BREAK_GLASS_MINUTES = 5;

type Nullable = string | null;
type SessionJson = { id: string; createdAt: string; lastSeenAt: string; expiresAt: string } & {
  ip: Nullable;
  userAgent: Nullable;
  current: boolean;
};
type KeyJson = { id: string; name: string; createdAt: string; createdBy: string } & {
  lastUsedAt: Nullable;
  revokedAt: Nullable;
};
type CreatedKeyJson = KeyJson & { key: string; secret: string };
const KEY_FIELDS = ['createdAt', 'createdBy', 'id', 'lastUsedAt', 'name', 'revokedAt'];

interface AuditEventJson {
  id: string;
  type: string;
  outcome: string;
  actor: { userId: string | null; role: string | null; organizationId: string | null };
  patientId: string | null;
  entity: { type: string; id: string | null } | null;
  purpose: string | null;
  detail: Record<string, unknown> | null;
}

type NoteJson = { id: string; body: string; visibility: string };

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/** Undoes quoted-printable (soft line breaks and =XX), so the text can be searched as sent. */
function readableBody(mail: ReceivedMail): string {
  if (!/quoted-printable/i.test(mail.headers.get('content-transfer-encoding') ?? ''))
    return mail.body;
  return mail.body
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

describeEachEngine('sessions, integration keys and break-glass', ({ url }) => {
  let mail: MailServer;
  let h: Harness;
  before(async () => {
    mail = await startMailServer();
    h = await startHarness(url(), {
      CARETRAIL_SMTP_URL: mail.url,
      CARETRAIL_SESSION_IDLE_MINUTES: String(IDLE_MINUTES),
      CARETRAIL_BREAK_GLASS_MINUTES: String(BREAK_GLASS_MINUTES),
    });
  });
  after(async () => {
    await h.close();
    await mail.close();
  });

  const call = (token: string, method: Method, path: string, body?: unknown) =>
    h.request({ method, url: path, token, ...(body !== undefined ? { body } : {}) });

  /** A 401 in the one error shape: nothing but { error: { code, message, requestId } }. */
  function assertSignedOut(res: LightMyRequestResponse, what: string): void {
    assert.equal(res.statusCode, 401, `${what}: ${res.body}`);
    assert.deepEqual(Object.keys(res.json<object>()), ['error'], what);
    const error = errorOf(res);
    assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'requestId'], what);
    assert.equal(error.code, 'unauthenticated', what);
    assert.equal(error.requestId, res.headers['x-request-id'], what);
  }

  async function signIn(email: string, from: { ip?: string; userAgent?: string } = {}) {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email, password: PASSWORD },
      ...(from.ip !== undefined ? { remoteAddress: from.ip } : {}),
      ...(from.userAgent !== undefined ? { headers: { 'user-agent': from.userAgent } } : {}),
    });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ token: string }>().token;
  }

  /** A signed-in user with a name of our choosing (newUser names everyone "<role> user"). */
  async function addUser(admin: SignedIn, role: Role, name: string): Promise<SignedIn> {
    const email = uniqueEmail(role);
    const user = { email, name, role, password: PASSWORD };
    const res = await call(admin.token, 'POST', '/api/v1/users', user);
    assert.equal(res.statusCode, 201, res.body);
    const { id, organizationId } = res.json<{ id: string; organizationId: string }>();
    return { token: await signIn(email), userId: id, organizationId, email, role };
  }

  async function newPatient(vet: SignedIn, name: string, ownerName: string): Promise<string> {
    const res = await call(vet.token, 'POST', '/api/v1/patients', {
      name,
      species: 'canine',
      owners: [{ name: ownerName, email: uniqueEmail('owner') }],
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ id: string }>().id;
  }

  async function newNote(vet: SignedIn, patientId: string, body: string, visibility: string) {
    const note = { kind: 'clinical', body, visibility };
    const res = await call(vet.token, 'POST', `/api/v1/patients/${patientId}/notes`, note);
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ id: string }>().id;
  }

  async function mySessions(token: string): Promise<SessionJson[]> {
    const res = await call(token, 'GET', '/api/v1/me/sessions');
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ items: SessionJson[] }>().items;
  }

  async function auditOf(admin: SignedIn, query: string): Promise<AuditEventJson[]> {
    const res = await call(admin.token, 'GET', `/api/v1/audit?limit=500&${query}`);
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ items: AuditEventJson[] }>().items;
  }

  async function createKey(admin: SignedIn, name: string): Promise<CreatedKeyJson> {
    const res = await call(admin.token, 'POST', '/api/v1/integrations/keys', { name });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<CreatedKeyJson>();
  }

  async function listKeys(admin: SignedIn) {
    const res = await call(admin.token, 'GET', '/api/v1/integrations/keys');
    assert.equal(res.statusCode, 200, res.body);
    return { res, items: res.json<{ items: KeyJson[] }>().items };
  }

  // ---------------------------------------------------------------------------------------------
  // Sessions

  test('a session unused for the idle time ends with 401, one used regularly outlives it', async () => {
    const admin = await h.newOrganization();
    const idle = await signIn(admin.email);

    // 24 minutes of work, a request every 4: more than twice the idle time.
    for (let step = 1; step <= 6; step++) {
      h.clock.advance(4 * MINUTE);
      const res = await call(admin.token, 'GET', '/api/v1/me');
      assert.equal(res.statusCode, 200, `after ${step * 4} minutes of regular use: ${res.body}`);
    }
    assertSignedOut(await call(idle, 'GET', '/api/v1/me'), 'the session left alone');

    // Right up to the limit the session lives; at the limit it ends, and stays ended.
    h.clock.advance(IDLE_MINUTES * MINUTE - 1000);
    assert.equal((await call(admin.token, 'GET', '/api/v1/me')).statusCode, 200);
    h.clock.advance(IDLE_MINUTES * MINUTE);
    assertSignedOut(await call(admin.token, 'GET', '/api/v1/me'), 'after the idle time');
    h.clock.advance(1000);
    assertSignedOut(await call(admin.token, 'GET', '/api/v1/me'), 'the next request');
  });

  test('my sessions: every live one, exactly one current, activity recorded at most once a minute', async () => {
    const admin = await h.newOrganization();
    const laptop = await signIn(admin.email, { ip: '10.20.0.7', userAgent: 'Clinic laptop/1.0' });
    const sessions = await mySessions(admin.token);
    assert.equal(sessions.length, 2, 'two sign-ins, two sessions');
    assert.deepEqual(
      sessions.map((s) => s.current).sort(),
      [false, true],
      'exactly one is the current one',
    );
    const other = sessions.find((s) => !s.current);
    assert.ok(other);
    assert.equal(other.ip, '10.20.0.7');
    assert.equal(other.userAgent, 'Clinic laptop/1.0');
    assert.ok(Date.parse(other.expiresAt) > Date.parse(other.createdAt));
    const fromLaptop = await mySessions(laptop);
    assert.equal(fromLaptop.find((s) => s.current)?.id, other.id, 'the laptop sees itself current');

    // Used 30 s after sign-in: not recorded yet; 61 s after: recorded.
    const signedInAt = other.lastSeenAt;
    h.clock.advance(30_000);
    assert.equal((await mySessions(laptop)).find((s) => s.current)?.lastSeenAt, signedInAt);
    h.clock.advance(31_000);
    const seen = (await mySessions(laptop)).find((s) => s.current)?.lastSeenAt;
    assert.equal(seen, h.clock.now().toISOString());

    // A session that idled out is no longer listed.
    h.clock.advance(IDLE_MINUTES * MINUTE - 1000);
    assert.equal((await call(laptop, 'GET', '/api/v1/me')).statusCode, 200);
    h.clock.advance(2000);
    const left = (await mySessions(laptop)).map((s) => s.id);
    assert.deepEqual(left, [other.id], 'only the session in use is left');
  });

  test('ending one of my sessions signs that token out; someone else’s session is 404', async () => {
    const admin = await h.newOrganization();
    const nurse = await h.newUser(admin, 'nurse');
    const phone = await signIn(admin.email);
    const phoneSession = (await mySessions(phone)).find((s) => s.current);
    assert.ok(phoneSession);

    const ended = await call(admin.token, 'DELETE', `/api/v1/me/sessions/${phoneSession.id}`);
    assert.equal(ended.statusCode, 204, ended.body);
    assertSignedOut(await call(phone, 'GET', '/api/v1/me'), 'the ended session');
    assert.equal((await call(admin.token, 'GET', '/api/v1/me')).statusCode, 200);
    assert.ok(!(await mySessions(admin.token)).some((s) => s.id === phoneSession.id));

    // The nurse's own session, even by an admin of the same clinic, cannot be ended from here.
    const nurseSession = (await mySessions(nurse.token)).find((s) => s.current);
    assert.ok(nurseSession);
    const theirs = await call(admin.token, 'DELETE', `/api/v1/me/sessions/${nurseSession.id}`);
    assert.equal(theirs.statusCode, 404, theirs.body);
    assert.equal(errorOf(theirs).code, 'not_found');
    assert.equal((await call(nurse.token, 'GET', '/api/v1/me')).statusCode, 200);
    const unknown = await call(admin.token, 'DELETE', `/api/v1/me/sessions/${randomUUID()}`);
    assert.equal(unknown.statusCode, 404);
  });

  test('an admin force-logout ends every session of the user', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const tablet = await signIn(vet.email);
    const res = await call(admin.token, 'POST', `/api/v1/users/${vet.userId}/logout`);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { sessionsEnded: 2 });
    assertSignedOut(await call(vet.token, 'GET', '/api/v1/me'), 'the first session');
    assertSignedOut(await call(tablet, 'GET', '/api/v1/patients'), 'the second session');
    assert.equal((await call(admin.token, 'GET', '/api/v1/me')).statusCode, 200);
    // The user can sign in again; a second force-logout finds just that session.
    const again = await signIn(vet.email);
    const second = await call(admin.token, 'POST', `/api/v1/users/${vet.userId}/logout`);
    assert.deepEqual(second.json(), { sessionsEnded: 1 });
    assertSignedOut(await call(again, 'GET', '/api/v1/me'), 'the new session');
  });

  test('force-logout is for admins, and only of users in their own organization', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const nurse = await h.newUser(admin, 'nurse');
    for (const caller of [vet, nurse]) {
      const res = await call(caller.token, 'POST', `/api/v1/users/${admin.userId}/logout`);
      assert.equal(res.statusCode, 403, `${caller.role}: ${res.body}`);
      assert.equal(errorOf(res).code, 'forbidden');
    }
    const otherAdmin = await h.newOrganization();
    const foreign = await call(otherAdmin.token, 'POST', `/api/v1/users/${vet.userId}/logout`);
    assert.equal(foreign.statusCode, 404, foreign.body);
    const missing = await call(admin.token, 'POST', `/api/v1/users/${randomUUID()}/logout`);
    assert.equal(missing.statusCode, 404);
    for (const user of [admin, vet, nurse])
      assert.equal((await call(user.token, 'GET', '/api/v1/me')).statusCode, 200, user.role);
  });

  test('force-logout reports only the sessions that were still live', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    await signIn(vet.email); // a second device, then left alone until it idles out
    h.clock.advance(IDLE_MINUTES * MINUTE - 1000);
    assert.equal((await call(vet.token, 'GET', '/api/v1/me')).statusCode, 200);
    h.clock.advance(2000);
    assert.equal((await mySessions(vet.token)).length, 1, 'the user has one live session');
    const adminToken = await signIn(admin.email);
    const res = await call(adminToken, 'POST', `/api/v1/users/${vet.userId}/logout`);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { sessionsEnded: 1 }, 'the idled-out session had ended already');
  });

  // ---------------------------------------------------------------------------------------------
  // Integration keys

  test('an admin creates an integration key, shown once; other roles cannot', async () => {
    const admin = await h.newOrganization();
    const created = await createKey(admin, '  Lab analyser  ');
    assert.deepEqual(Object.keys(created).sort(), [...KEY_FIELDS, 'key', 'secret'].sort());
    assert.match(created.key, /^ctk_[A-Za-z0-9_-]{20,}$/);
    assert.ok(created.secret.length >= 32);
    assert.equal(created.name, 'Lab analyser');
    assert.equal(created.createdBy, admin.userId);
    assert.equal(created.createdAt, h.clock.now().toISOString());
    assert.equal(created.lastUsedAt, null);
    assert.equal(created.revokedAt, null);
    for (const role of ['clinician', 'nurse'] as const) {
      const user = await h.newUser(admin, role);
      const res = await call(user.token, 'POST', '/api/v1/integrations/keys', { name: 'mine' });
      assert.equal(res.statusCode, 403, `${role}: ${res.body}`);
      assert.ok(!res.body.includes('ctk_'));
      assert.equal((await call(user.token, 'GET', '/api/v1/integrations/keys')).statusCode, 403);
    }
    const { items } = await listKeys(admin);
    assert.deepEqual(
      items.map((k) => k.id),
      [created.id],
      'the refused requests created no key',
    );
  });

  test('the key list and the database never hold the key or its secret', async () => {
    const admin = await h.newOrganization();
    const created = await createKey(admin, 'Blood gas analyser');
    const { res, items } = await listKeys(admin);
    const [listed, ...rest] = items;
    assert.deepEqual(rest, []);
    assert.deepEqual(Object.keys(listed ?? {}).sort(), KEY_FIELDS, 'no key, no secret');
    const { key, secret, ...shown } = created;
    assert.deepEqual(listed, shown);
    for (const field of ['"key"', '"secret"']) assert.ok(!res.body.includes(field), field);
    assert.ok(!res.body.includes(key) && !res.body.includes(secret));

    const rows = await h.runtime.db.read.selectFrom('integration_keys').selectAll().execute();
    const row = rows.find((r) => r.id === created.id);
    assert.ok(row, 'the key is stored');
    for (const [column, value] of Object.entries(row))
      for (const secretText of [key, key.slice(4), secret])
        assert.ok(!String(value).includes(secretText), `${column} holds neither key nor secret`);
  });

  test('a key authenticates but reaches no record: every non-ingest route answers 404', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const patientName = 'Pickles Worthington';
    const patientId = await newPatient(vet, patientName, 'Agatha Worthington');
    const { key, id } = await createKey(admin, 'Practice-management bridge');
    const patientCount = async () =>
      (await h.runtime.db.read.selectFrom('patients').select('id').execute()).length;
    const before = await patientCount();

    h.clock.advance(MINUTE);
    const usedAt = h.clock.now().toISOString();
    const attempts: [Method, string, unknown?][] = [
      ['GET', '/api/v1/patients'],
      ['GET', `/api/v1/patients/${patientId}`],
      ['GET', `/api/v1/patients/${patientId}/notes`],
      ['GET', '/api/v1/me'],
      ['GET', '/api/v1/users'],
      ['GET', '/api/v1/integrations/keys'],
      ['GET', '/api/v1/audit'],
      ['POST', '/api/v1/patients', { name: 'Injected', species: 'canine' }],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(key, method, path, body);
      assert.equal(res.statusCode, 404, `${method} ${path}: ${res.body}`);
      assert.equal(errorOf(res).code, 'not_found', `${method} ${path}`);
      for (const secret of [patientName, 'Worthington', admin.email, vet.email])
        assert.ok(!res.body.includes(secret), `${method} ${path} discloses nothing`);
    }
    assert.equal(await patientCount(), before, 'the key created no patient');

    const listed = (await listKeys(admin)).items.find((k) => k.id === id);
    assert.equal(listed?.lastUsedAt, usedAt, 'the key did authenticate');
    // A token that is no key at all is 401, not 404.
    assertSignedOut(await call('ctk_notarealkeyatall0000', 'GET', '/api/v1/patients'), 'a bad key');
  });

  const keyUrl = (id: string) => `/api/v1/integrations/keys/${id}`;

  test('a revoked key answers 401; revoking it again is 409', async () => {
    const admin = await h.newOrganization();
    const keep = await createKey(admin, 'Ultrasound');
    const doomed = await createKey(admin, 'Old X-ray');
    h.clock.advance(MINUTE);
    const revoked = await call(admin.token, 'DELETE', keyUrl(doomed.id));
    assert.equal(revoked.statusCode, 204, revoked.body);
    assert.equal(revoked.body, '');
    const twice = await call(admin.token, 'DELETE', keyUrl(doomed.id));
    assert.equal(twice.statusCode, 409, twice.body);
    assert.equal(errorOf(twice).code, 'conflict');
    assert.equal((await call(admin.token, 'DELETE', keyUrl(randomUUID()))).statusCode, 404);

    assertSignedOut(await call(doomed.key, 'GET', '/api/v1/patients'), 'the revoked key');
    assert.equal((await call(keep.key, 'GET', '/api/v1/patients')).statusCode, 404, 'still a key');
    const byId = new Map((await listKeys(admin)).items.map((k) => [k.id, k]));
    assert.equal(byId.get(doomed.id)?.revokedAt, h.clock.now().toISOString());
    assert.equal(byId.get(doomed.id)?.lastUsedAt, null, 'a refused key was not "used"');
    assert.equal(byId.get(keep.id)?.revokedAt, null);
  });

  test('keys belong to their organization: another admin can neither list nor revoke them', async () => {
    const admin = await h.newOrganization();
    const ours = await createKey(admin, 'In-house lab');
    const otherAdmin = await h.newOrganization();
    const theirs = await createKey(otherAdmin, 'Their lab');
    const { res, items } = await listKeys(otherAdmin);
    assert.deepEqual(
      items.map((k) => k.id),
      [theirs.id],
    );
    assert.ok(!res.body.includes(ours.id) && !res.body.includes('In-house lab'));
    const revoke = await call(otherAdmin.token, 'DELETE', keyUrl(ours.id));
    assert.equal(revoke.statusCode, 404, revoke.body);
    assert.equal(errorOf(revoke).code, 'not_found');
    const listed = (await listKeys(admin)).items.find((k) => k.id === ours.id);
    assert.equal(listed?.revokedAt, null, 'the key was not revoked');
    assert.equal((await call(ours.key, 'GET', '/api/v1/me')).statusCode, 404, 'it still works');
  });

  test('key creation and revocation, session revocation and force-logout are audited', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const key = await createKey(admin, 'Audited device');
    await call(admin.token, 'DELETE', keyUrl(key.id));
    const second = await signIn(admin.email);
    const session = (await mySessions(second)).find((s) => s.current);
    assert.ok(session);
    await call(admin.token, 'DELETE', `/api/v1/me/sessions/${session.id}`);
    await call(admin.token, 'POST', `/api/v1/users/${vet.userId}/logout`);

    const events = await auditOf(admin, `actorId=${admin.userId}`);
    const one = (type: string): AuditEventJson => {
      const found = events.filter((e) => e.type === type && e.outcome === 'success');
      assert.equal(found.length, 1, `one ${type} event`);
      const [event] = found;
      assert.ok(event);
      assert.equal(event.actor.role, 'admin', type);
      return event;
    };
    assert.deepEqual(one('integration-key.create').entity, {
      type: 'IntegrationKey',
      id: key.id,
      version: null,
    });
    assert.equal(one('integration-key.revoke').entity?.id, key.id);
    assert.equal(one('session.revoke').entity?.id, session.id);
    const logoutAll = one('user.logout-all');
    assert.equal(logoutAll.entity?.id, vet.userId);
    assert.deepEqual(logoutAll.detail, { sessionsEnded: 1 });
    assert.ok(!JSON.stringify(events).includes(key.key), 'no key in the audit trail');
    assert.ok(!JSON.stringify(events).includes(key.secret), 'no secret in the audit trail');
  });

  // ---------------------------------------------------------------------------------------------
  // Break-glass

  /** A clinic with a patient and notes, and a clinician of another clinic who has no access. */
  async function emergency() {
    const homeAdmin = await h.newOrganization();
    const homeVet = await h.newUser(homeAdmin, 'clinician');
    const patientName = `Clementine ${randomUUID().slice(0, 6)}`;
    const ownerName = 'Horatio Pemberton-Smythe';
    const patientId = await newPatient(homeVet, patientName, ownerName);
    const internalNote = await newNote(homeVet, patientId, 'Owner disputes invoice.', 'internal');
    const sharedNote = await newNote(homeVet, patientId, 'Allergic to penicillin.', 'shared');
    const awayAdmin = await h.newOrganization();
    const awayVet = await addUser(awayAdmin, 'clinician', 'Dr. Ingrid Nakamura');
    const home = { homeAdmin, homeVet, patientId, patientName, ownerName };
    return { ...home, internalNote, sharedNote, awayAdmin, awayVet };
  }

  const REASON = 'Collapsed dog brought in after hours, owner unreachable.';

  const breakGlass = (user: SignedIn, patientId: string, reason = REASON) =>
    call(user.token, 'POST', `/api/v1/patients/${patientId}/break-glass`, { reason });

  test('five break-glass requests at once open one grant, one alert', async () => {
    const s = await emergency();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => breakGlass(s.awayVet, s.patientId)),
    );
    assert.deepEqual(
      answers.map((a) => a.statusCode).sort(),
      [200, 409, 409, 409, 409],
      answers.map((a) => a.body).join('\n'),
    );
    const grants = await h.runtime.db.read
      .selectFrom('break_glass_grants')
      .select('id')
      .where('patient_id', '=', s.patientId)
      .execute();
    assert.equal(grants.length, 1);
  });

  test('break-glass is for clinicians without access, with a stated reason', async () => {
    const s = await emergency();
    const awayNurse = await h.newUser(s.awayAdmin, 'nurse');
    for (const user of [awayNurse, s.awayAdmin]) {
      const res = await breakGlass(user, s.patientId);
      assert.equal(res.statusCode, 403, `${user.role}: ${res.body}`);
      assert.equal(errorOf(res).code, 'forbidden');
    }
    for (const reason of ['urgent', '   too short   ']) {
      const res = await breakGlass(s.awayVet, s.patientId, reason);
      assert.equal(res.statusCode, 400, `${JSON.stringify(reason)}: ${res.body}`);
      assert.equal(errorOf(res).code, 'invalid');
    }
    const own = await breakGlass(s.homeVet, s.patientId);
    assert.equal(own.statusCode, 409, own.body);
    assert.equal(errorOf(own).code, 'conflict');
    const nowhere = await breakGlass(s.awayVet, randomUUID());
    assert.equal(nowhere.statusCode, 404, nowhere.body);
    for (const res of [own, nowhere]) assert.ok(!res.body.includes(s.patientName));

    // None of that opened anything: no access, no alert.
    const still = await call(s.awayVet.token, 'GET', `/api/v1/patients/${s.patientId}`);
    assert.equal(still.statusCode, 404, still.body);
    const alerts = await call(s.homeAdmin.token, 'GET', '/api/v1/audit/alerts');
    assert.deepEqual(alerts.json<{ items: unknown[] }>().items, []);
  });

  test('a break-glass grant opens the record read-only, without internal notes', async () => {
    const s = await emergency();
    const res = await breakGlass(s.awayVet, s.patientId);
    assert.equal(res.statusCode, 200, res.body);
    const grant = res.json<{
      id: string;
      patientId: string;
      expiresAt: string;
      access: { via: string; write: boolean; expiresAt: string | null };
    }>();
    const expiresAt = new Date(h.clock.now().getTime() + BREAK_GLASS_MINUTES * MINUTE);
    assert.equal(grant.patientId, s.patientId);
    assert.equal(grant.expiresAt, expiresAt.toISOString());
    assert.equal(grant.access.via, 'break_glass');
    assert.equal(grant.access.write, false);
    assert.equal(grant.access.expiresAt, grant.expiresAt);

    const patient = await call(s.awayVet.token, 'GET', `/api/v1/patients/${s.patientId}`);
    assert.equal(patient.statusCode, 200, patient.body);
    const json = patient.json<{ name: string; access: { via: string; write: boolean } }>();
    assert.equal(json.name, s.patientName);
    assert.deepEqual([json.access.via, json.access.write], ['break_glass', false]);

    const notes = await call(s.awayVet.token, 'GET', `/api/v1/patients/${s.patientId}/notes`);
    assert.equal(notes.statusCode, 200, notes.body);
    const items = notes.json<{ items: NoteJson[] }>().items;
    assert.deepEqual(
      items.map((n) => [n.id, n.visibility, n.body]),
      [[s.sharedNote, 'shared', 'Allergic to penicillin.']],
    );
    assert.ok(!notes.body.includes('invoice'), 'nothing of the internal note');
    const internal = await call(s.awayVet.token, 'GET', `/api/v1/notes/${s.internalNote}`);
    assert.equal(internal.statusCode, 404, internal.body);
    assert.ok(!internal.body.includes('invoice'));

    const write = await call(s.awayVet.token, 'POST', `/api/v1/patients/${s.patientId}/notes`, {
      kind: 'clinical',
      body: 'Gave fluids.',
      visibility: 'shared',
    });
    assert.equal(write.statusCode, 403, write.body);
    assert.equal(errorOf(write).code, 'forbidden');
    const homeNotes = await call(s.homeVet.token, 'GET', `/api/v1/patients/${s.patientId}/notes`);
    assert.equal(homeNotes.json<{ items: NoteJson[] }>().items.length, 2, 'nothing was written');

    const again = await breakGlass(s.awayVet, s.patientId);
    assert.equal(again.statusCode, 409, 'the grant is already open');
  });

  test('break-glass access ends after the configured time', async () => {
    const s = await emergency();
    assert.equal((await breakGlass(s.awayVet, s.patientId)).statusCode, 200);
    const patientUrl = `/api/v1/patients/${s.patientId}`;
    h.clock.advance(BREAK_GLASS_MINUTES * MINUTE - 1000);
    assert.equal((await call(s.awayVet.token, 'GET', patientUrl)).statusCode, 200);
    h.clock.advance(1000);
    for (const path of [patientUrl, `${patientUrl}/notes`, `/api/v1/notes/${s.sharedNote}`]) {
      const res = await call(s.awayVet.token, 'GET', path);
      assert.equal(res.statusCode, 404, `${path}: ${res.body}`);
      assert.ok(!res.body.includes(s.patientName) && !res.body.includes('penicillin'));
    }
    assert.equal((await call(s.homeVet.token, 'GET', patientUrl)).statusCode, 200);
    // Once it ended, a new one can be opened (and is audited and alerted again).
    assert.equal((await breakGlass(s.awayVet, s.patientId)).statusCode, 200);
  });

  test('every event under break-glass is marked BTG in the patient clinic’s audit, with an alert', async () => {
    const s = await emergency();
    const grant = (await breakGlass(s.awayVet, s.patientId)).json<{ id: string }>();
    await call(s.awayVet.token, 'GET', `/api/v1/patients/${s.patientId}`);
    await call(s.awayVet.token, 'GET', `/api/v1/patients/${s.patientId}/notes`);
    await call(s.awayVet.token, 'POST', `/api/v1/patients/${s.patientId}/notes`, {
      kind: 'clinical',
      body: 'Tried to write.',
    });

    const events = await auditOf(s.homeAdmin, `patientId=${s.patientId}`);
    const theirs = events.filter((e) => e.actor.userId === s.awayVet.userId);
    assert.deepEqual(theirs.map((e) => [e.type, e.outcome]).reverse(), [
      ['break-glass.open', 'success'],
      ['patient.read', 'success'],
      ['note.list', 'success'],
      ['note.create', 'denied'],
    ]);
    for (const event of theirs) {
      assert.equal(event.purpose, 'BTG', event.type);
      assert.equal(event.detail?.breakGlassId, grant.id, event.type);
      assert.equal(event.patientId, s.patientId, event.type);
      assert.equal(event.actor.organizationId, s.awayVet.organizationId, event.type);
    }
    const own = events.filter((e) => e.actor.userId === s.homeVet.userId);
    assert.ok(own.length >= 3);
    assert.ok(
      own.every((e) => e.purpose !== 'BTG' && e.detail?.breakGlassId === undefined),
      'the clinic’s own work is not marked',
    );

    const alerts = await call(s.homeAdmin.token, 'GET', '/api/v1/audit/alerts');
    assert.equal(alerts.statusCode, 200, alerts.body);
    const [alert, ...more] = alerts.json<{
      items: { userId: string; rule: string; detail: Record<string, unknown> }[];
    }>().items;
    assert.deepEqual(more, []);
    assert.equal(alert?.rule, 'break_glass');
    assert.equal(alert.userId, s.awayVet.userId);
    assert.equal(alert.detail.patientId, s.patientId);
    assert.equal(alert.detail.grantId, grant.id);
  });

  test('the reason given for break-glass is in the alert the patient clinic’s admins review', async () => {
    const s = await emergency();
    const reason = 'Hit by a car, unconscious; need the anaesthetic history now.';
    assert.equal((await breakGlass(s.awayVet, s.patientId, reason)).statusCode, 200);
    const alerts = await call(s.homeAdmin.token, 'GET', '/api/v1/audit/alerts');
    assert.ok(alerts.body.includes(reason), 'the admins read the reason in the alert');
    // Free text stays out of the hash-chained events, which are exported and kept for years.
    const events = await auditOf(s.homeAdmin, `patientId=${s.patientId}&type=break-glass.open`);
    assert.equal(events.length, 1);
    assert.ok(!JSON.stringify(events).includes(reason), 'the event holds ids, not the text');
  });

  test('each active admin of the patient’s clinic is mailed, naming the clinician, not the patient', async () => {
    const s = await emergency();
    const deputy = await addUser(s.homeAdmin, 'admin', 'Deputy Admin');
    const retired = await addUser(s.homeAdmin, 'admin', 'Retired Admin');
    const off = await call(s.homeAdmin.token, 'PATCH', `/api/v1/users/${retired.userId}`, {
      disabled: true,
    });
    assert.equal(off.statusCode, 200, off.body);
    await h.runtime.relay.runUntilIdle();
    const already = mail.messages.length;

    assert.equal((await breakGlass(s.awayVet, s.patientId)).statusCode, 200);
    await h.runtime.relay.runUntilIdle();
    const sent = mail.messages.slice(already);
    const recipients = sent.flatMap((m) => m.envelopeTo).sort();
    assert.deepEqual(recipients, [s.homeAdmin.email, deputy.email].sort());
    for (const message of sent) {
      const text = `${message.subject}\n${readableBody(message)}`;
      assert.match(message.subject, /break-glass/i);
      assert.ok(text.includes('Dr. Ingrid Nakamura'), `the clinician is named: ${text}`);
      assert.ok(text.includes(s.awayVet.email), 'with their email');
      for (const secret of [s.patientName, s.ownerName, 'penicillin'])
        assert.ok(!text.includes(secret), `no ${secret} in the mail`);
    }
  });
});
