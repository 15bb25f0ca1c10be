// Patients and owners as a clinic sees them: register, find, page, edit safely, stay in the
// organization, respect roles, and leave an audit trail without patient data in it. Both engines.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { type PatientJson, type PageJson, type ErrorBody } from '../helpers/api.js';

const MICROCHIP = '985112345678901';
const MICROCHIP_SPACED = '985 112 345 678 901';

function bySystem(list: { system: string; value: string }[]): { system: string; value: string }[] {
  return [...list].sort((a, b) => `${a.system}|${a.value}`.localeCompare(`${b.system}|${b.value}`));
}

function errorOf(res: LightMyRequestResponse): ErrorBody['error'] {
  return res.json<ErrorBody>().error;
}

describeEachEngine('patients', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  async function createPatient(
    user: SignedIn,
    body: Record<string, unknown>,
  ): Promise<PatientJson> {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: user.token,
      body,
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<PatientJson>();
  }

  async function search(user: SignedIn, query: Record<string, string>): Promise<PageJson> {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients?${new URLSearchParams(query).toString()}`,
      token: user.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<PageJson>();
  }

  async function searchIds(user: SignedIn, query: Record<string, string>): Promise<string[]> {
    const page = await search(user, { limit: '500', ...query });
    assert.equal(page.nextCursor, null);
    return page.items.map((p) => p.id).sort();
  }

  async function getPatient(user: SignedIn, id: string): Promise<LightMyRequestResponse> {
    return h.request({ method: 'GET', url: `/api/v1/patients/${id}`, token: user.token });
  }

  void test('registering a patient with identifiers and two owners returns the full record, and GET returns the same', async () => {
    const admin = await h.newOrganization();
    const body = {
      name: 'Biscuit',
      species: 'canine',
      breed: 'Border Collie',
      sex: 'female_spayed',
      birthDate: '2019-04-12',
      identifiers: [
        { system: 'microchip', value: MICROCHIP_SPACED },
        { system: 'mrn', value: 'MRN-7781' },
      ],
      owners: [
        { name: 'Marta Castellano', email: 'marta@example.test', phone: '+34 600 111 222' },
        { name: 'Jonas Lindqvist', email: 'jonas@example.test', phone: '+46 70 123 45 67' },
      ],
    };
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: admin.token,
      body,
    });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.headers.etag, '"1"');
    const created = res.json<PatientJson>();
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.equal(created.version, 1);
    assert.equal(created.organizationId, admin.organizationId);
    assert.equal(created.name, 'Biscuit');
    assert.equal(created.species, 'canine');
    assert.equal(created.breed, 'Border Collie');
    assert.equal(created.sex, 'female_spayed');
    assert.equal(created.birthDate, '2019-04-12');
    assert.deepEqual(bySystem(created.identifiers), [
      { system: 'microchip', value: MICROCHIP },
      { system: 'mrn', value: 'MRN-7781' },
    ]);
    assert.deepEqual(
      created.owners.map(({ name, email, phone }) => ({ name, email, phone })),
      body.owners,
      'owners come back in the order given, with their contact details',
    );
    for (const owner of created.owners) assert.match(owner.id, /^[0-9a-f-]{36}$/);
    assert.notEqual(created.owners[0]?.id, created.owners[1]?.id);

    const got = await getPatient(admin, created.id);
    assert.equal(got.statusCode, 200, got.body);
    assert.equal(got.headers.etag, '"1"');
    assert.deepEqual(got.json<PatientJson>(), created);
  });

  void test('an owner linked by id to a second animal: searching the surname finds both animals', async () => {
    const admin = await h.newOrganization();
    const first = await createPatient(admin, {
      name: 'Pepper',
      species: 'feline',
      owners: [{ name: 'Henrietta Vandersloot', email: 'h.v@example.test', phone: '555-0101' }],
    });
    const owner = first.owners[0];
    assert.ok(owner);
    const second = await createPatient(admin, {
      name: 'Nutmeg',
      species: 'lagomorph',
      owners: [{ id: owner.id }],
    });
    assert.deepEqual(second.owners, [owner], 'the existing owner, not a copy');
    await createPatient(admin, {
      name: 'Stranger',
      species: 'canine',
      owners: [{ name: 'Someone Else' }],
    });

    assert.deepEqual(await searchIds(admin, { q: 'vandersloot' }), [first.id, second.id].sort());
    assert.deepEqual(await searchIds(admin, { q: 'Vanders' }), [first.id, second.id].sort());
  });

  void test('linking an owner of another organization by id is 404 and creates nothing', async () => {
    const orgA = await h.newOrganization();
    const orgB = await h.newOrganization();
    const theirs = await createPatient(orgB, {
      name: 'Theirs',
      species: 'canine',
      owners: [{ name: 'Private Person' }],
    });
    const theirOwner = theirs.owners[0];
    assert.ok(theirOwner);
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: orgA.token,
      body: { name: 'Mine', species: 'canine', owners: [{ id: theirOwner.id }] },
    });
    assert.equal(res.statusCode, 404, res.body);
    assert.equal(errorOf(res).code, 'not_found');
    assert.deepEqual(await searchIds(orgA, {}), []);
  });

  void test('search: q matches name prefixes without regard to case or accents, owner surnames and identifier values; only in the caller organization', async () => {
    const admin = await h.newOrganization();
    const other = await h.newOrganization();
    const zoe = await createPatient(admin, {
      name: 'Zoë',
      species: 'feline',
      identifiers: [
        { system: 'microchip', value: MICROCHIP },
        { system: 'mrn', value: 'MRN-7781' },
      ],
      owners: [{ name: 'Marta Castellano' }],
    });
    const chloe = await createPatient(admin, {
      name: 'Chloé Petit',
      species: 'canine',
      owners: [{ name: 'Ana de la Peña' }],
    });
    const zorro = await createPatient(admin, { name: 'Zorro', species: 'equine' });
    // The same name, owner and microchip in another clinic must never show up.
    await createPatient(other, {
      name: 'Zoë',
      species: 'feline',
      identifiers: [{ system: 'microchip', value: MICROCHIP }],
      owners: [{ name: 'Marta Castellano' }],
    });

    assert.deepEqual(await searchIds(admin, { q: 'zoe' }), [zoe.id]);
    assert.deepEqual(await searchIds(admin, { q: 'ZOË' }), [zoe.id]);
    assert.deepEqual(await searchIds(admin, { q: 'Zo' }), [zoe.id, zorro.id].sort());
    assert.deepEqual(await searchIds(admin, { q: 'chloe' }), [chloe.id]);
    assert.deepEqual(await searchIds(admin, { q: 'castellano' }), [zoe.id], 'owner surname');
    assert.deepEqual(await searchIds(admin, { q: 'Castel' }), [zoe.id], 'owner surname prefix');
    assert.deepEqual(await searchIds(admin, { q: 'marta' }), [zoe.id], 'owner first name');
    assert.deepEqual(
      await searchIds(admin, { q: 'pena' }),
      [chloe.id],
      'owner surname without its accent',
    );
    assert.deepEqual(
      await searchIds(admin, { q: MICROCHIP }),
      [zoe.id],
      'microchip typed compactly',
    );
    assert.deepEqual(
      await searchIds(admin, { q: MICROCHIP_SPACED }),
      [zoe.id],
      'microchip typed with spaces',
    );
    assert.deepEqual(await searchIds(admin, { q: 'MRN-7781' }), [zoe.id], 'mrn typed exactly');
    assert.deepEqual(await searchIds(admin, { identifier: `microchip|${MICROCHIP}` }), [zoe.id]);
    assert.deepEqual(await searchIds(admin, { identifier: `microchip|${MICROCHIP_SPACED}` }), [
      zoe.id,
    ]);
    assert.deepEqual(await searchIds(admin, { identifier: 'mrn|MRN-7781' }), [zoe.id]);
    assert.deepEqual(
      await searchIds(admin, { identifier: `mrn|${MICROCHIP}` }),
      [],
      'the system must match too',
    );
    assert.deepEqual(await searchIds(admin, { q: 'nobody-by-this-name' }), []);
    assert.deepEqual(
      await searchIds(admin, {}),
      [zoe.id, chloe.id, zorro.id].sort(),
      'no filter lists the whole organization',
    );

    const page = await search(admin, { q: 'zoe' });
    assert.ok(page.items.every((p) => p.organizationId === admin.organizationId));
    assert.deepEqual(
      page.items[0],
      (await getPatient(admin, zoe.id)).json<PatientJson>(),
      'search items are whole records',
    );
  });

  void test('cursor pagination walks every match once, in name order, and ends with a null cursor', async () => {
    const admin = await h.newOrganization();
    // Created out of order, with two patients sharing a name (the id breaks the tie).
    const names = [
      'Pagi Echo',
      'Pagi Alfa',
      'Pagi Foxtrot',
      'Pagi Charlie',
      'Pagi Echo',
      'Pagi Bravo',
      'Pagi Delta',
    ];
    const created: PatientJson[] = [];
    for (const name of names) created.push(await createPatient(admin, { name, species: 'canine' }));
    await createPatient(admin, { name: 'Other Zed', species: 'canine' });

    const pages: PageJson[] = [];
    let cursor: string | null = null;
    do {
      const query: Record<string, string> = {
        q: 'pagi',
        limit: '3',
        ...(cursor !== null ? { cursor } : {}),
      };
      const page = await search(admin, query);
      pages.push(page);
      cursor = page.nextCursor;
      assert.ok(pages.length <= 10, 'pagination must end');
    } while (cursor !== null);

    assert.deepEqual(
      pages.map((p) => p.items.length),
      [3, 3, 1],
    );
    assert.equal(typeof pages[0]?.nextCursor, 'string');
    assert.equal(typeof pages[1]?.nextCursor, 'string');
    assert.equal(pages[2]?.nextCursor, null);
    const seen = pages.flatMap((p) => p.items);
    const ids = seen.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'no patient appears twice');
    assert.deepEqual([...ids].sort(), created.map((p) => p.id).sort(), 'no patient is missing');
    assert.deepEqual(
      seen.map((p) => p.name),
      [...names].sort(),
      'ordered by name',
    );
    const echoes = seen.filter((p) => p.name === 'Pagi Echo').map((p) => p.id);
    assert.deepEqual(echoes, [...echoes].sort(), 'same names ordered by id');

    // Exactly one full page: no cursor to a page that would be empty.
    const exact = await search(admin, { q: 'pagi', limit: '7' });
    assert.equal(exact.items.length, 7);
    assert.equal(exact.nextCursor, null);

    // Without a filter the whole organization pages the same way.
    const all: string[] = [];
    let next: string | null = null;
    do {
      const page = await search(admin, { limit: '2', ...(next !== null ? { cursor: next } : {}) });
      all.push(...page.items.map((p) => p.id));
      next = page.nextCursor;
    } while (next !== null);
    assert.equal(all.length, 8);
    assert.equal(new Set(all).size, 8);
  });

  void test('optimistic concurrency: If-Match current version updates, a stale one is 412, none is 428', async () => {
    const admin = await h.newOrganization();
    const patient = await createPatient(admin, {
      name: 'Juniper',
      species: 'canine',
      breed: 'Mixed',
    });
    const path = `/api/v1/patients/${patient.id}`;

    const first = await h.request({
      method: 'PATCH',
      url: path,
      token: admin.token,
      body: { breed: 'Border Collie' },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(first.headers.etag, '"2"');
    const updated = first.json<PatientJson>();
    assert.equal(updated.version, 2);
    assert.equal(updated.breed, 'Border Collie');
    assert.equal(updated.name, 'Juniper', 'fields not sent are kept');

    const stale = await h.request({
      method: 'PATCH',
      url: path,
      token: admin.token,
      body: { breed: 'Poodle', name: 'Overwritten' },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(stale.statusCode, 412, stale.body);
    assert.equal(errorOf(stale).code, 'precondition_failed');

    const missing = await h.request({
      method: 'PATCH',
      url: path,
      token: admin.token,
      body: { breed: 'Poodle' },
    });
    assert.equal(missing.statusCode, 428, missing.body);
    assert.equal(errorOf(missing).code, 'precondition_required');

    const got = await getPatient(admin, patient.id);
    assert.equal(got.statusCode, 200);
    assert.equal(got.headers.etag, '"2"');
    assert.deepEqual(got.json<PatientJson>(), updated, 'the refused edits changed nothing');

    const again = await h.request({
      method: 'PATCH',
      url: path,
      token: admin.token,
      body: { name: 'Juniper Berry' },
      headers: { 'if-match': '"2"' },
    });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json<PatientJson>().version, 3);
  });

  void test('alerts: kept trimmed and once each, replaced by PATCH, too long is 400 and changes nothing', async () => {
    const admin = await h.newOrganization();
    const patient = await createPatient(admin, {
      name: 'Rufus',
      species: 'canine',
      alerts: [
        '  Bites — muzzle for exams ',
        'bites — MUZZLE for exams',
        '',
        'Allergic to penicillin',
      ],
    });
    assert.deepEqual(patient.alerts, ['Bites — muzzle for exams', 'Allergic to penicillin']);
    const plain = await createPatient(admin, { name: 'Calm', species: 'feline' });
    assert.deepEqual(plain.alerts, [], 'no alerts is an empty list');

    const path = `/api/v1/patients/${patient.id}`;
    const tooLong = await h.request({
      method: 'PATCH',
      url: path,
      token: admin.token,
      body: { alerts: ['x'.repeat(201)] },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(tooLong.statusCode, 400, tooLong.body);
    const replaced = await h.request({
      method: 'PATCH',
      url: path,
      token: admin.token,
      body: { alerts: ['Diabetic: insulin twice daily'] },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(replaced.statusCode, 200, replaced.body);
    const got = (await getPatient(admin, patient.id)).json<PatientJson>();
    assert.deepEqual(got.alerts, ['Diabetic: insulin twice daily']);
    assert.equal(got.version, 2);
  });

  void test('a microchip already used in the organization is 409 and creates nothing; another organization may use it', async () => {
    const admin = await h.newOrganization();
    const holder = await createPatient(admin, {
      name: 'Holder',
      species: 'canine',
      identifiers: [{ system: 'microchip', value: MICROCHIP }],
    });
    const dup = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: admin.token,
      body: {
        name: 'Copycat',
        species: 'feline',
        identifiers: [{ system: 'microchip', value: MICROCHIP_SPACED }],
        owners: [{ name: 'Dup Owner' }],
      },
    });
    assert.equal(dup.statusCode, 409, dup.body);
    assert.equal(errorOf(dup).code, 'conflict');
    assert.deepEqual(await searchIds(admin, {}), [holder.id], 'nothing was created');
    assert.deepEqual(await searchIds(admin, { q: 'copycat' }), []);
    assert.deepEqual(await searchIds(admin, { q: 'dup owner' }), [], 'not even the owner');

    // Moving the microchip onto another patient by PATCH is refused the same way.
    const second = await createPatient(admin, { name: 'Second', species: 'canine' });
    const patch = await h.request({
      method: 'PATCH',
      url: `/api/v1/patients/${second.id}`,
      token: admin.token,
      body: { identifiers: [{ system: 'microchip', value: MICROCHIP }] },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(patch.statusCode, 409, patch.body);
    assert.equal(errorOf(patch).code, 'conflict');
    const secondNow = (await getPatient(admin, second.id)).json<PatientJson>();
    assert.deepEqual(secondNow, second, 'the refused PATCH changed nothing');

    const other = await h.newOrganization();
    const elsewhere = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: other.token,
      body: {
        name: 'Elsewhere',
        species: 'canine',
        identifiers: [{ system: 'microchip', value: MICROCHIP }],
      },
    });
    assert.equal(elsewhere.statusCode, 201, elsewhere.body);
  });

  void test("another organization's patient is 404 on GET and PATCH, exactly like an id that does not exist", async () => {
    const orgA = await h.newOrganization();
    const orgB = await h.newOrganization();
    const theirs = await createPatient(orgA, { name: 'Secretive', species: 'canine' });
    const unknownId = randomUUID();

    const getTheirs = await getPatient(orgB, theirs.id);
    const getUnknown = await getPatient(orgB, unknownId);
    assert.equal(getTheirs.statusCode, 404, getTheirs.body);
    assert.equal(getUnknown.statusCode, 404, getUnknown.body);
    assert.equal(errorOf(getTheirs).code, 'not_found');
    assert.equal(errorOf(getTheirs).code, errorOf(getUnknown).code);
    assert.equal(errorOf(getTheirs).message, errorOf(getUnknown).message);
    assert.equal(getTheirs.headers.etag, undefined);

    const patch = (id: string) =>
      h.request({
        method: 'PATCH',
        url: `/api/v1/patients/${id}`,
        token: orgB.token,
        body: { name: 'Hijacked' },
        headers: { 'if-match': '"1"' },
      });
    const patchTheirs = await patch(theirs.id);
    const patchUnknown = await patch(unknownId);
    assert.equal(patchTheirs.statusCode, 404, patchTheirs.body);
    assert.equal(patchUnknown.statusCode, 404, patchUnknown.body);
    assert.equal(errorOf(patchTheirs).code, 'not_found');
    assert.equal(errorOf(patchTheirs).code, errorOf(patchUnknown).code);
    assert.equal(errorOf(patchTheirs).message, errorOf(patchUnknown).message);

    const still = await getPatient(orgA, theirs.id);
    assert.deepEqual(still.json<PatientJson>(), theirs, 'the owning clinic sees it unchanged');
  });

  void test('roles: an auditor cannot read or register patients; reception can do both', async () => {
    const admin = await h.newOrganization();
    const existing = await createPatient(admin, { name: 'Registered', species: 'canine' });
    const auditor = await h.newUser(admin, 'auditor');
    const reception = await h.newUser(admin, 'reception');

    const list = await h.request({ method: 'GET', url: '/api/v1/patients', token: auditor.token });
    assert.equal(list.statusCode, 403, list.body);
    assert.equal(errorOf(list).code, 'forbidden');
    const one = await getPatient(auditor, existing.id);
    assert.equal(one.statusCode, 403, one.body);
    assert.equal(errorOf(one).code, 'forbidden');
    const create = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: auditor.token,
      body: { name: 'Not Allowed', species: 'canine' },
    });
    assert.equal(create.statusCode, 403, create.body);
    assert.equal(errorOf(create).code, 'forbidden');
    assert.deepEqual(await searchIds(admin, {}), [existing.id], 'the refused create left nothing');

    const registered = await createPatient(reception, {
      name: 'Front Desk',
      species: 'feline',
      owners: [{ name: 'Walk In', phone: '555-0199' }],
    });
    const read = await getPatient(reception, registered.id);
    assert.equal(read.statusCode, 200, read.body);
    assert.deepEqual(read.json<PatientJson>(), registered);
    assert.deepEqual(await searchIds(reception, {}), [existing.id, registered.id].sort());
  });

  void test('create, read and update each leave an audit event for the patient, without names in the detail', async () => {
    const admin = await h.newOrganization();
    const patientName = 'Quillfeather';
    const ownerName = 'Ottoline Brackenbury';
    const patient = await createPatient(admin, {
      name: patientName,
      species: 'avian',
      owners: [{ name: ownerName, email: 'ottoline@example.test' }],
    });
    assert.equal((await getPatient(admin, patient.id)).statusCode, 200);
    const patch = await h.request({
      method: 'PATCH',
      url: `/api/v1/patients/${patient.id}`,
      token: admin.token,
      body: { name: `${patientName} Junior`, breed: 'African Grey' },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(patch.statusCode, 200, patch.body);

    const events = await listAuditEvents(h.runtime.db.read, { patientId: patient.id });
    assert.deepEqual(
      events.map((e) => [e.event.type, e.event.action, e.event.outcome]),
      [
        ['patient.create', 'C', 'success'],
        ['patient.read', 'R', 'success'],
        ['patient.update', 'U', 'success'],
      ],
    );
    for (const { event } of events) {
      assert.equal(event.actor.userId, admin.userId);
      assert.equal(event.actor.organizationId, admin.organizationId);
      assert.ok(event.entity);
      assert.equal(event.entity.type, 'Patient');
      assert.equal(event.entity.id, patient.id);
    }
    assert.deepEqual(
      events.map((e) => e.event.entity?.version),
      [1, 1, 2],
    );
    const text = JSON.stringify(events).toLowerCase();
    for (const secret of [
      patientName,
      ownerName,
      'Brackenbury',
      'ottoline@example.test',
      'African Grey',
    ]) {
      assert.ok(!text.includes(secret.toLowerCase()), `audit events must not contain "${secret}"`);
    }
  });

  void test('a search leaves an audit event for each patient it disclosed, without the search terms', async () => {
    const admin = await h.newOrganization();
    const patientName = 'Thistledown';
    const ownerName = 'Peregrine Whitcombe';
    const patient = await createPatient(admin, {
      name: patientName,
      species: 'equine',
      owners: [{ name: ownerName }],
    });
    const bystander = await createPatient(admin, { name: 'Unrelated', species: 'equine' });

    assert.deepEqual(await searchIds(admin, { q: 'thistle' }), [patient.id]);
    assert.deepEqual(await searchIds(admin, { q: 'whitcombe' }), [patient.id]);

    const searches = (
      await listAuditEvents(h.runtime.db.read, { actorUserId: admin.userId })
    ).filter((e) => e.event.type === 'patient.search');
    assert.equal(searches.length, 2);
    for (const { event } of searches) {
      assert.equal(event.outcome, 'success');
      assert.deepEqual(
        event.detail?.patientIds,
        [patient.id],
        'the event names the disclosed patient',
      );
    }
    const text = JSON.stringify(searches).toLowerCase();
    for (const secret of [patientName, ownerName, 'thistle', 'whitcombe']) {
      assert.ok(
        !text.includes(secret.toLowerCase()),
        `search audit events must not contain "${secret}"`,
      );
    }

    const forPatient = (await listAuditEvents(h.runtime.db.read, { patientId: patient.id })).filter(
      (e) => e.event.type === 'patient.search',
    );
    assert.equal(
      forPatient.length,
      2,
      "the patient's own audit trail shows both searches that disclosed it",
    );
    const forBystander = (
      await listAuditEvents(h.runtime.db.read, { patientId: bystander.id })
    ).filter((e) => e.event.type === 'patient.search');
    assert.equal(forBystander.length, 0, 'a patient the search did not return is not in its trail');
  });
});
