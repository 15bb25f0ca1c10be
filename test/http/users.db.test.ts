// Staff accounts: creation, listing, role and disabled changes, admin-only access, organization
// isolation, the last-admin rule, session ends and auditing, on both engines.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ROLES } from '../../src/domain/roles.js';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';
import { errorOf, publicError } from '../helpers/api.js';

interface UserDto {
  id: string;
  organizationId: string;
  email: string;
  name: string;
  role: string;
  disabled: boolean;
  mfaEnabled: boolean;
  version: number;
  createdAt: string;
}

describeEachEngine('users', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  function createUser(admin: SignedIn, body: Record<string, unknown>) {
    return h.request({ method: 'POST', url: '/api/v1/users', token: admin.token, body });
  }

  function patchUser(actor: SignedIn, id: string, body: Record<string, unknown>) {
    return h.request({ method: 'PATCH', url: `/api/v1/users/${id}`, token: actor.token, body });
  }

  async function listAll(
    admin: SignedIn,
    limit: number,
  ): Promise<{ users: UserDto[]; pages: number[] }> {
    const users: UserDto[] = [];
    const pages: number[] = [];
    let cursor: string | null = null;
    for (let round = 0; round < 100; round++) {
      const query: string =
        cursor === null ? `?limit=${limit}` : `?limit=${limit}&cursor=${cursor}`;
      const res = await h.request({
        method: 'GET',
        url: `/api/v1/users${query}`,
        token: admin.token,
      });
      assert.equal(res.statusCode, 200, res.body);
      const page = res.json<{ items: UserDto[]; nextCursor: string | null }>();
      pages.push(page.items.length);
      users.push(...page.items);
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    return { users, pages };
  }

  async function userRow(id: string) {
    return h.runtime.db.read
      .selectFrom('users')
      .select(['role', 'disabled', 'name', 'version'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
  }

  function login(email: string, password = PASSWORD) {
    return h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password } });
  }

  void test('an admin creates users of every role; the password never comes back', async () => {
    const admin = await h.newOrganization();
    for (const role of ROLES) {
      const email = uniqueEmail(role);
      const res = await createUser(admin, {
        email: `  ${email.toUpperCase()} `,
        name: ` ${role} person `,
        role,
        password: PASSWORD,
      });
      assert.equal(res.statusCode, 201, res.body);
      const user = res.json<UserDto>();
      assert.match(user.id, /^[0-9a-f-]{36}$/);
      assert.equal(user.organizationId, admin.organizationId);
      assert.equal(user.email, email, 'the email is stored trimmed and lower-cased');
      assert.equal(user.name, `${role} person`);
      assert.equal(user.role, role);
      assert.equal(user.disabled, false);
      assert.equal(user.mfaEnabled, false);
      assert.equal(user.version, 1);
      assert.ok(!res.body.includes(PASSWORD), 'no password in the response');
      assert.ok(!/password|hash|totp/i.test(res.body), `no secret fields: ${res.body}`);

      const signIn = await login(email);
      assert.equal(signIn.statusCode, 200, signIn.body);
      const signedIn = signIn.json<{ user: UserDto }>().user;
      assert.equal(signedIn.role, role);
      assert.equal(signedIn.id, user.id);
      assert.ok(!signIn.body.includes(PASSWORD));
      assert.ok(!/password|hash/i.test(signIn.body));
    }
    const listed = await h.request({ method: 'GET', url: '/api/v1/users', token: admin.token });
    assert.ok(!listed.body.includes(PASSWORD));
    assert.ok(!/password|hash/i.test(listed.body));

    const unknownRole = await createUser(admin, {
      email: uniqueEmail('x'),
      name: 'X',
      role: 'owner',
      password: PASSWORD,
    });
    assert.equal(unknownRole.statusCode, 400);
    const badEmail = await createUser(admin, {
      email: 'not an email',
      name: 'X',
      role: 'nurse',
      password: PASSWORD,
    });
    assert.equal(badEmail.statusCode, 400);
  });

  void test('a taken email is 409, whatever its case or organization', async () => {
    const admin = await h.newOrganization();
    const email = uniqueEmail('dup');
    const first = await createUser(admin, {
      email,
      name: 'First',
      role: 'nurse',
      password: PASSWORD,
    });
    assert.equal(first.statusCode, 201, first.body);

    const same = await createUser(admin, {
      email,
      name: 'Second',
      role: 'clinician',
      password: PASSWORD,
    });
    assert.equal(same.statusCode, 409, same.body);
    assert.equal(errorOf(same).code, 'conflict');
    const upper = await createUser(admin, {
      email: email.toUpperCase(),
      name: 'Third',
      role: 'clinician',
      password: PASSWORD,
    });
    assert.equal(upper.statusCode, 409, upper.body);

    const otherAdmin = await h.newOrganization();
    const elsewhere = await createUser(otherAdmin, {
      email,
      name: 'Fourth',
      role: 'nurse',
      password: PASSWORD,
    });
    assert.equal(elsewhere.statusCode, 409, elsewhere.body);

    const rows = await h.runtime.db.read
      .selectFrom('users')
      .select(['name', 'role'])
      .where('email', '=', email)
      .execute();
    assert.deepEqual(rows, [{ name: 'First', role: 'nurse' }]);
  });

  void test('a password shorter than 12 characters is 400 and creates nobody', async () => {
    const admin = await h.newOrganization();
    const shortEmail = uniqueEmail('short');
    const short = await createUser(admin, {
      email: shortEmail,
      name: 'Short',
      role: 'nurse',
      password: 'elevenchars',
    });
    assert.equal(short.statusCode, 400, short.body);
    assert.equal(errorOf(short).code, 'invalid');
    const empty = await createUser(admin, {
      email: shortEmail,
      name: 'Short',
      role: 'nurse',
      password: '',
    });
    assert.equal(empty.statusCode, 400, empty.body);
    const found = await h.runtime.db.read
      .selectFrom('users')
      .select('id')
      .where('email', '=', shortEmail)
      .execute();
    assert.deepEqual(found, []);

    const twelve = await createUser(admin, {
      email: shortEmail,
      name: 'Exactly',
      role: 'nurse',
      password: 'twelve chars',
    });
    assert.equal(twelve.statusCode, 201, twelve.body);
    assert.equal((await login(shortEmail, 'twelve chars')).statusCode, 200);
  });

  void test("GET /users lists only the admin's organization, page by page without duplicates or gaps", async () => {
    const admin = await h.newOrganization();
    const expected = new Set([admin.userId]);
    for (const role of ['clinician', 'nurse', 'reception', 'auditor', 'nurse', 'admin'] as const) {
      const res = await createUser(admin, {
        email: uniqueEmail(role),
        name: `${role} a`,
        role,
        password: PASSWORD,
      });
      assert.equal(res.statusCode, 201, res.body);
      expected.add(res.json<UserDto>().id);
    }
    const otherAdmin = await h.newOrganization();
    const outsider = await h.newUser(otherAdmin, 'clinician');

    const { users, pages } = await listAll(admin, 2);
    assert.deepEqual(pages, [2, 2, 2, 1]);
    const ids = users.map((u) => u.id);
    assert.equal(new Set(ids).size, ids.length, 'no user twice');
    assert.deepEqual(new Set(ids), expected);
    assert.ok(users.every((u) => u.organizationId === admin.organizationId));
    assert.ok(!ids.includes(otherAdmin.userId) && !ids.includes(outsider.userId));

    const whole = await h.request({ method: 'GET', url: '/api/v1/users', token: admin.token });
    const page = whole.json<{ items: UserDto[]; nextCursor: string | null }>();
    assert.equal(page.items.length, expected.size);
    assert.equal(page.nextCursor, null);

    const theirs = await listAll(otherAdmin, 500);
    assert.deepEqual(
      new Set(theirs.users.map((u) => u.id)),
      new Set([otherAdmin.userId, outsider.userId]),
    );

    const garbage = await h.request({
      method: 'GET',
      url: '/api/v1/users?cursor=nonsense',
      token: admin.token,
    });
    assert.equal(garbage.statusCode, 400);
  });

  void test('PATCH changes role, disabled and name', async () => {
    const admin = await h.newOrganization();
    const nurse = await h.newUser(admin, 'nurse');

    const promoted = await patchUser(admin, nurse.userId, { role: 'clinician' });
    assert.equal(promoted.statusCode, 200, promoted.body);
    assert.equal(promoted.json<UserDto>().role, 'clinician');
    assert.equal(promoted.json<UserDto>().version, 2);

    const disabled = await patchUser(admin, nurse.userId, { disabled: true });
    assert.equal(disabled.statusCode, 200, disabled.body);
    assert.equal(disabled.json<UserDto>().disabled, true);
    assert.equal(disabled.json<UserDto>().role, 'clinician');
    assert.equal((await login(nurse.email)).statusCode, 401);

    const enabled = await patchUser(admin, nurse.userId, { disabled: false, name: 'Nora Nurse' });
    assert.equal(enabled.statusCode, 200, enabled.body);
    const user = enabled.json<UserDto>();
    assert.equal(user.disabled, false);
    assert.equal(user.name, 'Nora Nurse');
    assert.equal(user.version, 4);
    assert.equal((await login(nurse.email)).statusCode, 200);

    const { users } = await listAll(admin, 50);
    assert.deepEqual(
      users.find((u) => u.id === nurse.userId),
      user,
    );
    assert.deepEqual(await userRow(nurse.userId), {
      role: 'clinician',
      disabled: 0,
      name: 'Nora Nurse',
      version: 4,
    });

    const empty = await patchUser(admin, nurse.userId, {});
    assert.equal(empty.statusCode, 400);
    const badRole = await patchUser(admin, nurse.userId, { role: 'superuser' });
    assert.equal(badRole.statusCode, 400);
    const password = await patchUser(admin, nurse.userId, { password: 'a new password here' });
    assert.equal(password.statusCode, 400, 'the password is not changed through PATCH');
  });

  void test('clinician, nurse, reception and auditor get 403 on POST, GET and PATCH users', async () => {
    const admin = await h.newOrganization();
    const target = await h.newUser(admin, 'nurse');
    for (const role of ['clinician', 'nurse', 'reception', 'auditor'] as const) {
      const user = await h.newUser(admin, role);
      const email = uniqueEmail('sneaky');
      const post = await createUser(user, {
        email,
        name: 'Sneaky',
        role: 'admin',
        password: PASSWORD,
      });
      assert.equal(post.statusCode, 403, `${role} POST: ${post.body}`);
      assert.equal(errorOf(post).code, 'forbidden');
      const list = await h.request({ method: 'GET', url: '/api/v1/users', token: user.token });
      assert.equal(list.statusCode, 403, `${role} GET: ${list.body}`);
      assert.equal(errorOf(list).code, 'forbidden');
      const patchOther = await patchUser(user, target.userId, { role: 'admin' });
      assert.equal(patchOther.statusCode, 403, `${role} PATCH other: ${patchOther.body}`);
      const patchSelf = await patchUser(user, user.userId, { role: 'admin' });
      assert.equal(patchSelf.statusCode, 403, `${role} PATCH self: ${patchSelf.body}`);
      const found = await h.runtime.db.read
        .selectFrom('users')
        .select('id')
        .where('email', '=', email)
        .execute();
      assert.deepEqual(found, [], `${role} created nobody`);
      assert.equal((await userRow(user.userId)).role, role);
    }
    assert.deepEqual(await userRow(target.userId), {
      role: 'nurse',
      disabled: 0,
      name: 'nurse user',
      version: 1,
    });
  });

  void test('PATCH a user of another organization is 404, like a random id, and changes nothing', async () => {
    const admin = await h.newOrganization();
    const otherAdmin = await h.newOrganization();
    const victim = await h.newUser(otherAdmin, 'clinician');

    const foreign = await patchUser(admin, victim.userId, { disabled: true });
    const random = await patchUser(admin, randomUUID(), { disabled: true });
    assert.equal(foreign.statusCode, 404, foreign.body);
    assert.equal(random.statusCode, 404, random.body);
    assert.deepEqual(publicError(foreign), publicError(random));
    const foreignAdmin = await patchUser(admin, otherAdmin.userId, { role: 'nurse' });
    assert.equal(foreignAdmin.statusCode, 404, foreignAdmin.body);

    assert.deepEqual(await userRow(victim.userId), {
      role: 'clinician',
      disabled: 0,
      name: 'clinician user',
      version: 1,
    });
    assert.equal((await userRow(otherAdmin.userId)).role, 'admin');
    const me = await h.request({ method: 'GET', url: '/api/v1/me', token: victim.token });
    assert.equal(me.statusCode, 200, 'their session was not touched');
  });

  void test('the last active admin cannot be demoted or disabled', async () => {
    const admin = await h.newOrganization();
    const demote = await patchUser(admin, admin.userId, { role: 'clinician' });
    assert.equal(demote.statusCode, 409, demote.body);
    assert.equal(errorOf(demote).code, 'conflict');
    const disable = await patchUser(admin, admin.userId, { disabled: true });
    assert.equal(disable.statusCode, 409, disable.body);
    assert.deepEqual(await userRow(admin.userId), {
      role: 'admin',
      disabled: 0,
      name: 'Ada Admin',
      version: 1,
    });

    // A disabled admin does not count as a second admin.
    const dormant = await h.newUser(admin, 'admin');
    const off = await patchUser(admin, dormant.userId, { disabled: true });
    assert.equal(off.statusCode, 200, off.body);
    const stillLast = await patchUser(admin, admin.userId, { role: 'nurse' });
    assert.equal(stillLast.statusCode, 409, stillLast.body);

    // With a second active admin, the first may step down; then the second is the last one.
    const second = await h.newUser(admin, 'admin');
    const stepDown = await patchUser(second, admin.userId, { role: 'clinician' });
    assert.equal(stepDown.statusCode, 200, stepDown.body);
    assert.equal(stepDown.json<UserDto>().role, 'clinician');
    const lastDemote = await patchUser(second, second.userId, { role: 'auditor' });
    assert.equal(lastDemote.statusCode, 409, lastDemote.body);
    const lastDisable = await patchUser(second, second.userId, { disabled: true });
    assert.equal(lastDisable.statusCode, 409, lastDisable.body);
    const me = await h.request({ method: 'GET', url: '/api/v1/me', token: second.token });
    assert.equal(me.statusCode, 200);
    assert.equal(me.json<UserDto>().role, 'admin');
  });

  void test('two admins demoting each other at once still leave one active admin', async () => {
    for (let round = 0; round < 5; round++) {
      const one = await h.newOrganization();
      const two = await h.newUser(one, 'admin');
      const results = await Promise.all([
        patchUser(one, two.userId, round % 2 === 0 ? { role: 'nurse' } : { disabled: true }),
        patchUser(two, one.userId, round % 2 === 0 ? { role: 'nurse' } : { disabled: true }),
      ]);
      const statuses = results.map((r) => r.statusCode).sort();
      const admins = await h.runtime.db.read
        .selectFrom('users')
        .select('id')
        .where('organization_id', '=', one.organizationId)
        .where('role', '=', 'admin')
        .where('disabled', '=', 0)
        .execute();
      assert.equal(
        admins.length,
        1,
        `round ${round}: one active admin remains (statuses ${statuses.join(', ')})`,
      );
      // The loser is refused: 409 when its demotion is checked after the winner's commit, or
      // 401 when the winner's demotion (which ends the loser's sessions) committed before the
      // loser's request was even authenticated. Never two successes.
      assert.equal(statuses[0], 200, `round ${round}`);
      assert.ok(
        statuses[1] === 409 || statuses[1] === 401,
        `round ${round}: the second change is refused (got ${statuses.join(', ')})`,
      );
    }
  });

  void test("changing a user's role ends their sessions; other changes keep them", async () => {
    const admin = await h.newOrganization();
    const nurse = await h.newUser(admin, 'nurse');
    const me = () => h.request({ method: 'GET', url: '/api/v1/me', token: nurse.token });
    assert.equal((await me()).statusCode, 200);

    const renamed = await patchUser(admin, nurse.userId, { name: 'Renamed Nurse' });
    assert.equal(renamed.statusCode, 200);
    assert.equal((await me()).statusCode, 200, 'a new name does not sign anyone out');

    const changed = await patchUser(admin, nurse.userId, { role: 'clinician' });
    assert.equal(changed.statusCode, 200, changed.body);
    const old = await me();
    assert.equal(old.statusCode, 401, old.body);
    assert.equal(errorOf(old).code, 'unauthenticated');
    const patientsWithOldToken = await h.request({
      method: 'GET',
      url: '/api/v1/patients',
      token: nurse.token,
    });
    assert.equal(patientsWithOldToken.statusCode, 401);

    const again = await login(nurse.email);
    assert.equal(again.statusCode, 200);
    assert.equal(again.json<{ user: UserDto }>().user.role, 'clinician');
    const fresh = await h.request({
      method: 'GET',
      url: '/api/v1/me',
      token: again.json<{ token: string }>().token,
    });
    assert.equal(fresh.statusCode, 200);
    assert.equal(fresh.json<UserDto>().role, 'clinician');
  });

  void test('every user change leaves a user.create / user.update audit event with the admin as actor', async () => {
    const admin = await h.newOrganization();
    const email = uniqueEmail('audited');
    const created = await createUser(admin, {
      email,
      name: 'Audited',
      role: 'reception',
      password: PASSWORD,
    });
    assert.equal(created.statusCode, 201);
    const id = created.json<UserDto>().id;
    assert.equal((await patchUser(admin, id, { role: 'nurse' })).statusCode, 200);
    assert.equal((await patchUser(admin, id, { disabled: true })).statusCode, 200);
    assert.equal(
      (await patchUser(admin, id, { disabled: false, name: 'Audited Again' })).statusCode,
      200,
    );
    assert.equal((await patchUser(admin, admin.userId, { role: 'nurse' })).statusCode, 409);

    const events = (await listAuditEvents(h.runtime.db.read, { actorUserId: admin.userId }))
      .map((e) => e.event)
      .filter((e) => e.type === 'user.create' || e.type === 'user.update');
    assert.deepEqual(
      events.map((e) => [e.type, e.action, e.outcome, e.entity?.type, e.entity?.id]),
      [
        ['user.create', 'C', 'success', 'User', id],
        ['user.update', 'U', 'success', 'User', id],
        ['user.update', 'U', 'success', 'User', id],
        ['user.update', 'U', 'success', 'User', id],
        ['user.update', 'U', 'failure', 'User', admin.userId],
      ],
    );
    assert.deepEqual(
      events.map((e) => e.entity?.version),
      [1, 2, 3, 4, null],
    );
    for (const e of events) {
      assert.equal(e.actor.userId, admin.userId);
      assert.equal(e.actor.role, 'admin');
      assert.equal(e.actor.organizationId, admin.organizationId);
      assert.equal(e.patientId, null);
    }
    assert.deepEqual(events[1]?.detail, {
      fromRole: 'reception',
      toRole: 'nurse',
      disabled: false,
    });
    const stored = JSON.stringify(await listAuditEvents(h.runtime.db.read));
    assert.ok(!stored.includes(PASSWORD), 'no password in the audit trail');
  });
});
