// Regression tests for the defects found in the security review (docs/SECURITY-REVIEW.md),
// attacked over HTTP as an outsider, another organization or a former colleague would.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import type { LightMyRequestResponse } from 'fastify';
import { errorOf } from '../helpers/api.js';
import { describeEachEngine } from '../helpers/engines.js';
import { invitationToken } from '../helpers/invitations.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';

/** The password a malicious admin of another clinic gives the account it makes. */
const ATTACKER_PASSWORD = 'attacker chose this one';

function ok(res: LightMyRequestResponse, status = 200): LightMyRequestResponse {
  assert.equal(res.statusCode, status, res.body);
  return res;
}

describeEachEngine('security review', ({ url }) => {
  let h: Harness;
  let adminA: SignedIn;
  let nurseA: SignedIn;
  /** Another clinic on the same server, whose admin attacks clinic A. */
  let adminB: SignedIn;
  let patientId: string;
  let ownerId: string;
  const ownerEmail = uniqueEmail('owner');

  before(async () => {
    h = await startHarness(url());
    adminA = await h.newOrganization();
    nurseA = await h.newUser(adminA, 'nurse');
    adminB = await h.newOrganization();
    const patient = ok(
      await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: nurseA.token,
        body: {
          name: 'Rex',
          species: 'canine',
          owners: [{ name: 'Olga Owner', email: ownerEmail }],
        },
      }),
      201,
    ).json<{ id: string; owners: { id: string }[] }>();
    patientId = patient.id;
    ownerId = patient.owners[0]?.id ?? '';
  });
  after(async () => {
    await h.close();
  });

  const login = async (email: string, password: string) => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email, password },
    });
    return res.statusCode === 200 ? res.json<{ token: string }>().token : null;
  };

  /** Clinic B's admin makes a staff account with someone else's email, and signs in as it. */
  async function impostor(email: string): Promise<void> {
    ok(
      await h.request({
        method: 'POST',
        url: '/api/v1/users',
        token: adminB.token,
        body: { email, name: 'Not them', role: 'reception', password: ATTACKER_PASSWORD },
      }),
      201,
    );
  }

  async function consentFor(email: string): Promise<void> {
    ok(
      await h.request({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/consents`,
        token: nurseA.token,
        body: {
          granteeEmail: email,
          purpose: 'Training',
          scope: 'read',
          method: 'in_person',
          ownerId,
        },
      }),
      201,
    );
  }

  const shareWith = async (email: string, role: string, patient = patientId) =>
    ok(
      await h.request({
        method: 'POST',
        url: `/api/v1/patients/${patient}/shares`,
        token: nurseA.token,
        body: { email, role, access: 'read' },
      }),
      201,
    ).json<{ id: string; status: string; invitation: { expiresAt: string } | null }>();

  const readPatient = (token: string) =>
    h.request({ method: 'GET', url: `/api/v1/patients/${patientId}`, token });

  test('another clinic’s admin cannot take over an owner share by making an account with the owner’s email', async () => {
    await impostor(ownerEmail);
    const share = await shareWith(ownerEmail, 'owner');
    assert.equal(share.status, 'pending', 'the share waits for the mailbox holder');
    assert.ok(share.invitation, 'the owner is mailed a link to confirm');
    const token = await login(ownerEmail, ATTACKER_PASSWORD);
    assert.ok(token);
    const res = await readPatient(token);
    assert.equal(res.statusCode, 404, 'the impostor account does not reach the patient');
    assert.ok(!res.body.includes('Rex'));
  });

  test('an invitation accepted for an email that meanwhile has an account needs that account’s password', async () => {
    const trainer = uniqueEmail('trainer');
    await consentFor(trainer);
    await shareWith(trainer, 'trainer');
    const link = await invitationToken(h, trainer);
    // Clinic B's admin learns of the pending invitation and makes the account first.
    await impostor(trainer);
    const accept = (password: string) =>
      h.request({
        method: 'POST',
        url: `/api/v1/invitations/${link}/accept`,
        body: { name: 'Tina Trainer', password },
      });
    const refused = await accept('the trainer’s own new password');
    assert.equal(refused.statusCode, 401, refused.body);
    assert.match(errorOf(refused).message, /account with this email/);
    const token = await login(trainer, ATTACKER_PASSWORD);
    assert.ok(token);
    assert.equal((await readPatient(token)).statusCode, 404, 'nothing was linked to the impostor');

    // Whoever holds the account's password and the mailed link (the real person) can accept.
    ok(await accept(ATTACKER_PASSWORD));
    assert.equal((await readPatient(token)).statusCode, 200);
  });

  test('a referral clinician with an account confirms the share from the mail with their password', async () => {
    const referral = await h.newUser(await h.newOrganization(), 'clinician');
    await consentFor(referral.email);
    const share = await shareWith(referral.email, 'clinician');
    assert.equal(share.status, 'pending');
    assert.equal((await readPatient(referral.token)).statusCode, 404);
    const link = await invitationToken(h, referral.email);
    ok(
      await h.request({
        method: 'POST',
        url: `/api/v1/invitations/${link}/accept`,
        body: { name: 'ignored', password: PASSWORD },
      }),
    );
    assert.equal((await readPatient(referral.token)).statusCode, 200);
  });

  test('wrong passwords at an invitation count towards the account’s sign-in lockout', async () => {
    const referral = await h.newUser(await h.newOrganization(), 'clinician');
    await consentFor(referral.email);
    await shareWith(referral.email, 'clinician');
    const link = await invitationToken(h, referral.email);
    const statuses: number[] = [];
    for (let i = 0; i < h.config.loginMaxFailures + 1; i++) {
      const res = await h.request({
        method: 'POST',
        url: `/api/v1/invitations/${link}/accept`,
        body: { name: 'x', password: `guess number ${i} here` },
      });
      statuses.push(res.statusCode);
    }
    assert.equal(statuses.at(-1), 429, statuses.join(','));
    assert.equal(await login(referral.email, PASSWORD), null, 'the account is locked for sign-in');
  });

  test('break-glass access ends when the clinician loses the clinician role', async () => {
    const clinicianB = await h.newUser(adminB, 'clinician');
    ok(
      await h.request({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/break-glass`,
        token: clinicianB.token,
        body: { reason: 'Collapsed in our waiting room, owner unreachable' },
      }),
    );
    ok(await readPatient(clinicianB.token));
    // Clinic B moves them to the front desk, within the grant's time.
    ok(
      await h.request({
        method: 'PATCH',
        url: `/api/v1/users/${clinicianB.userId}`,
        token: adminB.token,
        body: { role: 'reception' },
      }),
    );
    const token = await login(clinicianB.email, PASSWORD);
    assert.ok(token, 'they sign in again in their new role');
    const res = await readPatient(token);
    assert.equal(res.statusCode, 404, res.body);
    const notes = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes`,
      token,
    });
    assert.equal(notes.statusCode, 404, notes.body);
  });

  test('a deleted document is gone for the owner: not listed, even when they ask for deleted ones, and 404 by id', async () => {
    const email = uniqueEmail('owner');
    const patient = ok(
      await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: nurseA.token,
        body: { name: 'Bella', species: 'feline', owners: [{ name: 'Otto Owner', email }] },
      }),
      201,
    ).json<{ id: string }>();
    await shareWith(email, 'owner', patient.id);
    ok(
      await h.request({
        method: 'POST',
        url: `/api/v1/invitations/${await invitationToken(h, email)}/accept`,
        body: { name: 'Otto Owner', password: PASSWORD },
      }),
    );
    const owner = await login(email, PASSWORD);
    assert.ok(owner);
    // Filed for the owner by mistake (another family's invoice), then deleted by the clinic.
    const form = new FormData();
    form.append('visibility', 'owner');
    form.append('title', 'Invoice for the Smith family');
    form.append('file', new Blob(['Invoice: Smith family'], { type: 'text/plain' }), 'smith.txt');
    const encoded = new Request('http://caretrail.test/', { method: 'POST', body: form });
    const uploaded = ok(
      await h.runtime.app.inject({
        method: 'POST',
        url: `/api/v1/patients/${patient.id}/documents`,
        headers: {
          authorization: `Bearer ${nurseA.token}`,
          'content-type': encoded.headers.get('content-type') ?? '',
        },
        payload: Buffer.from(await encoded.arrayBuffer()),
      }),
      201,
    ).json<{ id: string }>();
    ok(
      await h.request({
        method: 'DELETE',
        url: `/api/v1/documents/${uploaded.id}`,
        token: nurseA.token,
      }),
    );
    const listed = (token: string) =>
      h.request({
        method: 'GET',
        url: `/api/v1/patients/${patient.id}/documents?includeDeleted=true`,
        token,
      });
    const ownerList = ok(await listed(owner));
    assert.deepEqual(ownerList.json<{ items: unknown[] }>().items, []);
    assert.ok(!ownerList.body.includes('Smith'));
    for (const path of ['', '/versions', '/content']) {
      const res = await h.request({
        method: 'GET',
        url: `/api/v1/documents/${uploaded.id}${path}`,
        token: owner,
      });
      assert.equal(res.statusCode, 404, `GET ${path}: ${res.body}`);
      assert.ok(!res.body.includes('Smith'));
    }
    const staffList = ok(await listed(nurseA.token)).json<{ items: { id: string }[] }>();
    assert.deepEqual(
      staffList.items.map((d) => d.id),
      [uploaded.id],
      'the clinic still sees it, to restore it',
    );
  });

  // Checked sound in the review; kept as guards.

  test('guard: case and space variants of an email count against one account, X-Forwarded-For is ignored', async () => {
    const victim = await h.newUser(adminA, 'clinician');
    const variants = [victim.email.toUpperCase(), ` ${victim.email} `, `\t${victim.email}`];
    for (let i = 0; i < h.config.loginMaxFailures; i++) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: variants[i % variants.length], password: `wrong guess ${i}` },
        remoteAddress: `10.77.0.${i + 1}`,
        headers: { 'x-forwarded-for': `192.0.2.${i + 1}` },
      });
      assert.equal(res.statusCode, 401, res.body);
    }
    const locked = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: victim.email, password: PASSWORD },
      remoteAddress: '10.77.1.1',
    });
    assert.equal(locked.statusCode, 429, 'the account is locked whichever spelling was used');

    // One address behind a forged X-Forwarded-For is still one address (trust proxy is off).
    const statuses: number[] = [];
    for (let i = 0; i <= h.config.loginIpMaxFailures; i++) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: uniqueEmail('nobody'), password: 'guessing away' },
        remoteAddress: '10.78.0.1',
        headers: { 'x-forwarded-for': `198.51.100.${i + 1}` },
      });
      statuses.push(res.statusCode);
    }
    assert.equal(statuses.at(-1), 429, statuses.join(','));
  });

  test('fix: a stolen session cannot turn on two-step sign-in without the password, and guessing it locks the account', async () => {
    const user = await h.newUser(adminA, 'nurse');
    const enrol = ok(
      await h.request({ method: 'POST', url: '/api/v1/me/mfa/totp', token: user.token }),
    ).json<{ secret: string }>();
    const totp = new TOTP({ secret: Secret.fromBase32(enrol.secret), digits: 6, period: 30 });
    const verify = (body: unknown) =>
      h.request({ method: 'POST', url: '/api/v1/me/mfa/totp/verify', token: user.token, body });
    const code = totp.generate({ timestamp: h.clock.now().getTime() });
    const enabled = async () =>
      (
        await h.runtime.db.read
          .selectFrom('users')
          .select('totp_enabled')
          .where('id', '=', user.userId)
          .executeTakeFirstOrThrow()
      ).totp_enabled;

    // The thief has the session and their own authenticator's code, not the password.
    const without = await verify({ code });
    assert.equal(without.statusCode, 400, without.body);
    assert.equal(errorOf(without).code, 'invalid');
    for (let i = 1; i < h.config.loginMaxFailures; i++) {
      const wrong = await verify({ code, password: `guess ${String(i)}` });
      assert.equal(wrong.statusCode, 400, wrong.body);
      assert.match(errorOf(wrong).message, /not your current password/);
    }
    // The guesses count against the account like failed sign-ins: the limit locks it.
    const last = await verify({ code, password: 'one guess too many' });
    assert.equal(last.statusCode, 400, last.body);
    const locked = await verify({ code, password: PASSWORD });
    assert.equal(locked.statusCode, 429, locked.body);
    const signIn = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: user.email, password: PASSWORD },
      remoteAddress: '10.80.0.1',
    });
    assert.equal(signIn.statusCode, 429, 'the sign-in lockout is the same counter');
    assert.equal(await enabled(), 0, 'two-step sign-in stayed off');

    // After the lockout, the owner with the password turns it on.
    h.clock.advance(h.config.loginLockoutMinutes * 60_000 + 1_000);
    const owner = await verify({
      code: totp.generate({ timestamp: h.clock.now().getTime() }),
      password: PASSWORD,
    });
    assert.equal(owner.statusCode, 200, owner.body);
    assert.equal(await enabled(), 1);
  });

  test('fix: patient-search cursors name no patient, and a cursor from another clinic is refused', async () => {
    const create = async (admin: SignedIn, name: string) =>
      ok(
        await h.request({
          method: 'POST',
          url: '/api/v1/patients',
          token: admin.token,
          body: { name, species: 'feline', owners: [{ name: 'Quentin Quillfeather' }] },
        }),
        201,
      ).json<{ id: string }>().id;
    const ids = [
      await create(adminA, 'Quillon Alpha'),
      await create(adminA, 'Quillon Beta'),
      await create(adminA, 'Quillon Gamma'),
    ];
    const search = (admin: SignedIn, cursor?: string) =>
      h.request({
        method: 'GET',
        url: `/api/v1/patients?q=quillon&limit=1${cursor === undefined ? '' : `&cursor=${cursor}`}`,
        token: admin.token,
      });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = ok(await search(adminA, cursor)).json<{
        items: { id: string }[];
        nextCursor: string | null;
      }>();
      seen.push(...page.items.map((p) => p.id));
      cursor = page.nextCursor ?? undefined;
      if (cursor !== undefined) {
        const inside = Buffer.from(cursor, 'base64url').toString('utf8').toLowerCase();
        assert.ok(!inside.includes('quillon'), `the cursor holds no name: ${inside}`);
        assert.ok(!inside.includes('quill'), "nor the owner's");
      }
    } while (cursor !== undefined);
    assert.deepEqual(seen, ids, 'the pages follow each other in name order');

    // Clinic B replays clinic A's cursor (or forges one with A's patient id): refused.
    const firstCursor = ok(await search(adminA)).json<{ nextCursor: string }>().nextCursor;
    const replayed = await search(adminB, firstCursor);
    assert.equal(replayed.statusCode, 400, replayed.body);
    assert.match(errorOf(replayed).message, /cursor is not valid/);
  });

  test('fix: the per-address sign-in limit counts an IPv6 /64 as one address', async () => {
    const attempt = (remoteAddress: string) =>
      h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: uniqueEmail('nobody'), password: 'guessing from a /64' },
        remoteAddress,
      });
    // Every guess from a fresh address of the same /64 (one host can hold all 2^64 of them).
    for (let i = 1; i <= h.config.loginIpMaxFailures; i++) {
      const res = await attempt(`2001:db8:77:1::${i.toString(16)}`);
      assert.equal(res.statusCode, 401, res.body);
    }
    assert.equal((await attempt('2001:db8:77:1:ffff:ffff:ffff:fffe')).statusCode, 429);
    assert.equal((await attempt('2001:0db8:0077:0001::beef')).statusCode, 429, 'any spelling');
    // The neighbouring /64 is somebody else.
    assert.equal((await attempt('2001:db8:77:2::1')).statusCode, 401);
  });

  test('guard: the code that turned two-step sign-in on cannot be replayed to sign in', async () => {
    const user = await h.newUser(adminA, 'nurse');
    const enrol = ok(
      await h.request({ method: 'POST', url: '/api/v1/me/mfa/totp', token: user.token }),
    ).json<{ secret: string }>();
    const totp = new TOTP({ secret: Secret.fromBase32(enrol.secret), digits: 6, period: 30 });
    const code = totp.generate({ timestamp: h.clock.now().getTime() });
    ok(
      await h.request({
        method: 'POST',
        url: '/api/v1/me/mfa/totp/verify',
        token: user.token,
        body: { code, password: PASSWORD },
      }),
    );
    const replay = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: user.email, password: PASSWORD, totp: code },
      remoteAddress: '10.79.0.1',
    });
    assert.equal(replay.statusCode, 401, replay.body);
  });
});
