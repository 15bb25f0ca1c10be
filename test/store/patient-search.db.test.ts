// Patient search by text on both engines: what matches (a prefix of the patient's name, of a word
// of an owner's name, a phrase), that every change of name or owners is searchable at once, that
// cursors page through ties and several matching words without loss, and organization isolation.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { searchKey } from '../../src/domain/patient.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import {
  insertOwner,
  insertPatient,
  replacePatientOwners,
  searchPatients,
  updatePatientIfVersion,
} from '../../src/store/patient.store.js';
import type { PatientRow, Tx } from '../../src/store/tables.js';
import { describeEachEngine } from '../helpers/engines.js';

const at = '2026-01-02T03:04:05.000Z';
const ORG = 'org-search-1';
const OTHER = 'org-search-2';

let serial = 0;
/** Ids that sort in creation order, as uuidv7 do. */
function nextId(kind: string): string {
  serial++;
  return `${kind}-${String(serial).padStart(6, '0')}`;
}

async function addPatient(
  tx: Tx,
  org: string,
  name: string,
  owners: string[] = [],
  id = nextId('patient'),
): Promise<string> {
  await insertPatient(tx, {
    id,
    organization_id: org,
    name,
    name_search: searchKey(name),
    species: 'canine',
    breed: null,
    sex: null,
    birth_date: null,
    version: 1,
    created_by: `user-${org}`,
    created_at: at,
    updated_at: at,
  });
  const ownerIds: string[] = [];
  for (const ownerName of owners) ownerIds.push(await addOwner(tx, org, ownerName));
  await replacePatientOwners(tx, id, ownerIds);
  return id;
}

async function addOwner(tx: Tx, org: string, name: string): Promise<string> {
  const id = nextId('owner');
  await insertOwner(tx, {
    id,
    organization_id: org,
    name,
    name_search: searchKey(name),
    email: null,
    phone: null,
    created_at: at,
    updated_at: at,
  });
  return id;
}

describeEachEngine('patient search', ({ url }) => {
  let db: Database;
  const found = async (text: string, org = ORG): Promise<string[]> =>
    (await searchPatients(db.read, { organizationId: org, text, limit: 100 })).map((p) => p.id);

  /** Every page of a search, `limit` at a time, following the cursor as the service does. */
  async function pages(text: string, limit: number): Promise<PatientRow[][]> {
    const all: PatientRow[][] = [];
    let cursor: { nameSearch: string; id: string } | undefined;
    for (;;) {
      const rows = await searchPatients(db.read, {
        organizationId: ORG,
        text,
        limit,
        ...(cursor ? { after: cursor } : {}),
      });
      if (rows.length === 0) return all;
      all.push(rows);
      const last = rows[rows.length - 1];
      assert.ok(last);
      cursor = { nameSearch: last.name_search, id: last.id };
      assert.ok(all.length < 200, 'paging must end');
    }
  }

  before(async () => {
    db = await openDatabase(url());
    await db.migrate();
    await db.write(async (tx) => {
      for (const org of [ORG, OTHER]) {
        await tx
          .insertInto('organizations')
          .values({ id: org, name: `Clinic ${org}`, created_at: at })
          .execute();
        await tx
          .insertInto('users')
          .values({
            id: `user-${org}`,
            organization_id: org,
            email: `vet@${org}.test`,
            name: 'Vet',
            role: 'clinician',
            password_hash: 'hash',
            disabled: 0,
            totp_secret: null,
            totp_pending_secret: null,
            totp_enabled: 0,
            totp_last_step: null,
            version: 1,
            created_at: at,
            updated_at: at,
          })
          .execute();
      }
    });
  });
  after(async () => {
    await db.close();
  });

  test('one word: a prefix of the pet name or of any word of an owner name, in name order', async () => {
    const ids = await db.write(async (tx) => ({
      bella: await addPatient(tx, ORG, 'Bella Brightwater', ['Marta Castellano']),
      belmont: await addPatient(tx, ORG, 'Belmont', ['Ana de la Peña']),
      rex: await addPatient(tx, ORG, 'Rex', ['Jo Bellamy']),
      stray: await addPatient(tx, ORG, 'Stray'),
    }));
    assert.deepEqual(
      await found('bel'),
      [ids.bella, ids.belmont, ids.rex],
      'pet names, owner word',
    );
    assert.deepEqual(await found('bella'), [ids.bella, ids.rex]);
    assert.deepEqual(await found('castel'), [ids.bella], 'owner surname prefix');
    assert.deepEqual(await found('marta'), [ids.bella], 'owner first name');
    assert.deepEqual(await found('pena'), [ids.belmont], 'a later word of the owner name');
    assert.deepEqual(await found('la'), [ids.belmont]);
    assert.deepEqual(await found('brightwater'), [], 'not a later word of the pet name');
    assert.deepEqual(await found('arta'), [], 'only word prefixes');
    assert.deepEqual(await found('stray'), [ids.stray], 'a patient without owners');
  });

  test('several words: a prefix of the pet name, or of an owner name from the start of a word', async () => {
    const ids = await db.write(async (tx) => ({
      pagi: await addPatient(tx, ORG, 'Pagi Echo'),
      mirta: await addPatient(tx, ORG, 'Quill', ['Mirta Castellane']),
      second: await addPatient(tx, ORG, 'Quince', ['Dr Mirta Castro']),
      split: await addPatient(tx, ORG, 'Quartz', ['Mirta Lopez', 'Ana Castellane']),
    }));
    assert.deepEqual(await found('pagi e'), [ids.pagi]);
    assert.deepEqual(await found('pagi echo'), [ids.pagi]);
    assert.deepEqual(await found('pagi x'), []);
    assert.deepEqual(await found('mirta cas'), [ids.mirta, ids.second]);
    assert.deepEqual(await found('mirta castel'), [ids.mirta]);
    assert.deepEqual(await found('dr mirta'), [ids.second]);
    assert.deepEqual(await found('castellane mirta'), [], 'the words in their order');
    assert.deepEqual(
      (await found('mirta')).filter((id) => id === ids.split),
      [ids.split],
      'one word finds a patient with two owners by either',
    );
  });

  test('a renamed patient is found by its new name only, and ordered by it', async () => {
    const id = await db.write((tx) => addPatient(tx, ORG, 'Oldname', ['Renata Wexford']));
    assert.deepEqual(await found('oldn'), [id]);
    await db.write(async (tx) => {
      assert.ok(
        await updatePatientIfVersion(tx, id, 1, {
          name: 'Aaron',
          name_search: 'aaron',
          updated_at: at,
        }),
      );
    });
    assert.deepEqual(await found('oldn'), []);
    assert.deepEqual(await found('aaro'), [id]);
    const byOwner = await searchPatients(db.read, {
      organizationId: ORG,
      text: 'wexf',
      limit: 10,
    });
    assert.deepEqual(
      byOwner.map((p) => [p.id, p.name_search]),
      [[id, 'aaron']],
      "the owner's words carry the new name",
    );
  });

  test('owners replaced or unlinked: their names stop finding the patient; the new owner finds it', async () => {
    const id = await db.write((tx) => addPatient(tx, ORG, 'Moss', ['Hildegard Ullswater']));
    assert.deepEqual(await found('ullsw'), [id]);
    await db.write(async (tx) => {
      await replacePatientOwners(tx, id, [await addOwner(tx, ORG, 'Ingrid Vasquez')]);
    });
    assert.deepEqual(await found('ullsw'), [], 'the former owner');
    assert.deepEqual(await found('hildeg'), []);
    assert.deepEqual(await found('vasq'), [id], 'the new owner');
    assert.deepEqual(await found('moss'), [id], 'the patient name still');
    await db.write((tx) => replacePatientOwners(tx, id, []));
    assert.deepEqual(await found('vasq'), [], 'no owner left');
    assert.deepEqual(await found('moss'), [id]);
  });

  test('an owner linked to a second patient finds both', async () => {
    const { first, second } = await db.write(async (tx) => {
      const first = await addPatient(tx, ORG, 'Nutmeg', ['Henrietta Vandersloot']);
      const owner = await tx
        .selectFrom('patient_owners')
        .select('owner_id')
        .where('patient_id', '=', first)
        .executeTakeFirstOrThrow();
      const second = await addPatient(tx, ORG, 'Pepper');
      await replacePatientOwners(tx, second, [owner.owner_id]);
      return { first, second };
    });
    assert.deepEqual(await found('vanders'), [first, second]);
  });

  test('cursor paging walks ties and several matching words once each, in byte order', async () => {
    // "tw…" starts pet names (some the same), owner words, and names outside ASCII (ø sorts
    // after every ASCII letter in UTF-8 byte order, the order of both engines).
    const expected = await db.write(async (tx) => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await addPatient(tx, ORG, 'Twix'));
      ids.push(await addPatient(tx, ORG, 'Twøson'));
      ids.push(await addPatient(tx, ORG, 'Twa'));
      ids.push(await addPatient(tx, ORG, 'Abel', ['Cyd Twain']));
      ids.push(await addPatient(tx, ORG, 'Zed', ['Twyla Twombly']));
      ids.push(await addPatient(tx, ORG, 'Twix', ['Twix Twixton']));
      await addPatient(tx, ORG, 'Tank', ['Cyd Tallow']);
      await addPatient(tx, OTHER, 'Twix', ['Twyla Twain']);
      return ids;
    });
    const rows = await searchPatients(db.read, { organizationId: ORG, text: 'tw', limit: 100 });
    assert.deepEqual(
      rows.map((r) => r.name_search),
      ['abel', 'twa', 'twix', 'twix', 'twix', 'twix', 'twix', 'twix', 'twøson', 'zed'],
    );
    assert.deepEqual(new Set(rows.map((r) => r.id)), new Set(expected));
    for (const size of [1, 2, 3, 4]) {
      const walked = await pages('tw', size);
      assert.ok(walked.every((p) => p.length <= size));
      assert.deepEqual(
        walked.flat().map((r) => r.id),
        rows.map((r) => r.id),
        `pages of ${String(size)}: every match once, in order`,
      );
    }
  });

  test('a short prefix starting many words (sorted, not merged) pages the same way', async () => {
    const expected = await db.write(async (tx) => {
      const ids: string[] = [];
      // 40 owners' surnames starting with "x": more words than are merged a page each.
      for (let i = 0; i < 40; i++)
        ids.push(
          await addPatient(tx, ORG, `Pet${String(i % 3)}`, [`Kim X${String(i).padStart(2, '0')}`]),
        );
      ids.push(await addPatient(tx, ORG, 'Xena', ['Kim X00']));
      return ids;
    });
    const rows = await searchPatients(db.read, { organizationId: ORG, text: 'x', limit: 100 });
    assert.deepEqual(new Set(rows.map((r) => r.id)), new Set(expected));
    assert.equal(rows.length, expected.length, 'each patient once');
    const names = rows.map((r) => r.name_search);
    assert.deepEqual(names, [...names].sort());
    assert.deepEqual(
      (await pages('x', 7)).flat().map((r) => r.id),
      rows.map((r) => r.id),
    );
    assert.deepEqual(await found('x07'), [expected[7]]);
  });

  test('an identifier and a text together: the holder, if the text matches it too', async () => {
    const id = await db.write(async (tx) => {
      const id = await addPatient(tx, ORG, 'Chipper', ['Greta Holm']);
      await tx
        .insertInto('patient_identifiers')
        .values({
          id: nextId('identifier'),
          organization_id: ORG,
          patient_id: id,
          system: 'microchip',
          value: '985000000000777',
        })
        .execute();
      return id;
    });
    const both = async (text: string) =>
      (
        await searchPatients(db.read, {
          organizationId: ORG,
          identifier: { system: 'microchip', value: '985000000000777' },
          text,
          limit: 10,
        })
      ).map((p) => p.id);
    assert.deepEqual(await both('chip'), [id], 'pet name prefix');
    assert.deepEqual(await both('holm'), [id], 'owner word');
    assert.deepEqual(await both('greta ho'), [id], 'owner phrase');
    assert.deepEqual(await both('chipper x'), []);
    assert.deepEqual(await both('moss'), [], 'a text that finds someone else');
  });

  test("another organization's patients and owners never match", async () => {
    const { mine, theirs } = await db.write(async (tx) => ({
      mine: await addPatient(tx, ORG, 'Juniper', ['Oona Quarrington']),
      theirs: await addPatient(tx, OTHER, 'Juniper', ['Oona Quarrington']),
    }));
    assert.deepEqual(await found('junip'), [mine]);
    assert.deepEqual(await found('quarr'), [mine]);
    assert.deepEqual(await found('oona quar'), [mine]);
    assert.deepEqual(await found('junip', OTHER), [theirs]);
    assert.deepEqual(await found('quarr', OTHER), [theirs]);
  });
});
