// Idempotency-Key on creating POSTs: replay, mismatch, concurrency, restarts, failed attempts
// and per-user scope, on both engines.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { canonicalJson } from '../../src/domain/audit.js';
import { after, before, test } from 'node:test';
import { openDatabase } from '../../src/store/database.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { errorOf } from '../helpers/api.js';

interface PatientDto {
  id: string;
  organizationId: string;
  name: string;
  version: number;
  identifiers: { system: string; value: string }[];
}

describeEachEngine('idempotency', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  const newKey = () => `key-${randomUUID()}`;

  function postPatient(user: SignedIn, key: string | null, body: unknown) {
    return h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: user.token,
      body,
      ...(key !== null ? { headers: { 'idempotency-key': key } } : {}),
    });
  }

  async function countPatients(organizationId: string): Promise<number> {
    const row = await h.runtime.db.read
      .selectFrom('patients')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .where('organization_id', '=', organizationId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async function countNotes(patientId: string): Promise<number> {
    const row = await h.runtime.db.read
      .selectFrom('notes')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .where('patient_id', '=', patientId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async function storedKeys(scope: string, key: string) {
    return h.runtime.db.read
      .selectFrom('idempotency_keys')
      .select(['state'])
      .where('scope', '=', scope)
      .where('key', '=', key)
      .execute();
  }

  void test('the same key and body replays the first response and creates one patient', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const key = newKey();
    const body = {
      name: 'Biscuit',
      species: 'canine',
      identifiers: [{ system: 'mrn', value: 'A-100' }],
    };

    const first = await postPatient(reception, key, body);
    assert.equal(first.statusCode, 201, first.body);
    assert.equal(
      first.headers['idempotent-replayed'],
      undefined,
      'a first attempt is not a replay',
    );
    const created = first.json<PatientDto>();

    const replay = await postPatient(reception, key, body);
    assert.equal(replay.statusCode, 201, replay.body);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.deepEqual(replay.json<PatientDto>(), created);
    assert.equal(replay.headers.etag, first.headers.etag);

    const third = await postPatient(reception, key, body);
    assert.equal(third.statusCode, 201);
    assert.equal(third.headers['idempotent-replayed'], 'true');
    assert.equal(third.json<PatientDto>().id, created.id);

    assert.equal(await countPatients(admin.organizationId), 1);
    assert.deepEqual(await storedKeys(reception.userId, key), [{ state: 'done' }]);
  });

  void test('the same key with a different body is 422 idempotency_mismatch and creates nothing', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const key = newKey();
    const first = await postPatient(reception, key, { name: 'Biscuit', species: 'canine' });
    assert.equal(first.statusCode, 201, first.body);

    const other = await postPatient(reception, key, { name: 'Muffin', species: 'feline' });
    assert.equal(other.statusCode, 422, other.body);
    assert.equal(errorOf(other).code, 'idempotency_mismatch');
    assert.equal(other.headers['idempotent-replayed'], undefined);
    assert.equal(await countPatients(admin.organizationId), 1);

    const original = await postPatient(reception, key, { name: 'Biscuit', species: 'canine' });
    assert.equal(original.statusCode, 201);
    assert.equal(
      original.json<PatientDto>().id,
      first.json<PatientDto>().id,
      'the key still replays',
    );
    assert.equal(await countPatients(admin.organizationId), 1);
  });

  void test('two concurrent requests with one key create exactly one patient', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const key = newKey();
      const body = { name: `Twin ${round}`, species: 'feline' };
      const results = await Promise.all([
        postPatient(reception, key, body),
        postPatient(reception, key, body),
      ]);
      const fresh = results.filter(
        (r) => r.statusCode === 201 && r.headers['idempotent-replayed'] === undefined,
      );
      assert.equal(
        fresh.length,
        1,
        `round ${round}: exactly one request ran (${results.map((r) => r.statusCode).join(', ')})`,
      );
      const winner = fresh[0];
      const other = results.find((r) => r !== winner);
      assert.ok(winner && other);
      const id = winner.json<PatientDto>().id;
      if (other.statusCode === 409) {
        assert.equal(errorOf(other).code, 'conflict');
        assert.ok(
          Number(other.headers['retry-after']) > 0,
          'a running duplicate says when to retry',
        );
      } else {
        assert.equal(other.statusCode, 201, other.body);
        assert.equal(other.headers['idempotent-replayed'], 'true');
        assert.equal(other.json<PatientDto>().id, id);
      }
      const retry = await postPatient(reception, key, body);
      assert.equal(retry.statusCode, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.equal(retry.json<PatientDto>().id, id);
      assert.equal(await countPatients(admin.organizationId), round + 1);
    }
    const names = await h.runtime.db.read
      .selectFrom('patients')
      .select('name')
      .where('organization_id', '=', admin.organizationId)
      .orderBy('name')
      .execute();
    assert.deepEqual(
      names.map((n) => n.name),
      Array.from({ length: rounds }, (_, i) => `Twin ${i}`),
    );
  });

  void test('a stored response is replayed after a restart', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const key = newKey();
    const body = {
      name: 'Durable',
      species: 'equine',
      identifiers: [{ system: 'microchip', value: '985112345678901' }],
    };
    const first = await postPatient(reception, key, body);
    assert.equal(first.statusCode, 201, first.body);

    await h.close();
    h = await startHarness(url());

    const me = await h.request({ method: 'GET', url: '/api/v1/me', token: reception.token });
    assert.equal(me.statusCode, 200, 'sessions live in the database and survive the restart');
    const replay = await postPatient(reception, key, body);
    assert.equal(replay.statusCode, 201, replay.body);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.deepEqual(replay.json<PatientDto>(), first.json<PatientDto>());

    const loginRes = await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: reception.email, password: 'correct horse battery staple' },
    });
    assert.equal(loginRes.statusCode, 200);
    const again = await postPatient(
      { ...reception, token: loginRes.json<{ token: string }>().token },
      key,
      body,
    );
    assert.equal(again.statusCode, 201);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.deepEqual(again.json<PatientDto>(), first.json<PatientDto>());
    assert.equal(await countPatients(admin.organizationId), 1);
  });

  void test('a key held by a server process that died is taken over at once by the retry', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const body = { name: 'Retried', species: 'feline' };
    // Another server process claimed the key, then died before finishing (a SIGKILL mid-write):
    // its lease still runs for a minute, but the retry must not wait for it.
    const claimBy = async (holder: number, key: string) => {
      const now = new Date();
      await h.runtime.db.write((tx) =>
        tx
          .insertInto('idempotency_keys')
          .values({
            scope: reception.userId,
            key,
            // The same request as the retry's (method, route, params, body), as the service hashes it.
            request_hash: createHash('sha256')
              .update(
                canonicalJson({ method: 'POST', route: '/api/v1/patients', params: {}, body }),
              )
              .digest('hex'),
            state: 'running',
            status_code: null,
            response_body: null,
            locked_until: new Date(now.getTime() + 60_000).toISOString(),
            created_at: now.toISOString(),
            holder,
          })
          .execute(),
      );
    };
    const other = await openDatabase(url());
    const deadKey = newKey();
    await claimBy(await other.claimHolder(), deadKey);
    if (h.runtime.db.engine === 'postgres') {
      const meanwhile = await postPatient(reception, deadKey, body);
      assert.equal(meanwhile.statusCode, 409, 'the other process still runs: its claim holds');
    }
    await other.close();
    const retry = await postPatient(reception, deadKey, body);
    assert.equal(retry.statusCode, 201, retry.body);
    assert.equal(await countPatients(admin.organizationId), 1);

    // A claim of this very process is still running: that one is a real conflict.
    const liveKey = newKey();
    await claimBy(await h.runtime.db.claimHolder(), liveKey);
    const conflict = await postPatient(reception, liveKey, body);
    assert.equal(conflict.statusCode, 409, conflict.body);
  });

  void test('a failed first attempt frees its key: the same key with a corrected body runs', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const taken = await postPatient(reception, null, {
      name: 'First holder',
      species: 'canine',
      identifiers: [{ system: 'mrn', value: 'DUP-1' }],
    });
    assert.equal(taken.statusCode, 201, taken.body);

    const key = newKey();
    const clash = {
      name: 'Second',
      species: 'canine',
      identifiers: [{ system: 'mrn', value: 'DUP-1' }],
    };
    const failed = await postPatient(reception, key, clash);
    assert.equal(failed.statusCode, 409, failed.body);
    assert.equal(errorOf(failed).code, 'conflict');
    assert.match(errorOf(failed).message, /identifier/);
    assert.deepEqual(
      await storedKeys(reception.userId, key),
      [],
      'the failed attempt released its key',
    );

    const failedAgain = await postPatient(reception, key, clash);
    assert.equal(failedAgain.statusCode, 409, failedAgain.body);
    assert.match(
      errorOf(failedAgain).message,
      /identifier/,
      'the request ran again, it is not "still running"',
    );
    assert.equal(failedAgain.headers['idempotent-replayed'], undefined);

    const corrected = { ...clash, identifiers: [{ system: 'mrn', value: 'DUP-2' }] };
    const fixed = await postPatient(reception, key, corrected);
    assert.equal(fixed.statusCode, 201, fixed.body);
    assert.equal(fixed.headers['idempotent-replayed'], undefined);
    assert.deepEqual(fixed.json<PatientDto>().identifiers, [{ system: 'mrn', value: 'DUP-2' }]);

    const replay = await postPatient(reception, key, corrected);
    assert.equal(replay.statusCode, 201);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(replay.json<PatientDto>().id, fixed.json<PatientDto>().id);
    const mismatch = await postPatient(reception, key, clash);
    assert.equal(mismatch.statusCode, 422, 'once stored, the key is bound to the corrected body');
    assert.equal(await countPatients(admin.organizationId), 2);
  });

  void test('a request refused by input checks frees its key: a corrected retry with the same key runs', async () => {
    const admin = await h.newOrganization();
    const clinician = await h.newUser(admin, 'clinician');
    const key = newKey();
    const future = { name: 'Not born yet', species: 'canine', birthDate: '2999-01-01' };
    const refused = await postPatient(clinician, key, future);
    assert.equal(refused.statusCode, 400, refused.body);
    assert.equal(errorOf(refused).code, 'invalid');
    const corrected = await postPatient(clinician, key, { ...future, birthDate: '2020-01-01' });
    assert.equal(
      corrected.statusCode,
      201,
      `a corrected retry with the same key runs: ${corrected.body}`,
    );
    assert.equal(corrected.headers['idempotent-replayed'], undefined);
    assert.equal(await countPatients(admin.organizationId), 1);

    const patientId = corrected.json<PatientDto>().id;
    const noteKey = newKey();
    const postNote = (body: string) =>
      h.request({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/notes`,
        token: clinician.token,
        headers: { 'idempotency-key': noteKey },
        body: { kind: 'soap', body },
      });
    const blank = await postNote('   ');
    assert.equal(blank.statusCode, 400, blank.body);
    const fixedNote = await postNote('S: bright and alert.');
    assert.equal(
      fixedNote.statusCode,
      201,
      `a corrected note with the same key runs: ${fixedNote.body}`,
    );
    assert.equal(await countNotes(patientId), 1);
  });

  void test('a request refused by input checks, repeated with the same key, is refused the same way', async () => {
    const admin = await h.newOrganization();
    const reception = await h.newUser(admin, 'reception');
    const key = newKey();
    const future = { name: 'Not born yet', species: 'canine', birthDate: '2999-01-01' };
    const refused = await postPatient(reception, key, future);
    assert.equal(refused.statusCode, 400, refused.body);
    const again = await postPatient(reception, key, future);
    assert.equal(again.statusCode, 400, `not "still running": ${again.body}`);
    assert.equal(errorOf(again).code, 'invalid');
    assert.deepEqual(await storedKeys(reception.userId, key), [], 'no key is left behind');
    assert.equal(await countPatients(admin.organizationId), 0);
  });

  void test('the same key used by two different users does not collide', async () => {
    const admin = await h.newOrganization();
    const one = await h.newUser(admin, 'reception');
    const two = await h.newUser(admin, 'clinician');
    const otherAdmin = await h.newOrganization();
    const three = await h.newUser(otherAdmin, 'reception');
    const key = newKey();

    const a = await postPatient(one, key, { name: 'Alpha', species: 'canine' });
    const b = await postPatient(two, key, { name: 'Bravo', species: 'feline' });
    const c = await postPatient(three, key, { name: 'Alpha', species: 'canine' });
    for (const res of [a, b, c]) {
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(res.headers['idempotent-replayed'], undefined);
    }
    const ids = [a, b, c].map((r) => r.json<PatientDto>().id);
    assert.equal(new Set(ids).size, 3);
    assert.equal(c.json<PatientDto>().organizationId, otherAdmin.organizationId);
    assert.equal(await countPatients(admin.organizationId), 2);
    assert.equal(await countPatients(otherAdmin.organizationId), 1);

    const replayTwo = await postPatient(two, key, { name: 'Bravo', species: 'feline' });
    assert.equal(replayTwo.headers['idempotent-replayed'], 'true');
    assert.equal(replayTwo.json<PatientDto>().id, ids[1]);
  });

  void test('POST /patients/{id}/notes honours the Idempotency-Key', async () => {
    const admin = await h.newOrganization();
    const clinician = await h.newUser(admin, 'clinician');
    const patient = await postPatient(clinician, null, { name: 'Noted', species: 'canine' });
    const other = await postPatient(clinician, null, { name: 'Other', species: 'canine' });
    const patientId = patient.json<PatientDto>().id;
    const otherId = other.json<PatientDto>().id;
    const key = newKey();
    const body = { kind: 'soap', body: 'S: limping. O: swelling. A: sprain. P: rest.' };
    const post = (id: string, b: unknown) =>
      h.request({
        method: 'POST',
        url: `/api/v1/patients/${id}/notes`,
        token: clinician.token,
        headers: { 'idempotency-key': key },
        body: b,
      });

    const first = await post(patientId, body);
    assert.equal(first.statusCode, 201, first.body);
    assert.equal(first.headers['idempotent-replayed'], undefined);
    const note = first.json<{ id: string; version: number; status: string }>();
    assert.equal(note.status, 'draft');

    const replay = await post(patientId, body);
    assert.equal(replay.statusCode, 201, replay.body);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.deepEqual(replay.json(), first.json());

    const changed = await post(patientId, { ...body, body: 'A different note.' });
    assert.equal(changed.statusCode, 422, changed.body);
    assert.equal(errorOf(changed).code, 'idempotency_mismatch');
    const elsewhere = await post(otherId, body);
    assert.equal(elsewhere.statusCode, 422, 'the same key for another patient is another request');

    const [x, y] = await Promise.all([
      post(patientId, body),
      h.request({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/notes`,
        token: clinician.token,
        headers: { 'idempotency-key': `${key}-2` },
        body,
      }),
    ]);
    assert.equal(x.headers['idempotent-replayed'], 'true');
    assert.equal(y.statusCode, 201);
    assert.equal(y.headers['idempotent-replayed'], undefined, 'a new key is a new note');

    assert.equal(await countNotes(patientId), 2);
    assert.equal(await countNotes(otherId), 0);
  });
});
