// What people outside the clinic see of a patient, over HTTP on both engines: addenda to owner
// notes reach the owner only once released themselves, and owners' email and phone stay with the
// clinic and the owner (trainers, walkers and carers see owners' names only).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { PageJson, PatientJson } from '../helpers/api.js';
import { describeEachEngine } from '../helpers/engines.js';
import { invitationToken } from '../helpers/invitations.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';

type Account = { token: string; email: string };
type Method = 'GET' | 'POST';

interface AddendumJson {
  id: string;
  body: string;
  releaseAt: string | null;
}
interface NoteJson {
  id: string;
  releaseAt: string | null;
  addenda: AddendumJson[];
}
interface HistoryJson {
  items: { change: string; addendumId: string | null }[];
  addenda: AddendumJson[];
}

const HOUR = 3_600_000;

function ok(res: LightMyRequestResponse, status = 200): LightMyRequestResponse {
  assert.equal(res.statusCode, status, res.body);
  return res;
}

describeEachEngine('owner privacy', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  const call = (user: Account | null, method: Method, path: string, body?: unknown) =>
    h.request({
      method,
      url: path,
      ...(user ? { token: user.token } : {}),
      ...(body !== undefined ? { body } : {}),
    });
  const get = (user: Account, path: string) => call(user, 'GET', path);
  const post = (user: Account | null, path: string, body?: unknown) =>
    call(user, 'POST', path, body);

  interface Clinic {
    clinician: SignedIn;
    patient: PatientJson;
    path: string;
    ownerId: string;
    ownerEmail: string;
    coOwnerEmail: string;
  }

  /** A clinic with a clinician and a patient with two owners on record, each with contacts. */
  async function clinic(): Promise<Clinic> {
    const admin = await h.newOrganization();
    const clinician = await h.newUser(admin, 'clinician');
    const ownerEmail = uniqueEmail('owner');
    const coOwnerEmail = uniqueEmail('co-owner');
    const patient = ok(
      await post(clinician, '/api/v1/patients', {
        name: 'Biscuit',
        species: 'canine',
        owners: [
          { name: 'Olive Owner', email: ownerEmail, phone: '+44 20 7946 0001' },
          { name: 'Colin Co-Owner', email: coOwnerEmail, phone: '+44 20 7946 0002' },
        ],
      }),
      201,
    ).json<PatientJson>();
    const ownerId = patient.owners.find((o) => o.email === ownerEmail)?.id;
    assert.ok(ownerId);
    return {
      clinician,
      patient,
      path: `/api/v1/patients/${patient.id}`,
      ownerId,
      ownerEmail,
      coOwnerEmail,
    };
  }

  async function signIn(email: string): Promise<Account> {
    const res = await post(null, '/api/v1/auth/login', { email, password: PASSWORD });
    return { token: ok(res).json<{ token: string }>().token, email };
  }

  /** A share for `email` in `role`, its invitation accepted, signed in. */
  async function sharee(c: Clinic, role: string, email = uniqueEmail(role)): Promise<Account> {
    if (role !== 'owner')
      ok(
        await post(c.clinician, `${c.path}/consents`, {
          granteeEmail: email,
          purpose: 'Care',
          scope: 'read',
          method: 'in_person',
          ownerId: c.ownerId,
        }),
        201,
      );
    ok(await post(c.clinician, `${c.path}/shares`, { email, role, access: 'read' }), 201);
    const token = await invitationToken(h, email);
    ok(
      await post(null, `/api/v1/invitations/${token}/accept`, { name: 'Tess', password: PASSWORD }),
    );
    return signIn(email);
  }

  /** A final owner note, released to the owner now, with an addendum written afterwards. */
  async function releasedNoteWithAddendum(c: Clinic) {
    const note = ok(
      await post(c.clinician, `${c.path}/notes`, {
        kind: 'clinical',
        body: 'Hip looks fine.',
        visibility: 'owner',
      }),
      201,
    ).json<NoteJson>();
    ok(await post(c.clinician, `/api/v1/notes/${note.id}/finalize`));
    ok(await post(c.clinician, `/api/v1/notes/${note.id}/release`, { at: h.clock.now() }));
    const amended = ok(
      await post(c.clinician, `/api/v1/notes/${note.id}/addenda`, {
        body: 'Lab: suspected tumour, discuss before telling the owner.',
      }),
      201,
    ).json<NoteJson>();
    const addendum = amended.addenda[0];
    assert.ok(addendum);
    return { noteId: note.id, addendumId: addendum.id, releaseAt: addendum.releaseAt };
  }

  /** The addenda bodies of the note as `user` reads it: alone, in the list and in the history. */
  async function addendaSeen(user: Account, c: Clinic, noteId: string) {
    const one = ok(await get(user, `/api/v1/notes/${noteId}`)).json<NoteJson>();
    const listed = ok(await get(user, `${c.path}/notes`))
      .json<PageJson<NoteJson>>()
      .items.find((n) => n.id === noteId);
    const history = ok(await get(user, `/api/v1/notes/${noteId}/history`)).json<HistoryJson>();
    return {
      note: one.addenda.map((a) => a.body),
      list: listed?.addenda.map((a) => a.body),
      history: history.addenda.map((a) => a.body),
      historyChanges: history.items.map((r) => r.change),
    };
  }

  void test('an addendum to a released owner note reaches the owner only once released itself', async () => {
    const c = await clinic();
    const owner = await sharee(c, 'owner', c.ownerEmail);
    const { noteId, addendumId, releaseAt } = await releasedNoteWithAddendum(c);
    const secret = 'Lab: suspected tumour, discuss before telling the owner.';

    const ownerBefore = await addendaSeen(owner, c, noteId);
    assert.deepEqual(
      [ownerBefore.note, ownerBefore.list, ownerBefore.history],
      [[], [], []],
      'the owner sees the released note without its unreleased addendum',
    );
    assert.deepEqual(ownerBefore.historyChanges, ['finalized', 'released']);
    assert.equal(releaseAt, null, 'a new addendum is not released');
    const staff = await addendaSeen(c.clinician, c, noteId);
    assert.deepEqual([staff.note, staff.list, staff.history], [[secret], [secret], [secret]]);

    // The owner cannot release it; a release for tomorrow shows it tomorrow, not before.
    const byOwner = await post(owner, `/api/v1/notes/${noteId}/addenda/${addendumId}/release`);
    assert.ok([403, 404].includes(byOwner.statusCode), byOwner.body);
    const tomorrow = new Date(h.clock.now().getTime() + 24 * HOUR).toISOString();
    const scheduled = ok(
      await post(c.clinician, `/api/v1/notes/${noteId}/addenda/${addendumId}/release`, {
        at: tomorrow,
      }),
    ).json<NoteJson>();
    assert.equal(scheduled.addenda[0]?.releaseAt, tomorrow);
    assert.deepEqual((await addendaSeen(owner, c, noteId)).note, []);

    h.clock.advance(24 * HOUR);
    // A day later both sign in again (sessions end after a while without use).
    const ownerAgain = await signIn(c.ownerEmail);
    const clinicianAgain = await signIn(c.clinician.email);
    const ownerAfter = await addendaSeen(ownerAgain, c, noteId);
    assert.deepEqual(
      [ownerAfter.note, ownerAfter.list, ownerAfter.history],
      [[secret], [secret], [secret]],
    );
    assert.deepEqual(ownerAfter.historyChanges, [
      'finalized',
      'released',
      'addendum',
      'addendum_released',
    ]);
    const again = await post(
      clinicianAgain,
      `/api/v1/notes/${noteId}/addenda/${addendumId}/release`,
    );
    assert.equal(again.statusCode, 409, 'already released');
  });

  void test('addenda of an internal note cannot be released, and an unknown addendum is 404', async () => {
    const c = await clinic();
    const note = ok(
      await post(c.clinician, `${c.path}/notes`, { kind: 'clinical', body: 'Internal.' }),
      201,
    ).json<NoteJson>();
    ok(await post(c.clinician, `/api/v1/notes/${note.id}/finalize`));
    const amended = ok(
      await post(c.clinician, `/api/v1/notes/${note.id}/addenda`, { body: 'More.' }),
      201,
    ).json<NoteJson>();
    const internal = await post(
      c.clinician,
      `/api/v1/notes/${note.id}/addenda/${amended.addenda[0]?.id ?? ''}/release`,
    );
    assert.equal(internal.statusCode, 409, internal.body);
    const unknown = await post(
      c.clinician,
      `/api/v1/notes/${note.id}/addenda/0190f0f0-0000-7000-8000-000000000000/release`,
    );
    assert.equal(unknown.statusCode, 404, unknown.body);
  });

  void test('trainers, walkers and carers see owners by name only; an owner sees their own contacts; staff see all', async () => {
    const c = await clinic();
    const full = c.patient.owners.map((o) => [o.name, o.email, o.phone]).sort();
    assert.ok(full.every(([, email, phone]) => email !== null && phone !== null));
    const namesOnly = c.patient.owners.map((o) => [o.name, null, null]).sort();

    const ownersAs = async (user: Account) => {
      const one = ok(await get(user, c.path)).json<PatientJson>();
      const mine = ok(await get(user, '/api/v1/me/patients'))
        .json<PageJson>()
        .items.find((p) => p.id === c.patient.id);
      assert.ok(mine, 'the patient is in their list');
      const view = (p: PatientJson) => p.owners.map((o) => [o.name, o.email, o.phone]).sort();
      return { one: view(one), list: view(mine) };
    };

    for (const role of ['trainer', 'walker', 'carer']) {
      const person = await sharee(c, role);
      const seen = await ownersAs(person);
      assert.deepEqual(seen, { one: namesOnly, list: namesOnly }, `${role}: names only`);
      const raw = ok(await get(person, c.path)).body;
      for (const contact of [c.ownerEmail, c.coOwnerEmail, '7946'])
        assert.ok(!raw.includes(contact), `${role}: no ${contact} in the answer`);
    }

    const owner = await sharee(c, 'owner', c.ownerEmail);
    const ownerView = (await ownersAs(owner)).one;
    assert.deepEqual(ownerView, [
      ['Colin Co-Owner', null, null],
      ['Olive Owner', c.ownerEmail, '+44 20 7946 0001'],
    ]);

    const staff = ok(await get(c.clinician, c.path)).json<PatientJson>();
    assert.deepEqual(staff.owners.map((o) => [o.name, o.email, o.phone]).sort(), full);
  });
});
