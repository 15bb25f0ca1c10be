// Sign-in, lockout, sessions, MFA and first-run setup, on both engines.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { PASSWORD, startHarness, uniqueEmail, type Harness } from '../helpers/harness.js';

describeEachEngine('auth', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url(), {
      CARETRAIL_LOGIN_MAX_FAILURES: '3',
      CARETRAIL_LOGIN_IP_MAX_FAILURES: '6',
      CARETRAIL_LOGIN_LOCKOUT_MINUTES: '15',
    });
  });
  after(async () => {
    await h.close();
  });

  test('first-run setup link creates the first admin once, then is refused', async () => {
    const link = await h.runtime.services.setup.issueSetupLinkIfNeeded();
    assert.ok(link, 'a link is issued while there are no users');
    const token = new URL(link).hash.replace('#token=', '');
    const page = await h.request({ method: 'GET', url: '/setup' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/, 'the web app answers');
    const email = uniqueEmail('founder');
    const body = {
      token,
      organizationName: 'Riverside Vets',
      name: 'Founder',
      email,
      password: PASSWORD,
    };
    const created = await h.request({ method: 'POST', url: '/api/v1/setup', body });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.json<{ role: string }>().role, 'admin');
    const again = await h.request({
      method: 'POST',
      url: '/api/v1/setup',
      body: { ...body, email: uniqueEmail('x') },
    });
    assert.equal(again.statusCode, 404);
    assert.equal(
      await h.runtime.services.setup.issueSetupLinkIfNeeded(),
      null,
      'no link once a user exists',
    );
    const login = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email, password: PASSWORD },
    });
    assert.equal(login.statusCode, 200);
  });

  test('login returns an opaque token that works until logout', async () => {
    const admin = await h.newOrganization();
    assert.match(admin.token, /^ct_[A-Za-z0-9_-]{43}$/);
    const me = await h.request({ method: 'GET', url: '/api/v1/me', token: admin.token });
    assert.equal(me.statusCode, 200);
    assert.equal(me.json<{ email: string }>().email, admin.email);
    const sessions = await h.runtime.db.read
      .selectFrom('sessions')
      .select('token_hash')
      .where('user_id', '=', admin.userId)
      .execute();
    assert.ok(
      sessions.every((s) => s.token_hash !== admin.token && /^[0-9a-f]{64}$/.test(s.token_hash)),
      'only a hash is stored',
    );
    const out = await h.request({ method: 'POST', url: '/api/v1/auth/logout', token: admin.token });
    assert.equal(out.statusCode, 204);
    const after = await h.request({ method: 'GET', url: '/api/v1/me', token: admin.token });
    assert.equal(after.statusCode, 401);
    assert.equal(after.json<{ error: { code: string } }>().error.code, 'unauthenticated');
  });

  test('tokens expire after the session lifetime', async () => {
    const admin = await h.newOrganization();
    h.clock.advance(h.config.sessionTtlMinutes * 60_000 + 1000);
    const res = await h.request({ method: 'GET', url: '/api/v1/me', token: admin.token });
    assert.equal(res.statusCode, 401);
  });

  test('wrong password, unknown email and garbage tokens all get the same 401', async () => {
    const admin = await h.newOrganization();
    const wrong = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: 'not the password!' },
      remoteAddress: '10.9.0.1',
    });
    const unknown = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: uniqueEmail('nobody'), password: 'whatever-long-enough' },
      remoteAddress: '10.9.0.2',
    });
    assert.equal(wrong.statusCode, 401);
    assert.equal(unknown.statusCode, 401);
    assert.equal(
      wrong.json<{ error: { message: string } }>().error.message,
      unknown.json<{ error: { message: string } }>().error.message,
    );
    const garbage = await h.request({
      method: 'GET',
      url: '/api/v1/me',
      token: 'ct_thisisnotarealtokenatall',
    });
    assert.equal(garbage.statusCode, 401);
  });

  test('repeated failures lock the account for a while, even with the right password', async () => {
    const admin = await h.newOrganization();
    for (let i = 0; i < 3; i++) {
      const r = await h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: admin.email, password: `wrong password ${i}` },
        remoteAddress: `10.1.0.${i + 1}`,
      });
      assert.equal(r.statusCode, 401);
    }
    const locked = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
      remoteAddress: '10.1.0.9',
    });
    assert.equal(locked.statusCode, 429);
    assert.ok(Number(locked.headers['retry-after']) > 0);
    h.clock.advance(16 * 60_000);
    const later = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
      remoteAddress: '10.1.0.9',
    });
    assert.equal(later.statusCode, 200);
  });

  test('one client address guessing many accounts is locked out', async () => {
    const admin = await h.newOrganization();
    const address = '10.2.0.7';
    for (let i = 0; i < 6; i++) {
      const r = await h.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: uniqueEmail('guess'), password: 'guessing-password' },
        remoteAddress: address,
      });
      assert.equal(r.statusCode, 401);
    }
    const blocked = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
      remoteAddress: address,
    });
    assert.equal(blocked.statusCode, 429);
    const elsewhere = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
      remoteAddress: '10.2.0.8',
    });
    assert.equal(elsewhere.statusCode, 200);
  });

  test('TOTP: enrol, verify, then login needs the code (mfa_required), and a code works once', async () => {
    const admin = await h.newOrganization();
    const enrol = await h.request({
      method: 'POST',
      url: '/api/v1/me/mfa/totp',
      token: admin.token,
    });
    assert.equal(enrol.statusCode, 200);
    const { secret, otpauthUrl } = enrol.json<{ secret: string; otpauthUrl: string }>();
    assert.match(otpauthUrl, /^otpauth:\/\/totp\//);
    const totp = new TOTP({
      secret: Secret.fromBase32(secret),
      digits: 6,
      period: 30,
      algorithm: 'SHA1',
    });
    const bad = await h.request({
      method: 'POST',
      url: '/api/v1/me/mfa/totp/verify',
      token: admin.token,
      body: {
        code:
          '000000' === totp.generate({ timestamp: h.clock.now().getTime() }) ? '111111' : '000000',
        password: PASSWORD,
      },
    });
    assert.equal(bad.statusCode, 400);
    const ok = await h.request({
      method: 'POST',
      url: '/api/v1/me/mfa/totp/verify',
      token: admin.token,
      body: { code: totp.generate({ timestamp: h.clock.now().getTime() }), password: PASSWORD },
    });
    assert.equal(ok.statusCode, 200, ok.body);
    // The seed is sealed by the master key: the database alone does not reveal it.
    const stored = await h.runtime.db.read
      .selectFrom('users')
      .select(['totp_secret', 'totp_pending_secret'])
      .where('id', '=', admin.userId)
      .executeTakeFirstOrThrow();
    const seed = stored.totp_secret ?? '';
    assert.ok(seed.startsWith('v1:'));
    assert.ok(!seed.includes(secret));
    assert.equal(stored.totp_pending_secret, null);

    const noCode = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
      remoteAddress: '10.3.0.1',
    });
    assert.equal(noCode.statusCode, 401);
    assert.equal(noCode.json<{ error: { code: string } }>().error.code, 'mfa_required');

    h.clock.advance(30_000);
    const code = totp.generate({ timestamp: h.clock.now().getTime() });
    const withCode = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD, totp: code },
      remoteAddress: '10.3.0.1',
    });
    assert.equal(withCode.statusCode, 200, withCode.body);
    assert.equal(withCode.json<{ user: { mfaEnabled: boolean } }>().user.mfaEnabled, true);
    const replay = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD, totp: code },
      remoteAddress: '10.3.0.1',
    });
    assert.equal(replay.statusCode, 401, 'a used code is refused');
    assert.equal(replay.json<{ error: { code: string } }>().error.code, 'unauthenticated');
  });

  test('every login, success or failure, leaves an audit event without the password', async () => {
    const admin = await h.newOrganization();
    await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: 'definitely-wrong-pw' },
      remoteAddress: '10.4.0.1',
    });
    const events = (await listAuditEvents(h.runtime.db.read, { actorUserId: admin.userId })).filter(
      (e) => e.event.type === 'login',
    );
    assert.deepEqual(
      events.map((e) => e.event.outcome),
      ['success', 'failure'],
    );
    assert.equal(events[1]?.event.actor.ip, '10.4.0.1');
    assert.ok(!JSON.stringify(events).includes('definitely-wrong-pw'));
  });

  test('disabled users cannot sign in and lose their sessions', async () => {
    const admin = await h.newOrganization();
    const nurse = await h.newUser(admin, 'nurse');
    const res = await h.request({
      method: 'PATCH',
      url: `/api/v1/users/${nurse.userId}`,
      token: admin.token,
      body: { disabled: true },
    });
    assert.equal(res.statusCode, 200);
    assert.equal(
      (await h.request({ method: 'GET', url: '/api/v1/me', token: nurse.token })).statusCode,
      401,
    );
    const login = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: nurse.email, password: PASSWORD },
      remoteAddress: '10.5.0.1',
    });
    assert.equal(login.statusCode, 401);
  });
});
