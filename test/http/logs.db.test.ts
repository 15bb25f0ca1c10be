// Logs carry request ids and never patient data, passwords or tokens — including on errors.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { describeEachEngine } from '../helpers/engines.js';
import { PASSWORD, startHarness, type Harness } from '../helpers/harness.js';

const SECRETS = {
  patient: 'Zanzibar Quokka',
  owner: 'Perpetua Fernsby',
  email: 'perpetua.fernsby@example.test',
  phone: '+44 7700 900461',
  microchip: '985112000777333',
  note: 'Suspected hypoadrenocorticism; owner anxious',
  wrongPassword: 'wrong-pass-Xyz123!',
};

describeEachEngine('logs', ({ url, engine }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  test('a day of clinic work leaves request lines with ids and no patient data or secrets', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: {
        name: SECRETS.patient,
        species: 'canine',
        identifiers: [{ system: 'microchip', value: SECRETS.microchip }],
        owners: [{ name: SECRETS.owner, email: SECRETS.email, phone: SECRETS.phone }],
      },
    });
    assert.equal(created.statusCode, 201);
    const id = created.json<{ id: string }>().id;
    await h.request({
      method: 'GET',
      url: `/api/v1/patients?q=${encodeURIComponent(SECRETS.patient)}`,
      token: vet.token,
    });
    await h.request({
      method: 'GET',
      url: `/api/v1/patients?identifier=microchip|${SECRETS.microchip}`,
      token: vet.token,
    });
    await h.request({
      method: 'POST',
      url: `/api/v1/patients/${id}/notes`,
      token: vet.token,
      body: { kind: 'clinical', body: SECRETS.note },
    });
    await h.request({
      method: 'POST',
      url: `/api/v1/patients/${id}/notes`,
      token: vet.token,
      body: `{"kind":"clinical","body":"${SECRETS.note}"`,
    });
    await h.request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email: vet.email, password: SECRETS.wrongPassword },
    });
    const bad = await h.request({
      method: 'PATCH',
      url: `/api/v1/patients/${id}`,
      token: vet.token,
      headers: { 'if-match': '"1"' },
      body: { name: SECRETS.patient, species: 'dragon' },
    });
    assert.equal(bad.statusCode, 400);
    assert.ok(!bad.body.includes(SECRETS.patient), 'the error does not echo the patient name');

    const text = h.logs.join('');
    for (const [what, value] of Object.entries({
      ...SECRETS,
      password: PASSWORD,
      token: vet.token,
    })) {
      assert.ok(!text.includes(value), `${what} appears in the logs`);
    }
    const lines = h.logs.map(
      (l) => JSON.parse(l) as { msg: string; reqId?: string; statusCode?: number; url?: string },
    );
    const requestLines = lines.filter((l) => l.msg === 'request');
    assert.ok(requestLines.length >= 8);
    assert.ok(
      requestLines.every((l) => typeof l.reqId === 'string' && typeof l.statusCode === 'number'),
    );
    assert.ok(
      requestLines.some((l) => l.reqId === bad.headers['x-request-id'] && l.statusCode === 400),
    );
  });

  test('an unexpected error is a generic 500 whose log line has the request id but not the values in the error', async () => {
    const admin = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: SECRETS.patient, species: 'feline' },
    });
    const id = created.json<{ id: string }>().id;
    // A database error whose message quotes patient data, as PostgreSQL constraint errors do.
    if (engine === 'sqlite') {
      await h.runtime.db.write((tx) =>
        sql`create trigger noisy before insert on notes begin select raise(abort, 'cannot store "Zanzibar Quokka" today'); end`.execute(
          tx,
        ),
      );
    } else {
      await h.runtime.db.write(async (tx) => {
        await sql`create function noisy() returns trigger language plpgsql as $$ begin raise exception 'cannot store "Zanzibar Quokka" today'; end $$`.execute(
          tx,
        );
        await sql`create trigger noisy before insert on notes for each row execute function noisy()`.execute(
          tx,
        );
      });
    }
    try {
      const res = await h.request({
        method: 'POST',
        url: `/api/v1/patients/${id}/notes`,
        token: vet.token,
        body: { kind: 'visit', body: 'check-up' },
      });
      assert.equal(res.statusCode, 500);
      const body = res.json<{ error: { code: string; message: string; requestId: string } }>();
      assert.equal(body.error.code, 'internal');
      assert.equal(body.error.requestId, res.headers['x-request-id']);
      assert.ok(
        !res.body.includes('Zanzibar') && !res.body.includes('at '),
        'no data or stack in the answer',
      );
      const errorLine = h.logs
        .map((l) => JSON.parse(l) as { msg: string; reqId?: string; err?: { message: string } })
        .find((l) => l.msg === 'unhandled error' && l.reqId === body.error.requestId);
      assert.ok(errorLine, 'the error is logged with its request id');
      assert.ok(errorLine.err?.message.includes('cannot store'), 'the log keeps the message');
      assert.ok(!h.logs.join('').includes('Zanzibar'), 'but not the quoted values');
    } finally {
      await h.runtime.db.write(async (tx) => {
        await sql`drop trigger noisy${engine === 'postgres' ? sql` on notes` : sql``}`.execute(tx);
        if (engine === 'postgres') await sql`drop function noisy()`.execute(tx);
      });
    }
  });
});
