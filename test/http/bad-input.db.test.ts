// Bad requests on the patient API: each gets a clear 4xx in the one error shape, with the
// request id and no internals, and changes nothing. Text that looks like SQL or HTML is data.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { describeEachEngine } from '../helpers/engines.js';
import { PASSWORD, startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { type PatientJson, type PageJson } from '../helpers/api.js';

interface Snapshot {
  patients: PatientJson[];
  patientRows: number;
  ownerRows: number;
  identifierRows: number;
}

const VALID = { name: 'Rex', species: 'canine' } as const;
const MICROCHIP = '985112345678901';

const b64 = (text: string): string => Buffer.from(text).toString('base64url');

/** Asserts the one error shape: status, code, a message, the request id, and no internals. */
function expectError(res: LightMyRequestResponse, status: number, code: string): string {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = res.json<Record<string, unknown>>();
  assert.deepEqual(Object.keys(body), ['error'], res.body);
  const error = body.error as Record<string, unknown>;
  assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'requestId'], res.body);
  assert.equal(error.code, code, res.body);
  assert.equal(typeof error.message, 'string');
  const message = error.message as string;
  assert.ok(message.trim().length > 0, 'the message says what is wrong');
  const requestId = res.headers['x-request-id'];
  assert.equal(typeof requestId, 'string');
  assert.equal(
    error.requestId,
    requestId,
    'the body names the request id of the x-request-id header',
  );
  assert.doesNotMatch(
    res.body,
    /\bat \S+ \(|:\d+:\d+\)|node_modules|\.ts:\d+|"stack"|\\n\s+at /,
    'no stack trace',
  );
  return message;
}

describeEachEngine('bad input', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let seeded: PatientJson;

  before(async () => {
    h = await startHarness(url());
    admin = await h.newOrganization();
    await h.newUser(admin, 'reception'); // a second user, so the users list has a next page
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: admin.token,
      body: {
        name: 'Seeded',
        species: 'feline',
        birthDate: '2018-06-01',
        identifiers: [{ system: 'microchip', value: MICROCHIP }],
        owners: [{ name: 'Seed Owner', email: 'seed@example.test' }],
      },
    });
    assert.equal(res.statusCode, 201, res.body);
    seeded = res.json<PatientJson>();
  });
  after(async () => {
    await h.close();
  });

  async function count(table: 'patients' | 'owners' | 'patient_identifiers'): Promise<number> {
    const row = await h.runtime.db.read
      .selectFrom(table)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('organization_id', '=', admin.organizationId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** What the organization holds: the full listing through the API and the raw row counts. */
  async function snapshot(): Promise<Snapshot> {
    const res = await h.request({
      method: 'GET',
      url: '/api/v1/patients?limit=500',
      token: admin.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    const page = res.json<PageJson>();
    assert.equal(page.nextCursor, null);
    return {
      patients: page.items,
      patientRows: await count('patients'),
      ownerRows: await count('owners'),
      identifierRows: await count('patient_identifiers'),
    };
  }

  /** Sends each request, expects the error for each, and checks that nothing changed. */
  async function rejectsAll(
    status: number,
    code: string,
    requests: Parameters<Harness['request']>[0][],
  ): Promise<string[]> {
    const before = await snapshot();
    assert.ok(before.patients.some((p) => p.id === seeded.id));
    const messages: string[] = [];
    for (const request of requests) {
      const res = await h.request(request);
      messages.push(expectError(res, status, code));
    }
    assert.deepEqual(await snapshot(), before, 'a refused request changes nothing');
    return messages;
  }

  const post = (
    body: unknown,
    headers?: Record<string, string>,
  ): Parameters<Harness['request']>[0] => ({
    method: 'POST',
    url: '/api/v1/patients',
    token: admin.token,
    body,
    ...(headers ? { headers } : {}),
  });

  const patch = (body: unknown, ifMatch = '"1"'): Parameters<Harness['request']>[0] => ({
    method: 'PATCH',
    url: `/api/v1/patients/${seeded.id}`,
    token: admin.token,
    body,
    headers: { 'if-match': ifMatch },
  });

  const list = (query: string): Parameters<Harness['request']>[0] => ({
    method: 'GET',
    url: `/api/v1/patients?${query}`,
    token: admin.token,
  });

  void test('malformed JSON is 400', async () => {
    const json = { 'content-type': 'application/json' };
    await rejectsAll(400, 'invalid', [
      post('{"name": "Rex", "species": "canine"', json),
      post("{name: 'Rex'}", json),
      post('{"name": "Rex", "species": "canine"} trailing', json),
      post('', json),
      { ...patch('{"breed": '), headers: { ...json, 'if-match': '"1"' } },
    ]);
  });

  void test('JSON of the wrong types is 400', async () => {
    await rejectsAll(400, 'invalid', [
      post({ ...VALID, name: 42 }),
      post({ ...VALID, species: ['canine'] }),
      post({ ...VALID, birthDate: 20200101 }),
      post({ ...VALID, identifiers: 'microchip' }),
      post({ ...VALID, owners: { name: 'Someone' } }),
      post({ ...VALID, identifiers: [{ system: 'microchip', value: 985112345678901 }] }),
      post({ ...VALID, owners: [{ name: 7 }] }),
      post({ name: 'Rex' }),
      post({ species: 'canine' }),
      post({ ...VALID, name: '   ' }),
      post('null', { 'content-type': 'application/json' }),
      post('[]', { 'content-type': 'application/json' }),
      patch({ name: 42 }),
      patch({}),
    ]);
  });

  void test('unknown fields, at the top level or inside owners and identifiers, are 400 naming the field', async () => {
    const messages = await rejectsAll(400, 'invalid', [
      post({ ...VALID, colour: 'brown' }),
      post({ ...VALID, owners: [{ name: 'Someone', address: '1 High Street' }] }),
      post({ ...VALID, identifiers: [{ system: 'mrn', value: 'A1', issuer: 'elsewhere' }] }),
      patch({ colour: 'brown' }),
      patch({ owners: [{ name: 'Someone', address: '1 High Street' }] }),
    ]);
    assert.match(messages[0] ?? '', /colour/);
    assert.match(messages[1] ?? '', /address/);
    assert.match(messages[2] ?? '', /issuer/);
    assert.match(messages[3] ?? '', /colour/);
  });

  void test('a body over the limit (1 MiB by default) is 413 payload_too_large', async () => {
    assert.equal(h.config.bodyLimitBytes, 1024 * 1024);
    const body = JSON.stringify({ ...VALID, breed: 'x'.repeat(h.config.bodyLimitBytes + 10) });
    await rejectsAll(413, 'payload_too_large', [
      post(body, { 'content-type': 'application/json' }),
      { ...patch(body), headers: { 'content-type': 'application/json', 'if-match': '"1"' } },
    ]);
  });

  void test('a limit that is huge, negative, zero or not a number is 400', async () => {
    await rejectsAll(400, 'invalid', [
      list('limit=100000'),
      list('limit=501'),
      list('limit=-1'),
      list('limit=0'),
      list('limit=abc'),
      list('limit=2.5'),
    ]);
    const max = await h.request(list('limit=500'));
    assert.equal(max.statusCode, 200, 'the documented maximum itself is fine');
  });

  void test('cursors that were not made by this list are 400', async () => {
    const users = await h.request({
      method: 'GET',
      url: '/api/v1/users?limit=1',
      token: admin.token,
    });
    assert.equal(users.statusCode, 200, users.body);
    const usersCursor = users.json<{ nextCursor: string | null }>().nextCursor;
    assert.equal(typeof usersCursor, 'string');
    await rejectsAll(400, 'invalid', [
      list('cursor=not-a-cursor-at-all'),
      list(`cursor=${encodeURIComponent('!!!***###')}`),
      list(`cursor=${b64('{"name":"Rex","id":')}`),
      list(`cursor=${b64('{"name":"Rex","id":"x"}')}`),
      list(`cursor=${b64('[1,2]')}`),
      list(`cursor=${b64('["a","b","c"]')}`),
      list(`cursor=${b64('null')}`),
      list(`cursor=${encodeURIComponent(String(usersCursor))}`),
    ]);
  });

  void test('an unknown species or identifier system is 400', async () => {
    await rejectsAll(400, 'invalid', [
      post({ ...VALID, species: 'dragon' }),
      post({ ...VALID, species: 'Canine' }),
      post({ ...VALID, identifiers: [{ system: 'ssn', value: '123-45-6789' }] }),
      post({ ...VALID, sex: 'sometimes' }),
      patch({ species: 'dragon' }),
    ]);
  });

  void test('searching by an unknown identifier system, or a malformed identifier, is 400', async () => {
    await rejectsAll(400, 'invalid', [
      list(`identifier=${encodeURIComponent('ssn|123456789')}`),
      list(`identifier=${encodeURIComponent('MICROCHIP|985112345678901')}`),
      list(`identifier=${encodeURIComponent('microchip|12345')}`),
      list(`identifier=${encodeURIComponent('no-bar-here')}`),
      list(`identifier=${encodeURIComponent('|985112345678901')}`),
    ]);
  });

  void test('an invalid microchip is 400', async () => {
    await rejectsAll(400, 'invalid', [
      post({ ...VALID, identifiers: [{ system: 'microchip', value: '12345' }] }),
      post({ ...VALID, identifiers: [{ system: 'microchip', value: '98511234567890' }] }),
      post({ ...VALID, identifiers: [{ system: 'microchip', value: '9851123456789012' }] }),
      post({ ...VALID, identifiers: [{ system: 'microchip', value: 'not a chip!' }] }),
      post({ ...VALID, identifiers: [{ system: 'mrn', value: '   ' }] }),
      patch({ identifiers: [{ system: 'microchip', value: '12345' }] }),
    ]);
  });

  void test('an impossible or future birth date is 400', async () => {
    const day = 24 * 60 * 60 * 1000;
    const tomorrow = new Date(h.clock.now().getTime() + 2 * day).toISOString().slice(0, 10);
    await rejectsAll(400, 'invalid', [
      post({ ...VALID, birthDate: '2023-02-30' }),
      post({ ...VALID, birthDate: '2023-13-01' }),
      post({ ...VALID, birthDate: '2023-00-10' }),
      post({ ...VALID, birthDate: '2023-2-3' }),
      post({ ...VALID, birthDate: '12/03/2020' }),
      post({ ...VALID, birthDate: tomorrow }),
      post({ ...VALID, birthDate: '2999-01-01' }),
      patch({ birthDate: '2023-02-30' }),
      patch({ birthDate: tomorrow }),
    ]);
  });

  void test('a text/plain body is 415 unsupported_media_type', async () => {
    await rejectsAll(415, 'unsupported_media_type', [
      post(JSON.stringify(VALID), { 'content-type': 'text/plain' }),
      post(JSON.stringify(VALID), { 'content-type': 'text/plain; charset=utf-8' }),
    ]);
  });

  void test('a form or XML body is 415 unsupported_media_type', async () => {
    await rejectsAll(415, 'unsupported_media_type', [
      post('name=Rex&species=canine', { 'content-type': 'application/x-www-form-urlencoded' }),
      post('<patient><name>Rex</name></patient>', { 'content-type': 'application/xml' }),
    ]);
  });

  void test('the same identifier twice in one request is 400, however it is typed', async () => {
    await rejectsAll(400, 'invalid', [
      post({
        ...VALID,
        identifiers: [
          { system: 'mrn', value: 'A-100' },
          { system: 'mrn', value: 'A-100' },
        ],
      }),
      post({
        ...VALID,
        identifiers: [
          { system: 'microchip', value: '900000000000001' },
          { system: 'microchip', value: '900 000 000 000 001' },
        ],
      }),
      patch({
        identifiers: [
          { system: 'mrn', value: 'B-7' },
          { system: 'mrn', value: ' B-7 ' },
        ],
      }),
    ]);
  });

  void test('an If-Match that is not a version is 400', async () => {
    await rejectsAll(400, 'invalid', [
      patch({ breed: 'Tabby' }, 'abc'),
      patch({ breed: 'Tabby' }, '"1.5"'),
    ]);
  });

  void test('SQL and script fragments in text fields are stored and returned verbatim', async () => {
    const before = await snapshot();
    const body = {
      name: "Robert'); DROP TABLE patients;--",
      species: 'canine',
      breed: '<script>alert(1)</script>',
      identifiers: [{ system: 'mrn', value: "' OR '1'='1" }],
      owners: [
        {
          name: "O'Brien\"; DELETE FROM owners WHERE '1'='1",
          email: '"><img src=x onerror=alert(1)>@example.test',
          phone: '1; DROP TABLE owners',
        },
      ],
    };
    const created = await h.request(post(body));
    assert.equal(created.statusCode, 201, created.body);
    assert.match(String(created.headers['content-type']), /^application\/json/);
    const patient = created.json<PatientJson>();
    const got = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patient.id}`,
      token: admin.token,
    });
    assert.equal(got.statusCode, 200, got.body);
    assert.match(String(got.headers['content-type']), /^application\/json/);
    const read = got.json<PatientJson>();
    for (const p of [patient, read]) {
      assert.equal(p.name, body.name);
      assert.equal(p.breed, body.breed);
      assert.deepEqual(p.identifiers, body.identifiers);
      assert.deepEqual(
        p.owners.map(({ name, email, phone }) => ({ name, email, phone })),
        body.owners,
      );
    }

    const found = await h.request(list(`q=${encodeURIComponent("Robert')")}`));
    assert.equal(found.statusCode, 200, found.body);
    assert.deepEqual(
      found.json<PageJson>().items.map((p) => p.id),
      [patient.id],
    );
    const byId = await h.request(list(`identifier=${encodeURIComponent("mrn|' OR '1'='1")}`));
    assert.deepEqual(
      byId.json<PageJson>().items.map((p) => p.id),
      [patient.id],
    );
    for (const wildcard of ['%', '_', '\\']) {
      const res = await h.request(list(`q=${encodeURIComponent(wildcard)}`));
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(
        res.json<PageJson>().items,
        [],
        `"${wildcard}" matches literally, not everything`,
      );
    }

    // The tables still work: the listing has exactly one more patient, and creating works.
    const afterwards = await snapshot();
    assert.equal(afterwards.patients.length, before.patients.length + 1);
    assert.equal(afterwards.patientRows, before.patientRows + 1);
    assert.equal(afterwards.ownerRows, before.ownerRows + 1);
    assert.ok(afterwards.patients.some((p) => p.id === seeded.id));
    const next = await h.request(post({ name: 'Plain', species: 'feline' }));
    assert.equal(next.statusCode, 201, next.body);
  });

  void test('a missing or malformed Authorization header is 401', async () => {
    const requests = (headers: Record<string, string>): Parameters<Harness['request']>[0][] => [
      { method: 'POST', url: '/api/v1/patients', body: VALID, headers },
      { method: 'GET', url: '/api/v1/patients', headers },
      { method: 'GET', url: `/api/v1/patients/${seeded.id}`, headers },
      {
        method: 'PATCH',
        url: `/api/v1/patients/${seeded.id}`,
        body: { name: 'X' },
        headers: { ...headers, 'if-match': '"1"' },
      },
    ];
    await rejectsAll(401, 'unauthenticated', [
      ...requests({}),
      ...requests({ authorization: '' }),
      ...requests({ authorization: 'Bearer' }),
      ...requests({ authorization: 'Bearer ' }),
      ...requests({ authorization: admin.token }),
      ...requests({ authorization: `Token ${admin.token}` }),
      ...requests({
        authorization: `Basic ${Buffer.from(`${admin.email}:${PASSWORD}`).toString('base64')}`,
      }),
      ...requests({ authorization: `Bearer ${admin.token} extra` }),
      ...requests({ authorization: `Bearer ${admin.token}x` }),
      ...requests({ authorization: 'Bearer ct_thisisnotarealtokenatall' }),
    ]);
  });

  void test('a revoked (signed out) token is 401', async () => {
    const login = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
    });
    assert.equal(login.statusCode, 200, login.body);
    const token = login.json<{ token: string }>().token;
    const out = await h.request({ method: 'POST', url: '/api/v1/auth/logout', token });
    assert.equal(out.statusCode, 204, out.body);
    await rejectsAll(401, 'unauthenticated', [
      { method: 'POST', url: '/api/v1/patients', token, body: VALID },
      { method: 'GET', url: '/api/v1/patients', token },
      { method: 'GET', url: `/api/v1/patients/${seeded.id}`, token },
      {
        method: 'PATCH',
        url: `/api/v1/patients/${seeded.id}`,
        token,
        body: { name: 'X' },
        headers: { 'if-match': '"1"' },
      },
    ]);
  });

  // Last: moving the clock ends every session, so the admin signs in again afterwards.
  void test('an expired token is 401', async () => {
    const before = await snapshot();
    const stale = admin.token;
    h.clock.advance(h.config.sessionTtlMinutes * 60_000 + 1000);
    for (const request of [
      post(VALID),
      list('limit=10'),
      { method: 'GET' as const, url: `/api/v1/patients/${seeded.id}`, token: stale },
      patch({ name: 'X' }),
    ]) {
      assert.equal(request.token, stale);
      expectError(await h.request(request), 401, 'unauthenticated');
    }
    const login = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: admin.email, password: PASSWORD },
    });
    assert.equal(login.statusCode, 200, login.body);
    admin = { ...admin, token: login.json<{ token: string }>().token };
    assert.deepEqual(await snapshot(), before, 'nothing changed');
  });
});
