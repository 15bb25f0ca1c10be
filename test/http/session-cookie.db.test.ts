// The web app's cookie sign-in: the token stays out of page scripts, writes need the CSRF
// header, sign-out ends the cookie's session; and the server answers page addresses with the app.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describeEachEngine } from '../helpers/engines.js';
import { PASSWORD, startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { errorOf } from '../helpers/api.js';

function cookieOf(setCookie: string | string[] | undefined, name = 'caretrail_session'): string {
  const header = [setCookie ?? []].flat()[0] ?? '';
  const pair = header.split(';')[0] ?? '';
  assert.ok(pair.startsWith(`${name}=`) && pair.length >= name.length + 11, header);
  return pair;
}

describeEachEngine('web sign-in cookie', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  before(async () => {
    h = await startHarness(url(), { CARETRAIL_SESSION_IDLE_MINUTES: '20' });
    admin = await h.newOrganization();
  });
  after(async () => {
    await h.close();
  });

  test('signing in sets an HttpOnly SameSite cookie and gives no token to the page', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/session',
      body: { email: admin.email, password: PASSWORD },
    });
    assert.equal(res.statusCode, 200, res.body);
    const setCookie = [res.headers['set-cookie'] ?? []].flat()[0] ?? '';
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    // A plain-HTTP installation (public URL http://): a Secure cookie would be dropped.
    assert.doesNotMatch(setCookie, /Secure/);
    assert.equal(res.headers['strict-transport-security'], undefined);
    const json = res.json<Record<string, unknown>>();
    assert.equal(json.token, undefined, 'the token is not in the body');
    assert.equal(json.idleTimeoutMinutes, 20);
    assert.equal((json.user as { email: string }).email, admin.email);

    const session = await h.request({
      method: 'GET',
      url: '/api/v1/auth/session',
      headers: { cookie: cookieOf(res.headers['set-cookie']) },
    });
    assert.equal(session.statusCode, 200, session.body);
    assert.equal(session.json<{ user: { id: string } }>().user.id, admin.userId);
  });

  test('a wrong password sets no cookie', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/session',
      body: { email: admin.email, password: 'not it at all' },
    });
    assert.equal(res.statusCode, 401);
    assert.equal(res.headers['set-cookie'], undefined);
  });

  test('a write with the cookie but without the CSRF header is refused and changes nothing', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/session',
      body: { email: admin.email, password: PASSWORD },
    });
    const cookie = cookieOf(res.headers['set-cookie']);
    const patient = { name: 'Forged', species: 'canine' };
    const forged = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      headers: { cookie },
      body: patient,
    });
    assert.equal(forged.statusCode, 403);
    assert.match(errorOf(forged).message, /x-caretrail-csrf/);
    const list = await h.request({
      method: 'GET',
      url: '/api/v1/patients?q=Forged',
      headers: { cookie },
    });
    assert.equal(list.json<{ items: unknown[] }>().items.length, 0, 'nothing was created');

    const made = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      headers: { cookie, 'x-caretrail-csrf': '1' },
      body: patient,
    });
    assert.equal(made.statusCode, 201, made.body);
  });

  test('signing out clears the cookie and ends its session', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/session',
      body: { email: admin.email, password: PASSWORD },
    });
    const cookie = cookieOf(res.headers['set-cookie']);
    const out = await h.request({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: { cookie, 'x-caretrail-csrf': '1' },
    });
    assert.equal(out.statusCode, 204, out.body);
    assert.match(String(out.headers['set-cookie']), /caretrail_session=;.*Max-Age=0/);
    const after = await h.request({ method: 'GET', url: '/api/v1/me', headers: { cookie } });
    assert.equal(after.statusCode, 401);
  });

  test('page addresses get the web app; unknown API paths and assets stay 404', async () => {
    const page = await h.request({ method: 'GET', url: '/patients/some-id' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    const api = await h.request({ method: 'GET', url: '/api/v1/nothing-here' });
    assert.equal(api.statusCode, 404);
    assert.equal(errorOf(api).code, 'not_found');
    const asset = await h.request({ method: 'GET', url: '/assets/missing-0000.js' });
    assert.equal(asset.statusCode, 404);
    const traversal = await h.request({ method: 'GET', url: '/assets/../../package.json' });
    assert.notEqual(traversal.statusCode, 200);
  });
});

describeEachEngine('web sign-in cookie behind a TLS-terminating proxy', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  before(async () => {
    // The proxy speaks HTTPS to people and plain HTTP to us; the public URL says https.
    h = await startHarness(url(), {
      CARETRAIL_PUBLIC_URL: 'https://records.example.test',
      CARETRAIL_TRUST_PROXY: 'true',
    });
    admin = await h.newOrganization();
  });
  after(async () => {
    await h.close();
  });

  test('the cookie is a Secure __Host- cookie, also on sign-out, though the request itself came over HTTP', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/session',
      body: { email: admin.email, password: PASSWORD },
    });
    assert.equal(res.statusCode, 200, res.body);
    const setCookie = [res.headers['set-cookie'] ?? []].flat()[0] ?? '';
    assert.match(setCookie, /; Secure(;|$)/);
    // What browsers require of a __Host- cookie: Secure, Path=/, no Domain.
    assert.match(setCookie, /; Path=\/(;|$)/);
    assert.doesNotMatch(setCookie, /Domain=/i);
    const cookie = cookieOf(res.headers['set-cookie'], '__Host-caretrail_session');
    const out = await h.request({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: { cookie, 'x-caretrail-csrf': '1' },
    });
    assert.equal(out.statusCode, 204, out.body);
    assert.match(String(out.headers['set-cookie']), /^__Host-caretrail_session=;.*Max-Age=0/);
    assert.match(String(out.headers['set-cookie']), /; Secure/);
  });

  test('a session cookie without the __Host- prefix (planted by a sibling subdomain) is not read', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/auth/session',
      body: { email: admin.email, password: PASSWORD },
    });
    const token = cookieOf(res.headers['set-cookie'], '__Host-caretrail_session').split('=')[1];
    const tossed = await h.request({
      method: 'GET',
      url: '/api/v1/me',
      headers: { cookie: `caretrail_session=${token ?? ''}` },
    });
    assert.equal(tossed.statusCode, 401, tossed.body);
    const real = await h.request({
      method: 'GET',
      url: '/api/v1/me',
      headers: {
        cookie: `caretrail_session=somebody-elses-token; __Host-caretrail_session=${token ?? ''}`,
      },
    });
    assert.equal(real.statusCode, 200, real.body);
  });

  test('answers the proxy forwarded as https carry HSTS; others do not', async () => {
    const viaTls = await h.request({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7' },
    });
    assert.equal(
      viaTls.headers['strict-transport-security'],
      'max-age=31536000; includeSubDomains',
    );
    const plain = await h.request({ method: 'GET', url: '/healthz' });
    assert.equal(plain.headers['strict-transport-security'], undefined);
  });
});
