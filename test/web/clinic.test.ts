// A clinic's day in real Chromium against a real server (SQLite, a folder of blobs, the preview
// jobs running): a lab result for an unknown microchip waits in the results inbox until a
// clinician files it in the right chart → a DICOM study and a PDF are uploaded, viewed with window
// and level, deleted, restored and versioned → a long timeline loads as the reader scrolls and is
// filtered → the inactivity warning and automatic sign-out (the page's clock fast-forwarded) →
// the chart on a tablet and a phone → an administrator creates an integration key, shown once.
// Throughout, no page address or request carries a patient's name, owner or microchip. axe-core
// checks every screen visited. State that is not the point of a test is made through the API.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import sharp from 'sharp';
import { systemClock } from '../../src/domain/clock.js';
import { signatureOf } from '../../src/services/result.service.js';
import { buildDicom } from '../helpers/dicom-fixtures.js';
import { tempDir } from '../helpers/engines.js';
import { PASSWORD, startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { browserUnavailable, expectAccessible, launchBrowser, signInAs } from './browser.js';
import { eventually, freePort, multipartBody, tinyPdf } from './web-helpers.js';

interface PatientSeed {
  name: string;
  species: string;
  breed: string;
  owner: string;
  microchip: string;
}

/** The patients of this file; their names, owners and microchips must never reach a URL. */
const PEPPERPOT: PatientSeed = {
  name: 'Pepperpot',
  species: 'canine',
  breed: 'Whippet',
  owner: 'Rosalind Quayle',
  microchip: '985141000123456',
};
const JUNIPER: PatientSeed = {
  name: 'Juniperberry',
  species: 'feline',
  breed: 'Maine Coon',
  owner: 'Bartholomew Ashdown',
  microchip: '985141000654321',
};
const MARLOWE: PatientSeed = {
  name: 'Marlowebell',
  species: 'equine',
  breed: 'Connemara',
  owner: 'Philippa Thistlewood',
  microchip: '985141000777888',
};
/** The microchip an analyser reads off an animal Caretrail does not know. */
const UNKNOWN_CHIP = '900215000999111';
const NOTES = 45;

const skip = browserUnavailable() ?? false;

describe('a clinic day in Chromium', { skip }, () => {
  let h: Harness;
  let browser: Browser;
  // What `before` started, closed in reverse order by `after` (also when `before` failed).
  const cleanups: (() => Promise<void>)[] = [];
  const contexts: BrowserContext[] = [];
  let base = '';
  let dataDir = '';
  let admin: SignedIn;
  let clinician: SignedIn;
  const ids: Record<string, string> = {};
  /** The clinician's browser, signed in once and used by the tests that follow. */
  let vet: Page;
  /** Every address a page showed, and every request a page made, across all tests. */
  const pageUrls: string[] = [];
  const requestUrls: string[] = [];

  async function newPage(viewport = { width: 1280, height: 860 }): Promise<Page> {
    const context = await browser.newContext({ baseURL: base, viewport });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) pageUrls.push(frame.url());
    });
    page.on('request', (request) => {
      requestUrls.push(request.url());
    });
    return page;
  }

  const signIn = (page: Page, who: { email: string }) => signInAs(page, who.email, PASSWORD);

  /** Opens a chart the way people do: the search box, then the first match. */
  async function findPatient(page: Page, text: string, name: string) {
    const search = page.getByRole('textbox', { name: 'Find a patient' });
    await search.fill(text);
    await page.getByRole('option', { name: new RegExp(name) }).waitFor();
    await search.press('Enter');
    await page.getByRole('heading', { name, level: 1 }).waitFor();
  }

  /** Whether an element carries the app's "abnormal" highlight. */
  const marked = async (locator: Locator) =>
    ((await locator.getAttribute('class')) ?? '').split(/\s+/).includes('abnormal');

  const FILTERS = ['All', 'Notes', 'Results', 'Documents', 'Images'];
  /** A segment of the timeline filter as people see and click it: the label of a hidden radio. */
  async function segment(page: Page, label: string): Promise<Locator> {
    const id = await page.getByRole('radio', { name: label }).getAttribute('id');
    return page.locator(`label[for="${id ?? ''}"]`);
  }

  const timeline = (page: Page) => page.getByRole('region', { name: 'Timeline' });
  const cards = (page: Page) => timeline(page).getByRole('article');

  async function api(options: Parameters<Harness['request']>[0], status: number) {
    const res = await h.request(options);
    assert.equal(res.statusCode, status, `${options.method} ${options.url}: ${res.body}`);
    return res.json<Record<string, unknown>>();
  }

  async function registerPatient(seed: PatientSeed): Promise<string> {
    const patient = await api(
      {
        method: 'POST',
        url: '/api/v1/patients',
        token: clinician.token,
        body: {
          name: seed.name,
          species: seed.species,
          breed: seed.breed,
          identifiers: [{ system: 'microchip', value: seed.microchip }],
          owners: [{ name: seed.owner }],
        },
      },
      201,
    );
    return patient.id as string;
  }

  async function createKey(name: string): Promise<{ key: string; secret: string }> {
    const created = await api(
      { method: 'POST', url: '/api/v1/integrations/keys', token: admin.token, body: { name } },
      201,
    );
    return { key: created.key as string, secret: created.secret as string };
  }

  const bloodCount = (identifier: string, extra: Record<string, string> = {}) => ({
    source: 'In-house haematology',
    kind: 'lab',
    resultId: `cbc-${identifier}`,
    patient: { identifier: { system: 'microchip', value: identifier }, ...extra },
    observations: [
      {
        code: 'WBC',
        display: 'White blood cells',
        value: 24.3,
        unit: '10^9/L',
        referenceRange: '5.5-16.9',
        flag: 'H',
      },
      {
        code: 'HCT',
        display: 'Haematocrit',
        value: 45,
        unit: '%',
        referenceRange: '37-55',
        flag: 'N',
      },
    ],
  });

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    dataDir = tempDir('caretrail-web-clinic-');
    cleanups.push(async () => {
      fs.rmSync(dataDir, { recursive: true, force: true });
    });
    h = await startHarness(
      `sqlite:${path.join(dataDir, 'caretrail.db')}`,
      { CARETRAIL_DATA_DIR: dataDir, CARETRAIL_PUBLIC_URL: base },
      { clock: systemClock },
    );
    cleanups.push(() => h.close());
    h.runtime.startJobs();
    await h.runtime.app.listen({ port, host: '127.0.0.1' });
    browser = await launchBrowser();
    cleanups.push(() => browser.close());

    admin = await h.newOrganization();
    clinician = await h.newUser(admin, 'clinician');
    for (const seed of [PEPPERPOT, JUNIPER, MARLOWE]) ids[seed.name] = await registerPatient(seed);
  });

  after(async () => {
    for (const context of contexts) await context.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('results inbox: a lab result for an unknown microchip is filed in the suggested chart', async () => {
    const { key } = await createKey('Haematology analyser');
    const ingested = await api(
      {
        method: 'POST',
        url: '/api/v1/integrations/results',
        token: key,
        body: bloodCount(UNKNOWN_CHIP, {
          name: PEPPERPOT.name,
          species: 'canine',
          ownerSurname: 'Quayle',
        }),
      },
      201,
    );
    assert.equal(ingested.status, 'unmatched');

    vet = await newPage();
    await signIn(vet, clinician);
    await vet.getByRole('link', { name: 'Results inbox' }).click();
    await vet.getByRole('heading', { name: 'Results inbox', level: 1 }).waitFor();
    const result = vet.getByRole('region', { name: 'Lab result from In-house haematology' });
    await result.getByText('Has abnormal values').waitFor();
    await result.getByRole('cell', { name: UNKNOWN_CHIP }).waitFor();
    // The high white cell count is marked (colour and a flag read out), the haematocrit is not.
    const values = result.getByRole('table', { name: /^Observations/ });
    const wbc = values.getByRole('row', { name: /White blood cells/ });
    assert.ok(
      await marked(wbc.getByRole('cell', { name: '24.3 10^9/L' })),
      'the high value is marked',
    );
    await wbc.getByRole('cell', { name: 'H (high)' }).waitFor();
    const hct = values.getByRole('row', { name: /Haematocrit/ });
    assert.equal(await hct.locator('td.abnormal').count(), 0, 'a normal value is not marked');

    // Pepperpot is suggested: same name, same owner surname.
    await result.getByText('Same name · Same owner surname').waitFor();
    await expectAccessible(vet, 'results inbox');
    await result.getByRole('button', { name: `Assign to ${PEPPERPOT.name}` }).click();
    const confirm = vet.getByRole('dialog', {
      name: `Put this result in ${PEPPERPOT.name}'s chart?`,
    });
    await confirm.getByText(/Check that this is the right animal/).waitFor();
    await expectAccessible(vet, 'assign confirmation');
    await confirm.getByRole('button', { name: `Assign to ${PEPPERPOT.name}` }).click();
    await vet.getByText('Result filed').waitFor();
    await vet.getByText(/No results are waiting/).waitFor();
    assert.equal(await result.count(), 0, 'the queue is empty');

    // In the chart: the result note, its abnormal value marked, and a warning in the header.
    await findPatient(vet, 'Pepper', PEPPERPOT.name);
    const note = cards(vet).filter({ hasText: 'In-house haematology' });
    await note.getByText('Abnormal', { exact: true }).waitFor();
    await vet.getByText('1 result with abnormal values in the loaded timeline.').waitFor();
    const chartValues = note.getByRole('table', { name: 'Result values' });
    const chartWbc = chartValues.getByRole('row', { name: /White blood cells/ });
    assert.ok(await marked(chartWbc.getByRole('cell', { name: '24.3 10^9/L' })));
    await chartWbc.getByRole('cell', { name: 'H (high)' }).waitFor();
    const normal = chartValues.getByRole('row', { name: /Haematocrit/ });
    assert.equal(await normal.locator('td.abnormal').count(), 0, 'a normal value is not marked');
    assert.equal(await normal.getByText(/high|low|abnormal/i).count(), 0);
    await expectAccessible(vet, 'chart with a result');
  });

  test('files: a DICOM study and a PDF are uploaded, viewed, deleted, restored and versioned', async () => {
    const page = vet;
    const dicomFile = path.join(dataDir, 'thorax-vd.dcm');
    fs.writeFileSync(
      dicomFile,
      buildDicom({
        modality: 'DX',
        bodyPart: 'THORAX',
        rows: 64,
        columns: 64,
        pixels: Array.from(
          { length: 64 * 64 },
          (_, i) => ((i % 64) * 4 + Math.floor(i / 64)) % 256,
        ),
      }),
    );
    const pdfFile = path.join(dataDir, 'lab-report.pdf');
    fs.writeFileSync(pdfFile, tinyPdf('Biochemistry panel, version 1'));
    const pdfFile2 = path.join(dataDir, 'lab-report-corrected.pdf');
    fs.writeFileSync(pdfFile2, tinyPdf('Biochemistry panel, corrected'));

    await page.goto(`/patients/${ids[JUNIPER.name] ?? ''}`);
    await page.getByRole('heading', { name: JUNIPER.name, level: 1 }).waitFor();
    await page.getByRole('tab', { name: 'Upload files' }).click();
    await page.locator('input[type=file]').setInputFiles([dicomFile, pdfFile]);
    const uploads = page.getByRole('list', { name: 'Uploads' });
    await eventually(
      'both uploads to finish',
      () => uploads.getByText('Uploaded', { exact: true }).count(),
      (n) => n === 2,
    );
    await expectAccessible(page, 'upload panel');

    await page.getByRole('tab', { name: 'Timeline' }).click();
    await page
      .getByRole('img', { name: 'Thumbnail of thorax-vd.dcm' })
      .waitFor({ timeout: 30_000 });
    // A function, not a string: the page's CSP forbids eval, which a polled string predicate uses.
    await page.waitForFunction(
      (alt) => {
        // (The page's own types: these tests compile without the DOM library.)
        interface Img {
          alt: string;
          complete: boolean;
          naturalWidth: number;
        }
        const doc = (globalThis as unknown as { document: { images: ArrayLike<Img> } }).document;
        return Array.from(doc.images).some(
          (img) => img.alt === alt && img.complete && img.naturalWidth > 0,
        );
      },
      'Thumbnail of thorax-vd.dcm',
      { timeout: 15_000 },
    );
    const pdfCard = page.getByRole('article', { name: 'File lab-report.pdf' });
    await pdfCard.waitFor();

    // The viewer: window and level on the preview with the keyboard, zoom with "+".
    await page.getByRole('button', { name: 'View thorax-vd.dcm' }).click();
    const viewer = page.getByRole('dialog', { name: 'thorax-vd.dcm' });
    await viewer.getByRole('img', { name: 'thorax-vd.dcm' }).waitFor();
    const level = viewer.getByRole('slider', { name: 'Level' });
    await viewer.getByRole('slider', { name: 'Window' }).waitFor();
    await viewer.getByText('Level 128').waitFor();
    await level.focus();
    for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowRight');
    await viewer.getByText('Level 133').waitFor();
    assert.equal(await level.getAttribute('aria-valuenow'), '133');
    await viewer.getByText('Zoom 100%').waitFor();
    await viewer.getByRole('group', { name: /Use \+ and - to zoom/ }).focus();
    await page.keyboard.press('+');
    await viewer.getByText('Zoom 125%').waitFor();
    await expectAccessible(page, 'DICOM viewer');
    await page.keyboard.press('Escape');
    await viewer.waitFor({ state: 'hidden' });

    // Delete the PDF: it leaves the timeline; the deleted files bring it back for a restore.
    await pdfCard.getByRole('button', { name: 'Actions for lab-report.pdf' }).click();
    await page.getByRole('menuitem', { name: 'Delete' }).click();
    const confirm = page.getByRole('dialog', { name: 'Delete this file?' });
    await confirm.getByRole('button', { name: 'Delete' }).click();
    await pdfCard.waitFor({ state: 'detached' });
    await page.getByRole('article', { name: 'File thorax-vd.dcm' }).waitFor();

    await page.getByRole('switch', { name: 'Show deleted files' }).check();
    await pdfCard.getByText('Deleted', { exact: true }).waitFor();
    await expectAccessible(page, 'timeline with deleted files');
    await pdfCard.getByRole('button', { name: 'Actions for lab-report.pdf' }).click();
    await page.getByRole('menuitem', { name: 'Restore' }).click();
    await page.getByText('lab-report.pdf restored.').waitFor();
    await pdfCard.getByText('Deleted', { exact: true }).waitFor({ state: 'detached' });
    await page.getByRole('switch', { name: 'Show deleted files' }).uncheck();
    await pdfCard.waitFor();

    // A corrected report as version 2; version 1 stays listed.
    await pdfCard.getByRole('button', { name: 'Actions for lab-report.pdf' }).click();
    await page.getByRole('menuitem', { name: 'Versions (1)' }).click();
    // The dialog (and the card) take the name of the current version's file.
    const versions = page.getByRole('dialog', { name: /^Versions of lab-report/ });
    await versions.getByRole('link', { name: 'Download v1' }).waitFor();
    const [chooser] = await Promise.all([
      page.waitForEvent('filechooser'),
      versions.getByRole('button', { name: 'Upload a new version' }).click(),
    ]);
    await chooser.setFiles(pdfFile2);
    await versions.getByRole('link', { name: 'Download v2' }).waitFor();
    await page.getByText('Version 2 of lab-report.pdf saved.').waitFor();
    await versions.getByRole('cell', { name: /lab-report-corrected\.pdf/ }).waitFor();
    await versions.getByRole('link', { name: 'Download v1' }).waitFor();
    await expectAccessible(page, 'versions dialog');
    await page.keyboard.press('Escape');
    await versions.waitFor({ state: 'hidden' });
    await page
      .getByRole('article', { name: 'File lab-report-corrected.pdf' })
      .getByText('v2', { exact: true })
      .waitFor();
  });

  test('timeline: 45 notes load as the reader scrolls, and the filter shows one kind', async () => {
    const patientId = ids[MARLOWE.name] ?? '';
    // The oldest entries first: a photo, then a result matched by microchip, then the notes.
    const photo = await sharp({
      create: { width: 48, height: 32, channels: 3, background: { r: 180, g: 120, b: 60 } },
    })
      .png()
      .toBuffer();
    const upload = multipartBody(
      { kind: 'photo', visibility: 'internal' },
      { filename: 'hoof-left-fore.png', contentType: 'image/png', data: photo },
    );
    const res = await h.runtime.app.inject({
      method: 'POST',
      url: `/api/v1/patients/${patientId}/documents`,
      headers: { authorization: `Bearer ${clinician.token}`, 'content-type': upload.contentType },
      payload: upload.body,
    });
    assert.equal(res.statusCode, 201, res.body);
    const { key } = await createKey('Chemistry analyser');
    const matched = await api(
      {
        method: 'POST',
        url: '/api/v1/integrations/results',
        token: key,
        body: bloodCount(MARLOWE.microchip),
      },
      201,
    );
    assert.equal(matched.status, 'matched');
    for (let n = 1; n <= NOTES; n++)
      await api(
        {
          method: 'POST',
          url: `/api/v1/patients/${patientId}/notes`,
          token: clinician.token,
          body: { kind: 'clinical', title: `Progress note ${n}`, body: `Day ${n}: eating well.` },
        },
        201,
      );

    const page = vet;
    // Found by the owner's surname: the search text goes to the API only.
    await findPatient(page, 'Thistlewood', MARLOWE.name);
    assert.ok(!page.url().includes('Thistlewood'));
    await timeline(page).getByText('Progress note 45').waitFor();
    assert.equal(await cards(page).count(), 20, 'the first page holds 20 entries');
    assert.equal(await timeline(page).getByText('Progress note 1', { exact: true }).count(), 0);

    // Scrolling to the last card loads the next page, until everything is there.
    const total = NOTES + 2;
    await eventually(
      'the whole timeline to load while scrolling',
      async () => {
        await cards(page).last().scrollIntoViewIfNeeded();
        await page.mouse.wheel(0, 2000);
        return cards(page).count();
      },
      (n) => n === total,
      30_000,
    );
    await timeline(page).getByText('Progress note 1', { exact: true }).waitFor();
    await page.getByRole('article', { name: 'File hoof-left-fore.png' }).waitFor();
    await page.getByRole('article', { name: 'Result note' }).waitFor();
    await expectAccessible(page, 'long timeline');

    const show = async (label: string, expected: number) => {
      await (await segment(page, label)).click();
      assert.ok(await page.getByRole('radio', { name: label }).isChecked());
      await eventually(
        `${label}: ${expected} entries`,
        () => cards(page).count(),
        (n) => n === expected,
      );
    };
    await show('Results', 1);
    await cards(page).getByText('In-house haematology · lab').waitFor();
    await show('Images', 1);
    await cards(page)
      .getByRole('img', { name: 'Thumbnail of hoof-left-fore.png' })
      .waitFor({ timeout: 30_000 });
    await show('Notes', NOTES);
    assert.equal(await cards(page).filter({ hasText: 'In-house haematology' }).count(), 0);
    await show('All', total);
  });

  test('inactivity: a warning two minutes before the idle limit, then automatic sign-out', async () => {
    const idleMs = h.config.sessionIdleMinutes * 60_000;
    const page = await newPage();
    // The page's clock only: the server's is real, so its session stays valid meanwhile.
    await page.clock.install();
    await signIn(page, clinician);
    await page.getByRole('heading', { name: 'Patients', exact: true }).waitFor();
    const warning = page.getByRole('dialog', { name: 'Your session is about to end' });
    /** Three minutes before the limit the page has looked at its clock and stays quiet. */
    const quietThreeMinutesBefore = async () => {
      await page.clock.fastForward(idleMs - 3 * 60_000);
      // The page's clock keeps ticking in real time: its once-a-second check has run by now.
      await page.waitForTimeout(1500);
      assert.equal(await warning.count(), 0, 'no warning three minutes before the limit');
    };
    await quietThreeMinutesBefore();

    // A minute later, two minutes before the limit, the warning counts down.
    await page.clock.fastForward(61_000);
    const countdown = warning.getByText(/you will be signed out in \d+ seconds without activity/);
    await countdown.waitFor();
    const seconds = Number(/in (\d+) seconds/.exec(await countdown.innerText())?.[1]);
    assert.ok(seconds > 90 && seconds <= 120, `signed out in ${seconds} s`);
    await expectAccessible(page, 'inactivity warning');
    await warning.getByRole('button', { name: 'Stay signed in' }).click();
    await warning.waitFor({ state: 'hidden' });
    await page.getByRole('button', { name: /Account menu/ }).waitFor();
    // Staying signed in started the count again.
    await quietThreeMinutesBefore();
    await page.getByRole('heading', { name: 'Patients', exact: true }).waitFor();

    // Nobody comes back: the warning, then the page signs out by itself.
    await page.clock.fastForward(61_000);
    await warning.waitFor();
    await page.clock.fastForward(2 * 60_000);
    await page
      .getByRole('status')
      .getByText(/You were signed out after a period without activity/)
      .waitFor();
    await page.getByRole('heading', { name: 'Sign in to Caretrail' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Patients', exact: true }).count(), 0);
    await expectAccessible(page, 'signed out after inactivity');
  });

  test('tablet and phone: the chart fits the width, the navigation opens from the burger', async () => {
    const page = vet;
    const noSideScroll = async (what: string) => {
      const [scrollWidth, innerWidth] = await page.evaluate<[number, number]>(
        '[document.documentElement.scrollWidth, window.innerWidth]',
      );
      assert.ok(scrollWidth <= innerWidth, `${what}: ${scrollWidth}px wide in ${innerWidth}px`);
    };
    for (const [label, width, height] of [
      ['tablet', 820, 1180],
      ['phone', 390, 844],
    ] as const) {
      await page.setViewportSize({ width, height });
      for (const seed of [PEPPERPOT, JUNIPER]) {
        await page.goto(`/patients/${ids[seed.name] ?? ''}`);
        await page.getByRole('heading', { name: seed.name, level: 1 }).waitFor();
        await cards(page).first().waitFor();
        await noSideScroll(`${seed.name}'s chart on a ${label}`);
      }
      // Every choice of the timeline filter is in full view (the control clips what overflows).
      const filter = await page
        .getByRole('radiogroup', { name: 'Show in the timeline' })
        .boundingBox();
      assert.ok(filter && filter.x + filter.width <= width, `${label}: the filter fits`);
      for (const choice of FILTERS) {
        const box = await (await segment(page, choice)).boundingBox();
        assert.ok(
          box && box.x >= filter.x && box.x + box.width <= filter.x + filter.width + 0.5,
          `${label}: the "${choice}" filter is in full view`,
        );
      }
      await expectAccessible(page, `chart on a ${label}`);

      const nav = page.getByRole('navigation', { name: 'Main' });
      const inbox = nav.getByRole('link', { name: 'Results inbox' });
      const onScreen = async () => {
        const box = await inbox.boundingBox();
        return box !== null && box.x >= 0 && box.x + box.width <= width;
      };
      assert.equal(await onScreen(), false, `${label}: the navigation starts folded away`);
      await page.getByRole('button', { name: 'Open navigation' }).click();
      await eventually(`${label}: the navigation to slide in`, onScreen, (shown) => shown);
      await expectAccessible(page, `navigation open on a ${label}`);
      await inbox.click();
      await page.getByRole('heading', { name: 'Results inbox', level: 1 }).waitFor();
      await eventually(`${label}: the navigation to fold away`, onScreen, (shown) => !shown);
      await noSideScroll(`results inbox on a ${label}`);
    }
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  test('integration keys: a new key and its secret are shown once, then never again', async () => {
    const page = await newPage();
    await signIn(page, admin);
    await page.getByRole('link', { name: 'Integration keys' }).click();
    await page.getByRole('heading', { name: 'Integration keys', level: 1 }).waitFor();
    await page.getByRole('cell', { name: 'Haematology analyser' }).waitFor();
    await page.getByRole('button', { name: 'Create key' }).click();
    const form = page.getByRole('dialog', { name: 'Create an integration key' });
    await form.getByRole('textbox', { name: /^Name/ }).fill('Digital X-ray panel');
    await form.getByRole('button', { name: 'Create key' }).click();

    const shown = page.getByRole('dialog', { name: 'Key created: Digital X-ray panel' });
    await shown.getByText('Copy them now: they cannot be shown again').waitFor();
    const [key, secret] = (await shown.locator('pre').allInnerTexts()).map((t) => t.trim());
    assert.ok(key && secret && key !== secret, 'the key and the secret are both shown');
    await expectAccessible(page, 'key created dialog');
    // What was shown works: a result sent with the key and signed with the secret is taken.
    const body = JSON.stringify(bloodCount(PEPPERPOT.microchip));
    const sent = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/results',
      token: key,
      body,
      headers: {
        'content-type': 'application/json',
        'x-caretrail-signature': signatureOf(secret, body),
      },
    });
    assert.equal(sent.statusCode, 201, sent.body);

    await shown.getByRole('button', { name: 'I have copied them' }).click();
    await shown.waitFor({ state: 'hidden' });
    await page.getByRole('cell', { name: 'Digital X-ray panel' }).waitFor();
    const html = await page.content();
    assert.ok(!html.includes(secret), 'the secret is nowhere on the page');
    assert.ok(!html.includes(key), 'the key is nowhere on the page');
    await expectAccessible(page, 'integration keys');
  });

  test('no patient name, owner or microchip in any page address or request', () => {
    const forbidden = [PEPPERPOT, JUNIPER, MARLOWE].flatMap((seed) => [
      seed.name,
      seed.owner,
      ...seed.owner.split(' '),
      seed.microchip,
    ]);
    const leaks = (url: string, values: string[]) => {
      const decoded = decodeURIComponent(url.replace(/\+/g, ' ')).toLowerCase();
      return values.filter((value) => decoded.includes(value.toLowerCase()));
    };
    // Page addresses hold ids only: not even the microchip a device sent for an unknown animal.
    assert.ok(pageUrls.length > 10, `page addresses were seen (${pageUrls.length})`);
    for (const url of pageUrls)
      assert.deepEqual(leaks(url, [...forbidden, UNKNOWN_CHIP]), [], `page address ${url}`);
    // The search box's own request to the API is the one place search text may go.
    const searches = requestUrls.filter((url) => url.startsWith(`${base}/api/v1/patients?q=`));
    assert.ok(searches.length > 0, 'the searches were seen');
    const others = requestUrls.filter((url) => !url.startsWith(`${base}/api/v1/patients?q=`));
    assert.ok(others.length > 50, `requests were seen (${others.length})`);
    for (const url of others) assert.deepEqual(leaks(url, forbidden), [], `request ${url}`);
  });
});
