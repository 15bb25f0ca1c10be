// Notes: drafts, optimistic edits, finalization (lock), addenda, history, paging, roles,
// organization isolation and auditing, on both engines.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { NOTE_KINDS } from '../../src/domain/note.js';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { errorOf, publicError } from '../helpers/api.js';

interface AddendumDto {
  id: string;
  body: string;
  authorId: string;
  authorName: string;
  createdAt: string;
}

interface NoteDto {
  id: string;
  patientId: string;
  kind: string;
  title: string | null;
  body: string;
  visibility: string;
  status: 'draft' | 'final';
  version: number;
  authorId: string;
  authorName: string;
  createdAt: string;
  updatedAt: string;
  finalizedAt: string | null;
  finalizedBy: string | null;
  addenda: AddendumDto[];
}

interface RevisionDto {
  version: number;
  change: string;
  kind: string;
  title: string | null;
  body: string;
  visibility: string;
  status: string;
  addendumId: string | null;
  actorId: string;
  at: string;
}

describeEachEngine('notes', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  async function newPatient(user: SignedIn, name = 'Biscuit'): Promise<string> {
    const res = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: user.token,
      body: { name, species: 'canine' },
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ id: string }>().id;
  }

  async function newNote(
    user: SignedIn,
    patientId: string,
    body: string,
    extra: Record<string, unknown> = {},
  ): Promise<NoteDto> {
    const res = await h.request({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/notes`,
      token: user.token,
      body: { kind: 'clinical', body, ...extra },
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<NoteDto>();
  }

  async function getNote(user: SignedIn, id: string): Promise<NoteDto> {
    const res = await h.request({ method: 'GET', url: `/api/v1/notes/${id}`, token: user.token });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<NoteDto>();
  }

  async function finalize(user: SignedIn, id: string): Promise<NoteDto> {
    const res = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${id}/finalize`,
      token: user.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<NoteDto>();
  }

  /** A new organization with a signed-in clinician, a nurse and a patient. */
  async function clinic() {
    const admin = await h.newOrganization();
    const clinician = await h.newUser(admin, 'clinician');
    const nurse = await h.newUser(admin, 'nurse');
    const patientId = await newPatient(clinician);
    return { admin, clinician, nurse, patientId };
  }

  void test('a clinician creates notes of every kind: internal drafts at version 1', async () => {
    const { clinician, patientId } = await clinic();
    assert.deepEqual(
      [...NOTE_KINDS],
      ['soap', 'clinical', 'behavior', 'training', 'result', 'visit'],
    );
    for (const kind of NOTE_KINDS) {
      const res = await h.request({
        method: 'POST',
        url: `/api/v1/patients/${patientId}/notes`,
        token: clinician.token,
        body: { kind, title: `A ${kind} note`, body: `Findings for the ${kind} note.` },
      });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(res.headers.etag, '"1"');
      const note = res.json<NoteDto>();
      assert.match(note.id, /^[0-9a-f-]{36}$/);
      assert.equal(note.patientId, patientId);
      assert.equal(note.kind, kind);
      assert.equal(note.title, `A ${kind} note`);
      assert.equal(note.body, `Findings for the ${kind} note.`);
      assert.equal(note.status, 'draft');
      assert.equal(note.version, 1);
      assert.equal(note.visibility, 'internal');
      assert.equal(note.authorId, clinician.userId);
      assert.equal(note.authorName, 'clinician user', 'the chart shows who wrote it');
      assert.equal(note.finalizedAt, null);
      assert.equal(note.finalizedBy, null);
      assert.deepEqual(note.addenda, []);
      assert.deepEqual(await getNote(clinician, note.id), note, 'GET returns what POST returned');
    }

    const forOwner = await newNote(clinician, patientId, 'Home care: rest for a week.', {
      kind: 'visit',
      visibility: 'owner',
    });
    assert.equal(forOwner.visibility, 'owner');
    assert.equal(forOwner.status, 'draft');
    assert.equal(forOwner.version, 1);
    assert.equal((await getNote(clinician, forOwner.id)).visibility, 'owner');

    const badKind = await h.request({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/notes`,
      token: clinician.token,
      body: { kind: 'gossip', body: 'x' },
    });
    assert.equal(badKind.statusCode, 400);
    const blank = await h.request({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/notes`,
      token: clinician.token,
      body: { kind: 'soap', body: '   ' },
    });
    assert.equal(blank.statusCode, 400);
    assert.equal(errorOf(blank).code, 'invalid');
  });

  void test('PATCH with If-Match makes a new version; a stale If-Match is 412 and changes nothing', async () => {
    const { clinician, patientId } = await clinic();
    const note = await newNote(clinician, patientId, 'First draft of the findings.');

    const edited = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      headers: { 'if-match': '"1"' },
      body: { body: 'Second draft of the findings.', title: 'Lameness' },
    });
    assert.equal(edited.statusCode, 200, edited.body);
    assert.equal(edited.headers.etag, '"2"');
    const v2 = edited.json<NoteDto>();
    assert.equal(v2.version, 2);
    assert.equal(v2.body, 'Second draft of the findings.');
    assert.equal(v2.title, 'Lameness');
    assert.equal(v2.status, 'draft');
    assert.equal(v2.kind, 'clinical');

    const stale = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      headers: { 'if-match': '"1"' },
      body: { body: 'An edit based on an old copy.' },
    });
    assert.equal(stale.statusCode, 412, stale.body);
    assert.equal(errorOf(stale).code, 'precondition_failed');

    const missing = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      body: { body: 'An edit without If-Match.' },
    });
    assert.equal(missing.statusCode, 428, missing.body);

    const current = await getNote(clinician, note.id);
    assert.equal(current.version, 2);
    assert.equal(current.body, 'Second draft of the findings.');

    const third = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      headers: { 'if-match': 'W/"2"' },
      body: { visibility: 'owner' },
    });
    assert.equal(third.statusCode, 200, third.body);
    assert.equal(third.json<NoteDto>().version, 3);
    assert.equal(third.json<NoteDto>().visibility, 'owner');
    assert.equal(third.json<NoteDto>().body, 'Second draft of the findings.');
  });

  void test('finalize locks the note: PATCH is 409 with the body unchanged, and a second finalize is 409', async () => {
    const { clinician, patientId } = await clinic();
    const note = await newNote(clinician, patientId, 'Signed findings.');
    h.clock.advance(60_000);

    const res = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${note.id}/finalize`,
      token: clinician.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    const final = res.json<NoteDto>();
    assert.equal(final.status, 'final');
    assert.equal(final.version, 2);
    assert.equal(final.finalizedBy, clinician.userId);
    assert.equal(final.finalizedAt, h.clock.now().toISOString());
    assert.equal(final.body, 'Signed findings.');

    const edit = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      headers: { 'if-match': '"2"' },
      body: { body: 'Rewriting history.' },
    });
    assert.equal(edit.statusCode, 409, edit.body);
    assert.equal(errorOf(edit).code, 'conflict');

    const again = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${note.id}/finalize`,
      token: clinician.token,
    });
    assert.equal(again.statusCode, 409, again.body);
    assert.equal(errorOf(again).code, 'conflict');

    const current = await getNote(clinician, note.id);
    assert.deepEqual(current, final, 'nothing changed after the refused edit and finalize');
  });

  void test('addenda: 201 on a final note and listed by GET /notes/{id}; 409 on a draft', async () => {
    const { clinician, nurse, patientId } = await clinic();
    const draft = await newNote(clinician, patientId, 'Draft findings.');
    const onDraft = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${draft.id}/addenda`,
      token: clinician.token,
      body: { body: 'Too early.' },
    });
    assert.equal(onDraft.statusCode, 409, onDraft.body);
    assert.equal(errorOf(onDraft).code, 'conflict');
    assert.deepEqual((await getNote(clinician, draft.id)).addenda, []);

    await finalize(clinician, draft.id);
    const first = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${draft.id}/addenda`,
      token: clinician.token,
      body: { body: 'Radiographs reviewed: no fracture.' },
    });
    assert.equal(first.statusCode, 201, first.body);
    const withOne = first.json<NoteDto>();
    assert.equal(withOne.status, 'final');
    assert.equal(withOne.body, 'Draft findings.', 'the note body itself is untouched');
    assert.equal(withOne.addenda.length, 1);
    const [added] = withOne.addenda;
    assert.ok(added);
    assert.equal(added.body, 'Radiographs reviewed: no fracture.');
    assert.equal(added.authorId, clinician.userId);

    const second = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${draft.id}/addenda`,
      token: nurse.token,
      body: { body: 'Owner called: eating well.' },
    });
    assert.equal(second.statusCode, 201, second.body);

    const note = await getNote(clinician, draft.id);
    assert.deepEqual(
      note.addenda.map((a) => [a.body, a.authorId]),
      [
        ['Radiographs reviewed: no fracture.', clinician.userId],
        ['Owner called: eating well.', nurse.userId],
      ],
    );
    assert.equal(note.body, 'Draft findings.');
  });

  void test('history lists every change in order with a full snapshot of each version', async () => {
    const { clinician, patientId } = await clinic();
    const created = await newNote(clinician, patientId, 'Original body: mild limp.', {
      kind: 'soap',
      title: 'Limp',
    });
    const t1 = h.clock.now().toISOString();
    h.clock.advance(1000);
    const edit = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${created.id}`,
      token: clinician.token,
      headers: { 'if-match': '"1"' },
      body: { body: 'Edited body: marked limp, left fore.' },
    });
    assert.equal(edit.statusCode, 200, edit.body);
    const t2 = h.clock.now().toISOString();
    h.clock.advance(1000);
    const edit2 = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${created.id}`,
      token: clinician.token,
      headers: { 'if-match': '"2"' },
      body: { title: 'Lameness', visibility: 'owner' },
    });
    assert.equal(edit2.statusCode, 200, edit2.body);
    const t3 = h.clock.now().toISOString();
    h.clock.advance(1000);
    await finalize(clinician, created.id);
    const t4 = h.clock.now().toISOString();
    h.clock.advance(1000);
    const addendum = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${created.id}/addenda`,
      token: clinician.token,
      body: { body: 'Addendum: recheck in two weeks.' },
    });
    assert.equal(addendum.statusCode, 201, addendum.body);
    const t5 = h.clock.now().toISOString();
    const addendumId = addendum.json<NoteDto>().addenda[0]?.id;
    assert.ok(addendumId);

    const res = await h.request({
      method: 'GET',
      url: `/api/v1/notes/${created.id}/history`,
      token: clinician.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    const history = res.json<{ items: RevisionDto[]; addenda: AddendumDto[] }>();
    const base = { kind: 'soap', actorId: clinician.userId };
    assert.deepEqual(history.items, [
      {
        ...base,
        version: 1,
        change: 'created',
        title: 'Limp',
        body: 'Original body: mild limp.',
        visibility: 'internal',
        status: 'draft',
        addendumId: null,
        at: t1,
      },
      {
        ...base,
        version: 2,
        change: 'edited',
        title: 'Limp',
        body: 'Edited body: marked limp, left fore.',
        visibility: 'internal',
        status: 'draft',
        addendumId: null,
        at: t2,
      },
      {
        ...base,
        version: 3,
        change: 'edited',
        title: 'Lameness',
        body: 'Edited body: marked limp, left fore.',
        visibility: 'owner',
        status: 'draft',
        addendumId: null,
        at: t3,
      },
      {
        ...base,
        version: 4,
        change: 'finalized',
        title: 'Lameness',
        body: 'Edited body: marked limp, left fore.',
        visibility: 'owner',
        status: 'final',
        addendumId: null,
        at: t4,
      },
      {
        ...base,
        version: 5,
        change: 'addendum',
        title: 'Lameness',
        body: 'Edited body: marked limp, left fore.',
        visibility: 'owner',
        status: 'final',
        addendumId,
        at: t5,
      },
    ]);
    assert.deepEqual(history.addenda, [
      {
        id: addendumId,
        body: 'Addendum: recheck in two weeks.',
        authorId: clinician.userId,
        authorName: 'clinician user',
        createdAt: t5,
        releaseAt: null,
      },
    ]);
    const current = await getNote(clinician, created.id);
    assert.equal(current.version, 5);
    assert.equal(current.body, 'Edited body: marked limp, left fore.');
  });

  void test('the notes list is newest first and its cursor pages have no duplicates or gaps', async () => {
    const { clinician, patientId } = await clinic();
    const otherPatient = await newPatient(clinician, 'Pickles');
    await newNote(clinician, otherPatient, 'A note about another patient.');
    const created: string[] = [];
    for (let i = 0; i < 7; i++) {
      created.push((await newNote(clinician, patientId, `Note number ${i}.`)).id);
      h.clock.advance(1000);
    }

    const seen: NoteDto[] = [];
    const pageSizes: number[] = [];
    let cursor: string | null = null;
    for (let round = 0; round < 10; round++) {
      const query: string = cursor === null ? '?limit=3' : `?limit=3&cursor=${cursor}`;
      const res = await h.request({
        method: 'GET',
        url: `/api/v1/patients/${patientId}/notes${query}`,
        token: clinician.token,
      });
      assert.equal(res.statusCode, 200, res.body);
      const page = res.json<{ items: NoteDto[]; nextCursor: string | null }>();
      pageSizes.push(page.items.length);
      seen.push(...page.items);
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    assert.deepEqual(pageSizes, [3, 3, 1]);
    assert.deepEqual(
      seen.map((n) => n.id),
      [...created].reverse(),
      'newest first, each note exactly once',
    );
    assert.deepEqual(
      seen.map((n) => n.body),
      [6, 5, 4, 3, 2, 1, 0].map((i) => `Note number ${i}.`),
    );
    const times = seen.map((n) => n.createdAt);
    assert.deepEqual(times, [...times].sort().reverse());
    assert.ok(seen.every((n) => n.patientId === patientId));

    const all = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes`,
      token: clinician.token,
    });
    assert.equal(all.statusCode, 200);
    const whole = all.json<{ items: NoteDto[]; nextCursor: string | null }>();
    assert.equal(whole.items.length, 7);
    assert.equal(whole.nextCursor, null);

    const garbage = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes?cursor=not-a-cursor`,
      token: clinician.token,
    });
    assert.equal(garbage.statusCode, 400);
  });

  void test("a nurse cannot edit or sign a clinician's draft, but a clinician can finalize a nurse's draft", async () => {
    const { clinician, nurse, patientId } = await clinic();
    const clinicianDraft = await newNote(clinician, patientId, 'Clinician draft.');

    const read = await getNote(nurse, clinicianDraft.id);
    assert.equal(read.body, 'Clinician draft.');
    const edit = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${clinicianDraft.id}`,
      token: nurse.token,
      headers: { 'if-match': '"1"' },
      body: { body: 'Nurse rewrite.' },
    });
    assert.equal(edit.statusCode, 403, edit.body);
    assert.equal(errorOf(edit).code, 'forbidden');
    const sign = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${clinicianDraft.id}/finalize`,
      token: nurse.token,
    });
    assert.equal(sign.statusCode, 403, sign.body);
    const unchanged = await getNote(clinician, clinicianDraft.id);
    assert.equal(unchanged.body, 'Clinician draft.');
    assert.equal(unchanged.version, 1);
    assert.equal(unchanged.status, 'draft');

    const nurseDraft = await newNote(nurse, patientId, 'Nurse draft: obs taken.');
    assert.equal(nurseDraft.authorId, nurse.userId);
    const signed = await finalize(clinician, nurseDraft.id);
    assert.equal(signed.status, 'final');
    assert.equal(signed.authorId, nurse.userId);
    assert.equal(signed.finalizedBy, clinician.userId);
    assert.equal(signed.body, 'Nurse draft: obs taken.');

    const ownDraft = await newNote(nurse, patientId, 'Nurse signs her own.');
    const own = await finalize(nurse, ownDraft.id);
    assert.equal(own.finalizedBy, nurse.userId);
  });

  void test('admin, reception and auditor get 403 on every note read and write', async () => {
    const { admin, clinician, patientId } = await clinic();
    const draft = await newNote(clinician, patientId, 'Private draft.');
    const final = await newNote(clinician, patientId, 'Private final.');
    await finalize(clinician, final.id);
    const reception = await h.newUser(admin, 'reception');
    const auditor = await h.newUser(admin, 'auditor');

    for (const user of [admin, reception, auditor]) {
      const attempts: {
        method: 'GET' | 'POST' | 'PATCH';
        url: string;
        body?: unknown;
        headers?: Record<string, string>;
      }[] = [
        { method: 'GET', url: `/api/v1/patients/${patientId}/notes` },
        {
          method: 'POST',
          url: `/api/v1/patients/${patientId}/notes`,
          body: { kind: 'soap', body: 'x' },
        },
        { method: 'GET', url: `/api/v1/notes/${draft.id}` },
        { method: 'GET', url: `/api/v1/notes/${draft.id}/history` },
        {
          method: 'PATCH',
          url: `/api/v1/notes/${draft.id}`,
          headers: { 'if-match': '"1"' },
          body: { body: 'changed' },
        },
        { method: 'POST', url: `/api/v1/notes/${draft.id}/finalize` },
        { method: 'POST', url: `/api/v1/notes/${final.id}/addenda`, body: { body: 'more' } },
      ];
      for (const attempt of attempts) {
        const res = await h.request({ ...attempt, token: user.token });
        assert.equal(
          res.statusCode,
          403,
          `${user.role} ${attempt.method} ${attempt.url}: ${res.body}`,
        );
        assert.equal(errorOf(res).code, 'forbidden');
        assert.ok(!res.body.includes('Private'), 'no note content in the refusal');
      }
      const denied = (await listAuditEvents(h.runtime.db.read, { actorUserId: user.userId }))
        .map((e) => e.event)
        .filter((e) => e.type.startsWith('note.'));
      assert.equal(denied.length, attempts.length, `${user.role}: every refusal is audited`);
      assert.ok(denied.every((e) => e.outcome === 'denied'));
    }

    const list = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes`,
      token: clinician.token,
    });
    assert.equal(list.json<{ items: NoteDto[] }>().items.length, 2, 'nothing was created');
    const draftNow = await getNote(clinician, draft.id);
    assert.equal(draftNow.version, 1);
    assert.equal(draftNow.status, 'draft');
    assert.equal(draftNow.body, 'Private draft.');
    assert.deepEqual((await getNote(clinician, final.id)).addenda, []);
  });

  void test("another organization's note or patient is 404, indistinguishable from a random id", async () => {
    const a = await clinic();
    const draft = await newNote(a.clinician, a.patientId, 'Organization A draft.');
    const final = await newNote(a.clinician, a.patientId, 'Organization A final.');
    await finalize(a.clinician, final.id);

    const bAdmin = await h.newOrganization();
    const b = await h.newUser(bAdmin, 'clinician');

    const probes = (noteId: string, finalId: string, patientId: string) =>
      [
        { method: 'GET', url: `/api/v1/notes/${noteId}` },
        { method: 'GET', url: `/api/v1/notes/${noteId}/history` },
        {
          method: 'PATCH',
          url: `/api/v1/notes/${noteId}`,
          headers: { 'if-match': '"1"' },
          body: { body: 'from B' },
        },
        { method: 'POST', url: `/api/v1/notes/${noteId}/finalize` },
        { method: 'POST', url: `/api/v1/notes/${finalId}/addenda`, body: { body: 'from B' } },
        { method: 'GET', url: `/api/v1/patients/${patientId}/notes` },
        {
          method: 'POST',
          url: `/api/v1/patients/${patientId}/notes`,
          body: { kind: 'soap', body: 'from B' },
        },
      ] as const;

    const foreign = probes(draft.id, final.id, a.patientId);
    const random = probes(randomUUID(), randomUUID(), randomUUID());
    for (let i = 0; i < foreign.length; i++) {
      const f = foreign[i];
      const r = random[i];
      assert.ok(f && r);
      const fr = await h.request({ ...f, token: b.token });
      const rr = await h.request({ ...r, token: b.token });
      assert.equal(fr.statusCode, 404, `${f.method} ${f.url}: ${fr.body}`);
      assert.equal(rr.statusCode, 404, `${r.method} ${r.url}: ${rr.body}`);
      assert.deepEqual(
        publicError(fr),
        publicError(rr),
        `${f.method} ${f.url}: same answer as a random id`,
      );
      assert.ok(!fr.body.includes('Organization A'));
    }

    const garbage = await h.request({
      method: 'GET',
      url: '/api/v1/notes/not-a-uuid',
      token: b.token,
    });
    assert.equal(garbage.statusCode, 404, garbage.body);

    const draftNow = await getNote(a.clinician, draft.id);
    assert.equal(draftNow.version, 1);
    assert.equal(draftNow.status, 'draft');
    assert.equal(draftNow.body, 'Organization A draft.');
    assert.deepEqual((await getNote(a.clinician, final.id)).addenda, []);
    const list = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${a.patientId}/notes`,
      token: a.clinician.token,
    });
    assert.equal(list.json<{ items: NoteDto[] }>().items.length, 2);
  });

  void test("every note read and write is audited under the note's patient, never with the body", async () => {
    const { clinician, patientId } = await clinic();
    const secret = (label: string) => `Confidential-${label}-${randomUUID()}`;
    const bodies = [secret('create'), secret('edit'), secret('addendum'), secret('refused')];
    const [createBody, editBody, addendumBody, refusedBody] = bodies as [
      string,
      string,
      string,
      string,
    ];

    const note = await newNote(clinician, patientId, createBody, { title: 'Audit me' });
    await getNote(clinician, note.id);
    const list = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/notes`,
      token: clinician.token,
    });
    assert.equal(list.statusCode, 200);
    const edit = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      headers: { 'if-match': '"1"' },
      body: { body: editBody },
    });
    assert.equal(edit.statusCode, 200);
    await finalize(clinician, note.id);
    const refused = await h.request({
      method: 'PATCH',
      url: `/api/v1/notes/${note.id}`,
      token: clinician.token,
      headers: { 'if-match': '"3"' },
      body: { body: refusedBody },
    });
    assert.equal(refused.statusCode, 409);
    const addendum = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${note.id}/addenda`,
      token: clinician.token,
      body: { body: addendumBody },
    });
    assert.equal(addendum.statusCode, 201);
    const history = await h.request({
      method: 'GET',
      url: `/api/v1/notes/${note.id}/history`,
      token: clinician.token,
    });
    assert.equal(history.statusCode, 200);

    const mine = (await listAuditEvents(h.runtime.db.read, { actorUserId: clinician.userId }))
      .map((e) => e.event)
      .filter((e) => e.type.startsWith('note.'));
    assert.deepEqual(
      mine.map((e) => [e.type, e.outcome]),
      [
        ['note.create', 'success'],
        ['note.read', 'success'],
        ['note.list', 'success'],
        ['note.update', 'success'],
        ['note.finalize', 'success'],
        ['note.update', 'failure'],
        ['note.addendum', 'success'],
        ['note.history', 'success'],
      ],
    );
    for (const e of mine) {
      assert.equal(e.patientId, patientId, `${e.type} is filed under the note's patient`);
      assert.equal(e.actor.userId, clinician.userId);
      if (e.type !== 'note.list') assert.equal(e.entity?.id, note.id, `${e.type} names the note`);
    }

    const forPatient = (await listAuditEvents(h.runtime.db.read, { patientId }))
      .map((e) => e.event)
      .filter((e) => e.type.startsWith('note.'));
    assert.deepEqual(forPatient, mine, 'the patient filter finds the same events');
    const stored = JSON.stringify(await listAuditEvents(h.runtime.db.read, { patientId }));
    for (const body of bodies) {
      assert.ok(!stored.includes(body), 'no note body in any audit event of the patient');
    }
    const everything = JSON.stringify(await listAuditEvents(h.runtime.db.read));
    for (const body of bodies) {
      assert.ok(!everything.includes(body), 'no note body anywhere in the audit trail');
    }
  });
});
