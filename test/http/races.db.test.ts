// Concurrency and edge cases that a single writer hides but PostgreSQL (and real clients) expose.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { describeEachEngine } from '../helpers/engines.js';
import { PASSWORD, startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

describeEachEngine('races and edges', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let vet: SignedIn;
  before(async () => {
    h = await startHarness(url(), { CARETRAIL_LOGIN_IP_MAX_FAILURES: '1000' });
    admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
  });
  after(async () => {
    await h.close();
  });

  const eventsOf = async (requestId: unknown) =>
    (
      await h.runtime.db.read
        .selectFrom('audit_events')
        .select('type')
        .where('request_id', '=', String(requestId))
        .execute()
    ).length;

  test('a burst of parallel wrong passwords is counted guess by guess: no more than the limit get checked', async () => {
    const target = await h.newUser(admin, 'nurse');
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        h.request({
          method: 'POST',
          url: '/api/v1/auth/login',
          body: { email: target.email, password: `guess number ${i}!` },
        }),
      ),
    );
    const statuses = results.map((r) => r.statusCode);
    assert.equal(
      statuses.filter((s) => s === 401).length,
      h.config.loginMaxFailures,
      statuses.join(','),
    );
    assert.equal(statuses.filter((s) => s === 429).length, 30 - h.config.loginMaxFailures);
    const right = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: target.email, password: PASSWORD },
    });
    assert.equal(right.statusCode, 429, 'still locked: the right password does not get through');
  });

  test('one TOTP code signs in once, even when sent several times at once', async () => {
    const user = await h.newUser(admin, 'clinician');
    const enrol = await h.request({
      method: 'POST',
      url: '/api/v1/me/mfa/totp',
      token: user.token,
    });
    const totp = new TOTP({
      secret: Secret.fromBase32(enrol.json<{ secret: string }>().secret),
      digits: 6,
      period: 30,
      algorithm: 'SHA1',
    });
    await h.request({
      method: 'POST',
      url: '/api/v1/me/mfa/totp/verify',
      token: user.token,
      body: { code: totp.generate({ timestamp: h.clock.now().getTime() }), password: PASSWORD },
    });
    h.clock.advance(30_000);
    const code = totp.generate({ timestamp: h.clock.now().getTime() });
    const results = await Promise.all(
      Array.from({ length: 3 }, () =>
        h.request({
          method: 'POST',
          url: '/api/v1/auth/login',
          body: { email: user.email, password: PASSWORD, totp: code },
        }),
      ),
    );
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 401, 401]);
  });

  test('parallel updates claiming the same identifier: one wins, the others get 409 (never 500)', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: vet.token,
        body: { name: `Race ${i}`, species: 'canine' },
      });
      ids.push(res.json<{ id: string }>().id);
    }
    const results = await Promise.all(
      ids.map((id) =>
        h.request({
          method: 'PATCH',
          url: `/api/v1/patients/${id}`,
          token: vet.token,
          headers: { 'if-match': '"1"' },
          body: { identifiers: [{ system: 'mrn', value: 'MRN-RACE-1' }] },
        }),
      ),
    );
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 409, 409, 409, 409, 409]);
  });

  test('parallel addenda to one note all land (no If-Match sent, nothing stale)', async () => {
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: 'Addendum Race', species: 'feline' },
    });
    const note = await h.request({
      method: 'POST',
      url: `/api/v1/patients/${patient.json<{ id: string }>().id}/notes`,
      token: vet.token,
      body: { kind: 'soap', body: 'S: ok' },
    });
    const noteId = note.json<{ id: string }>().id;
    await h.request({ method: 'POST', url: `/api/v1/notes/${noteId}/finalize`, token: vet.token });
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        h.request({
          method: 'POST',
          url: `/api/v1/notes/${noteId}/addenda`,
          token: vet.token,
          body: { body: `addendum ${i}` },
        }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.statusCode),
      [201, 201, 201, 201, 201],
    );
    const final = await h.request({
      method: 'GET',
      url: `/api/v1/notes/${noteId}`,
      token: vet.token,
    });
    assert.equal(final.json<{ addenda: unknown[] }>().addenda.length, 5);
  });

  test('NUL characters and undecodable URLs get a clear 400 in the one error shape, audited once', async () => {
    const cases = [
      await h.request({ method: 'GET', url: '/api/v1/patients/%00', token: vet.token }),
      await h.request({ method: 'GET', url: '/api/v1/patients?q=a%00b', token: vet.token }),
      await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: vet.token,
        body: '{"name":"Nul\\u0000Dog","species":"canine"}',
        headers: { 'content-type': 'application/json' },
      }),
      await h.request({ method: 'GET', url: '/api/v1/patients/%E0%A4%A', token: vet.token }),
    ];
    for (const res of cases) {
      assert.equal(res.statusCode, 400, res.body);
      const body = res.json<{ error: { code: string; requestId: string } }>();
      assert.equal(body.error.code, 'invalid');
      assert.equal(body.error.requestId, res.headers['x-request-id']);
      assert.equal(await eventsOf(res.headers['x-request-id']), 1);
    }
  });

  test('an idempotent replay is refused to a user whose role no longer allows reading the record', async () => {
    const nurse = await h.newUser(admin, 'nurse');
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: 'Replay Rex', species: 'canine' },
    });
    const path = `/api/v1/patients/${patient.json<{ id: string }>().id}/notes`;
    const body = { kind: 'clinical', body: 'Private clinical text' };
    const first = await h.request({
      method: 'POST',
      url: path,
      token: nurse.token,
      headers: { 'idempotency-key': 'replay-after-demotion' },
      body,
    });
    assert.equal(first.statusCode, 201);
    await h.request({
      method: 'PATCH',
      url: `/api/v1/users/${nurse.userId}`,
      token: admin.token,
      body: { role: 'reception' },
    });
    const relogin = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: nurse.email, password: PASSWORD },
    });
    const token = relogin.json<{ token: string }>().token;
    const replay = await h.request({
      method: 'POST',
      url: path,
      token,
      headers: { 'idempotency-key': 'replay-after-demotion' },
      body,
    });
    assert.equal(replay.statusCode, 403);
    assert.ok(!replay.body.includes('Private clinical text'));
  });

  test('verification while requests are being written does not cry wolf', async () => {
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: 'Busy Bee', species: 'avian' },
    });
    const id = patient.json<{ id: string }>().id;
    const state = { stop: false };
    const load = (async () => {
      while (!state.stop)
        await h.request({ method: 'GET', url: `/api/v1/patients/${id}`, token: vet.token });
    })();
    try {
      for (let i = 0; i < 5; i++) {
        const result = await h.runtime.services.auditTrail.verifyChain();
        assert.equal(result.ok, true, result.reason ?? '');
      }
    } finally {
      state.stop = true;
      await load;
    }
  });
});
