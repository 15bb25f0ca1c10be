// The web app as people use it, in real Chromium against a real server (SQLite, a folder of
// blobs, a real SMTP server for invitations): first run → sign in with two-step sign-in →
// register a patient with an owner → write and finalize a SOAP note → upload an X-ray and see
// its thumbnail → share with a trainer who sees only what is shared → the owner sees the
// released note and who accessed the record → an auditor downloads the CSV. axe-core checks the
// main screens; `npm run screenshots` saves them for the README.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import sharp from 'sharp';
import { systemClock } from '../../src/domain/clock.js';
import { tempDir } from '../helpers/engines.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import { startMailServer, type MailServer } from '../helpers/mail.js';
import {
  browserUnavailable,
  expectAccessible,
  launchBrowser,
  screenshot,
  signInAs,
} from './browser.js';
import { freePort } from './web-helpers.js';

const PASSWORD = 'a long enough password 1';
const ADMIN = { name: 'Ada Admin', email: 'ada@riverside.test' };
const VET = { name: 'Dr Vera Vet', email: 'vera@riverside.test' };
const AUDITOR = { name: 'Otto Auditor', email: 'otto@riverside.test' };
const TRAINER = { name: 'Tom Trainer', email: 'tom@trainers.test' };
const OWNER = { name: 'Olive Owner', email: 'olive@owners.test' };

const skip = browserUnavailable() ?? false;

describe('web app flows in Chromium', { skip }, () => {
  let h: Harness;
  let mail: MailServer;
  let browser: Browser;
  // What `before` started, closed in reverse order by `after` (also when `before` failed).
  const cleanups: (() => Promise<void>)[] = [];
  let base: string;
  let xray: string;
  const contexts: BrowserContext[] = [];
  let patientId = '';

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({
      baseURL: base,
      viewport: { width: 1280, height: 860 },
      acceptDownloads: true,
    });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    return page;
  }

  const signIn = (page: Page, who: { email: string }) => signInAs(page, who.email, PASSWORD);

  async function signOut(page: Page) {
    await page.getByRole('button', { name: /Account menu/ }).click();
    await page.getByRole('menuitem', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Caretrail' }).waitFor();
  }

  /** The link of the newest mail to `email` (invitations travel only by mail). */
  async function mailedLink(email: string): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const message = [...mail.messages].reverse().find((m) => m.to.includes(email));
      // The body is quoted-printable: undo soft line breaks and =XX escapes.
      const text = message?.body
        .replace(/=\r?\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
      const link = text?.match(/https?:\/\/\S+\/invitations#token=[\w-]+/);
      if (link) return link[0];
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`no invitation mail reached ${email}`);
  }

  /** Picks `option` in the select labelled `label` (inside `scope`, e.g. a dialog). */
  async function pickOption(
    page: Page,
    label: string,
    option: string,
    scope: Page | Locator = page,
  ) {
    await scope.getByRole('combobox', { name: new RegExp(`^${label}`) }).click();
    await page.getByRole('option', { name: option, exact: true }).click();
  }

  before(async () => {
    mail = await startMailServer();
    cleanups.push(() => mail.close());
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dataDir = tempDir('caretrail-web-');
    h = await startHarness(
      `sqlite:${path.join(dataDir, 'caretrail.db')}`,
      {
        CARETRAIL_DATA_DIR: dataDir,
        CARETRAIL_PUBLIC_URL: base,
        CARETRAIL_SMTP_URL: mail.url,
      },
      { clock: systemClock },
    );
    cleanups.push(() => h.close());
    h.runtime.startJobs();
    await h.runtime.app.listen({ port, host: '127.0.0.1' });
    browser = await launchBrowser();
    cleanups.push(() => browser.close());
    xray = path.join(dataDir, 'thorax-lateral.png');
    // A grey gradient standing in for a radiograph.
    const width = 640;
    const height = 480;
    const pixels = Buffer.alloc(width * height);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) pixels[y * width + x] = (x * 255) / width;
    await sharp(pixels, { raw: { width, height, channels: 1 } })
      .png()
      .toFile(xray);
  });

  after(async () => {
    for (const context of contexts) await context.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('first run: the setup link creates the organization and its administrator', async () => {
    const link = await h.runtime.services.setup.issueSetupLinkIfNeeded();
    assert.ok(link);
    const page = await newPage();
    await page.goto(new URL(link).pathname + new URL(link).hash);
    await page.getByRole('heading', { name: 'Set up Caretrail' }).waitFor();
    await expectAccessible(page, 'setup');
    await page.getByLabel('Organization').fill('Riverside Veterinary Clinic');
    await page.getByLabel('Your name').fill(ADMIN.name);
    await page.getByLabel('Email').fill(ADMIN.email);
    await page.getByRole('textbox', { name: 'Password' }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('status').getByText(ADMIN.email).waitFor();
    assert.equal(new URL(page.url()).hash, '', 'the spent token leaves the address bar');

    await page.getByRole('link', { name: 'Go to sign-in' }).click();
    await expectAccessible(page, 'sign-in');
    await screenshot(page, '01-sign-in');
    await signIn(page, ADMIN);
    await page.getByRole('heading', { name: 'Patients', exact: true }).waitFor();
  });

  test('the administrator adds a clinician and an auditor', async () => {
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('heading', { name: 'Users' }).waitFor();
    for (const [person, role] of [
      [VET, 'Clinician'],
      [AUDITOR, 'Auditor'],
    ] as const) {
      await page.getByRole('button', { name: 'Add user' }).first().click();
      const dialog = page.getByRole('dialog');
      await dialog.getByRole('textbox', { name: /^Email/ }).fill(person.email);
      await dialog.getByRole('textbox', { name: /^Name/ }).fill(person.name);
      await pickOption(page, 'Role', role, dialog);
      await dialog.getByRole('textbox', { name: 'First password' }).fill(PASSWORD);
      await dialog.getByRole('button', { name: 'Add user' }).click();
      await page.getByRole('cell', { name: person.email, exact: true }).waitFor();
    }
    // The queue of unmatched results is clinical work, refused to admins: not offered either.
    assert.equal(await page.getByRole('link', { name: 'Results inbox' }).count(), 0);
    await expectAccessible(page, 'users');
    await screenshot(page, '09-users');
  });

  let totpSecret = '';
  // A code is good once: signing in right after enrolling uses the next 30-second step, which
  // the server accepts as clock drift.
  let enrolledAt = 0;
  const code = (timestamp = Date.now()) =>
    new TOTP({ secret: Secret.fromBase32(totpSecret) }).generate({ timestamp });
  /** The clinician's browser, signed in once with two-step sign-in and used by later steps. */
  let vet: Page;
  /** The trainer's browser, still signed in when the owner withdraws consent. */
  let trainerPage: Page;

  test('the clinician turns on two-step sign-in and signs in with a code', async () => {
    const page = await newPage();
    vet = page;
    await signIn(page, VET);
    await page.getByRole('button', { name: /Account menu/ }).click();
    await page.getByRole('menuitem', { name: /Account/ }).click();
    await page.getByRole('button', { name: 'Turn on two-step sign-in' }).click();
    // The setup key, shown in groups of four base32 characters.
    const key = page.getByText(/^([A-Z2-7]{4} )+[A-Z2-7]{1,4}$/);
    await key.waitFor();
    totpSecret = (await key.innerText()).replace(/\s+/g, '');
    enrolledAt = Date.now();
    await page.getByLabel('6-digit code').fill(code(enrolledAt));
    // Not without the password: a session left open is not enough to turn it on.
    const turnOn = page.getByRole('button', { name: 'Check code and turn on' });
    assert.equal(await turnOn.isDisabled(), true);
    await page.getByLabel('Your password').fill(PASSWORD);
    await turnOn.click();
    await page.getByText('Two-step sign-in is on').first().waitFor();
    await signOut(page);

    // Without the code the password alone is not enough.
    await page.getByLabel('Email').fill(VET.email);
    await page.getByRole('textbox', { name: 'Password' }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByLabel('Code from your authenticator app').waitFor();
    await page
      .getByLabel('Code from your authenticator app')
      .fill(code((Math.floor(enrolledAt / 30_000) + 1) * 30_000));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Patients', exact: true }).waitFor();
  });

  test('the clinician registers a patient with an owner and a microchip', async () => {
    const page = vet;
    await page.getByRole('link', { name: 'Register patient' }).first().click();
    await page.getByRole('heading', { name: 'Register a patient' }).waitFor();
    await expectAccessible(page, 'register patient');
    await page.getByRole('textbox', { name: /^Name/ }).fill('Biscuit');
    await page.getByLabel('Breed').fill('Border Collie');
    await page.getByLabel('Birth date').fill('2021-04-12');
    await page.getByRole('combobox', { name: 'Alerts' }).fill('Bites — muzzle for exams');
    await page.getByRole('combobox', { name: 'Alerts' }).press('Enter');
    await page.getByLabel('Microchip number').fill('985112003456789');
    await page.getByLabel('Owner name').fill(OWNER.name);
    await page.getByLabel('Owner email').fill(OWNER.email);
    await page.getByLabel('Owner phone').fill('+44 20 7946 0000');
    await screenshot(page, '03-register-patient');
    await page.getByRole('button', { name: 'Register patient' }).last().click();
    await page.getByRole('heading', { name: 'Biscuit', level: 1 }).waitFor();
    patientId = new URL(page.url()).pathname.split('/').at(-1) ?? '';
    assert.match(page.url(), /\/patients\/[0-9a-f-]{36}$/, 'the address holds an id, nothing else');
    await page.getByText('Microchip: 985112003456789').waitFor();
    await page
      .getByRole('group', { name: 'Alerts' })
      .getByText('Bites — muzzle for exams')
      .waitFor();

    // Details are corrected from the chart; the owner on record stays.
    await page.getByRole('link', { name: 'Edit details' }).click();
    await page.getByRole('heading', { name: 'Edit Biscuit' }).waitFor();
    await expectAccessible(page, 'edit patient');
    await page.getByLabel('Breed').fill('Border Collie cross');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Dog · Border Collie cross').waitFor();
    await page.getByText('Owner: Olive Owner').waitFor();

    // Found again from the search box by the owner's name, with the keyboard.
    await page.goto('/');
    const search = page.getByRole('textbox', { name: 'Find a patient' }).first();
    await search.fill('Olive');
    await page.getByRole('option', { name: /Biscuit/ }).waitFor();
    await search.press('ArrowDown');
    await search.press('Enter');
    await page.getByRole('heading', { name: 'Biscuit', level: 1 }).waitFor();
    assert.ok(!page.url().includes('Olive'), 'the search text stays out of the address');
    await page.goto('/');
    await page.getByRole('link', { name: /Biscuit/ }).waitFor();
    await expectAccessible(page, 'home with recent patients');
    await screenshot(page, '02-find-patient');
  });

  test('the clinician writes a SOAP note, it autosaves, and finalizes it', async () => {
    const page = vet;
    await page.goto(`/patients/${patientId}`);
    await page.getByRole('link', { name: 'New SOAP note' }).click();
    await page.getByLabel('Title').fill('Annual check');
    await page.getByLabel('Subjective').fill('Owner reports mild cough for three days.');
    await page.getByLabel('Objective').fill('T 38.6 °C, HR 96. Harsh lung sounds, left side.');
    await page.getByLabel('Assessment').fill('Suspected kennel cough.');
    await page.getByLabel('Plan').fill('Thoracic radiograph. Recheck in one week.');
    await page.getByText('The owner may see this note once released').click();
    await page.getByRole('checkbox', { name: 'Trainers' }).check();
    await page.getByText(/Draft saved/).waitFor();
    await expectAccessible(page, 'note editor');
    await screenshot(page, '05-soap-note');
    // The draft is on the server: a reload brings the text back.
    await page.reload();
    await page.getByLabel('Plan').waitFor();
    assert.equal(
      await page.getByLabel('Plan').inputValue(),
      'Thoracic radiograph. Recheck in one week.',
    );

    await page.getByRole('button', { name: 'Finalize…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Finalize' }).click();
    await page.getByRole('button', { name: 'Release to owner' }).click();
    await page.getByText('Released to owner').waitFor();
    await page.getByLabel('Add an addendum').fill('Radiograph taken, see images.');
    await page.getByRole('button', { name: 'Add addendum' }).click();
    await page.getByText('Radiograph taken, see images.').waitFor();
    // An addendum is released to the owner on its own, like the note.
    await page.getByRole('button', { name: 'Release addendum to owner' }).click();
    await page
      .getByRole('button', { name: 'Release addendum to owner' })
      .waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'History' }).click();
    await page.getByText('Version 1: Created').waitFor();
    await page.keyboard.press('Escape');

    // An internal note the trainer and the owner must not see.
    await page.goto(`/patients/${patientId}/notes/new?kind=clinical`);
    await page
      .getByRole('textbox', { name: 'Note' })
      .fill('Internal: owner struggles with medication compliance.');
    await page.getByText(/Draft saved/).waitFor();
  });

  test('an X-ray uploaded by drag and drop shows its thumbnail in the chart', async () => {
    const page = vet;
    await page.goto(`/patients/${patientId}`);
    await page.getByRole('tab', { name: 'Upload files' }).click();
    await pickOption(page, 'Kind of file', 'X-ray');
    await page.locator('input[type=file]').setInputFiles(xray);
    await page.getByText('Uploaded').waitFor();
    await page.getByRole('tab', { name: 'Timeline' }).click();
    const thumbnail = page.getByRole('img', { name: 'Thumbnail of thorax-lateral.png' });
    await thumbnail.waitFor({ timeout: 30_000 });
    // The picture itself arrived and decoded (a broken image has no natural width).
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
      'Thumbnail of thorax-lateral.png',
      { timeout: 15_000 },
    );
    await page.getByText('Annual check').waitFor();
    await expectAccessible(page, 'chart');
    await screenshot(page, '04-chart');

    await page.getByRole('button', { name: 'View thorax-lateral.png' }).click();
    await page.getByRole('button', { name: 'Zoom in' }).click();
    await page.getByText('Zoom 125%').waitFor();
    await screenshot(page, '06-image-viewer');
    await page.keyboard.press('Escape');
  });

  test('sharing with a trainer asks for the owner’s consent; the trainer sees only what is shared', async () => {
    await vet.goto(`/patients/${patientId}`);
    await vet.getByRole('tab', { name: 'Sharing' }).click();
    await vet.getByRole('button', { name: 'Share…' }).click();
    const dialog = vet.getByRole('dialog');
    await dialog.getByLabel('Their email').fill(TRAINER.email);
    await dialog.getByRole('button', { name: 'Share', exact: true }).click();
    await dialog.getByText('The owner’s consent is needed').waitFor();
    await expectAccessible(vet, 'share dialog, consent step');
    await screenshot(vet, '07-share-consent');
    await dialog.getByRole('button', { name: 'Record consent and share' }).click();
    await vet.getByRole('cell', { name: TRAINER.email, exact: true }).waitFor();

    // The owner gets a share too (owners on record need no consent).
    await vet.getByRole('button', { name: 'Share…' }).click();
    await pickOption(vet, 'Share with', 'Owner', vet.getByRole('dialog'));
    await vet.getByRole('dialog').getByLabel('Their email').fill(OWNER.email);
    await vet.getByRole('dialog').getByRole('button', { name: 'Share', exact: true }).click();
    await vet.getByRole('cell', { name: OWNER.email, exact: true }).waitFor();

    const trainer = await newPage();
    trainerPage = trainer;
    await trainer.goto(
      new URL(await mailedLink(TRAINER.email)).pathname +
        new URL(await mailedLink(TRAINER.email)).hash,
    );
    await trainer.getByLabel('Your name').fill(TRAINER.name);
    await trainer.getByRole('textbox', { name: 'Choose a password' }).fill(PASSWORD);
    await trainer.getByRole('button', { name: 'Create my account' }).click();
    await trainer.getByRole('status').waitFor();
    await signIn(trainer, TRAINER);
    await trainer.getByRole('link', { name: /Biscuit/ }).click();
    await trainer.getByText('Annual check').waitFor();
    await trainer.getByText('Suspected kennel cough.').waitFor();
    // Safety alerts reach everyone who handles the animal.
    await trainer.getByText('Bites — muzzle for exams').waitFor();
    assert.equal(
      await trainer.getByText('Internal: owner struggles').count(),
      0,
      'internal note hidden',
    );
    assert.equal(await trainer.getByText('thorax-lateral.png').count(), 0, 'internal X-ray hidden');
    assert.equal(await trainer.getByRole('tab', { name: 'Sharing' }).count(), 0);
  });

  test('the owner sees the released note and who accessed the record', async () => {
    const page = await newPage();
    const link = new URL(await mailedLink(OWNER.email));
    await page.goto(link.pathname + link.hash);
    await page.getByLabel('Your name').fill(OWNER.name);
    await page.getByRole('textbox', { name: 'Choose a password' }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create my account' }).click();
    await page.getByRole('status').waitFor();
    await signIn(page, OWNER);
    await page.getByRole('heading', { name: 'My animals' }).waitFor();
    await expectAccessible(page, 'owner portal');
    await screenshot(page, '08-owner-portal');
    await page.getByRole('link', { name: /Biscuit/ }).click();
    await page.getByText('Annual check').waitFor();
    await page.getByText('Radiograph taken, see images.').waitFor();
    await page.getByText(new RegExp(`^Addendum · ${VET.name} ·`)).waitFor();
    assert.equal(await page.getByText('Internal: owner struggles').count(), 0);
    await page.getByRole('tab', { name: 'Who accessed' }).click();
    const report = page.getByRole('table', { name: 'Accesses to this record' });
    await report.getByRole('cell', { name: VET.name }).first().waitFor();
    await report.getByRole('cell', { name: TRAINER.name }).first().waitFor();
    await expectAccessible(page, 'access report');
    await screenshot(page, '10-access-report');

    // The owner adds a photo of their own.
    const photo = path.join(path.dirname(xray), 'biscuit-at-the-beach.jpg');
    await sharp({ create: { width: 400, height: 300, channels: 3, background: '#d9a066' } })
      .jpeg()
      .toFile(photo);
    await page.getByRole('tab', { name: 'Upload files' }).click();
    await page.locator('input[type=file]').setInputFiles(photo);
    await page.getByText('Uploaded').waitFor();
    await page.getByRole('tab', { name: 'Timeline' }).click();
    await page.getByRole('img', { name: 'Thumbnail of biscuit-at-the-beach.jpg' }).waitFor({
      timeout: 30_000,
    });

    // Withdrawing the consent ends the trainer's access at once.
    await page.getByRole('tab', { name: 'Consents' }).click();
    await page.getByRole('button', { name: `Withdraw consent for ${TRAINER.email}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Withdraw consent' }).click();
    await page.getByRole('cell', { name: 'revoked' }).waitFor();
    await trainerPage.goto('/');
    await trainerPage.getByText('Nothing is shared with you at the moment.').waitFor();
  });

  test('an auditor sees the chain verified and downloads the audit trail as CSV', async () => {
    const page = await newPage();
    await signIn(page, AUDITOR);
    await page.getByRole('link', { name: 'Audit trail' }).click();
    await page.getByText(/Audit trail intact/).waitFor();
    await expectAccessible(page, 'audit');
    await screenshot(page, '11-audit');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: /Download CSV/ }).click(),
    ]);
    const file = await download.path();
    const csv = fs.readFileSync(file, 'utf8');
    const lines = csv.trim().split('\n');
    assert.match(lines[0] ?? '', /action/i, 'a header row');
    assert.ok(lines.length > 20, `the trail has the session's events (${lines.length} lines)`);
    assert.ok(csv.includes(patientId), 'events name the patient by id');
  });
});
