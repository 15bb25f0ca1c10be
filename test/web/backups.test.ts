// The Backups page in real Chromium against a real server (SQLite, replication off): an
// administrator finds it in the navigation and is warned that replication is off and that no
// drill has run; once `caretrail dr drill` has left its last-drill.json in the server's data
// folder, the page shows that drill's figures against their objectives. Other roles are not
// offered the page. axe-core checks both states.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { systemClock } from '../../src/domain/clock.js';
import { LAST_DRILL_FILE, type DrillResult } from '../../src/replication/drill.js';
import { tempDir } from '../helpers/engines.js';
import { PASSWORD, startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import {
  browserUnavailable,
  expectAccessible,
  launchBrowser,
  screenshot,
  signInAs,
} from './browser.js';
import { freePort } from './web-helpers.js';

const skip = browserUnavailable() ?? false;

describe('the Backups page in Chromium', { skip }, () => {
  let h: Harness;
  let browser: Browser;
  const cleanups: (() => Promise<void>)[] = [];
  const contexts: BrowserContext[] = [];
  let base = '';
  let dataDir = '';
  let admin: SignedIn;
  let clinician: SignedIn;

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({
      baseURL: base,
      viewport: { width: 1280, height: 860 },
    });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    return page;
  }

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${String(port)}`;
    dataDir = tempDir('caretrail-web-backups-');
    cleanups.push(() => {
      fs.rmSync(dataDir, { recursive: true, force: true });
      return Promise.resolve();
    });
    h = await startHarness(
      `sqlite:${path.join(dataDir, 'caretrail.db')}`,
      { CARETRAIL_DATA_DIR: dataDir, CARETRAIL_PUBLIC_URL: base },
      { clock: systemClock },
    );
    cleanups.push(() => h.close());
    await h.runtime.app.listen({ port, host: '127.0.0.1' });
    admin = await h.newOrganization();
    clinician = await h.newUser(admin, 'clinician');
    browser = await launchBrowser();
    cleanups.push(() => browser.close());
  });

  after(async () => {
    for (const context of contexts) await context.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  let page: Page;

  test('an administrator opens Backups and is warned that replication is off', async () => {
    page = await newPage();
    await signInAs(page, admin.email, PASSWORD);
    await page
      .getByRole('navigation', { name: 'Main' })
      .getByRole('link', { name: 'Backups' })
      .click();
    await page.getByRole('heading', { name: 'Backups', level: 1 }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/admin/backups');

    const banner = page.getByRole('alert').filter({ hasText: 'Replication is off' });
    await banner.waitFor();
    await banner.getByText(/Set CARETRAIL_REPLICA_URL to a folder on another disk/).waitFor();
    await banner.getByText(/No disaster-recovery drill has been run on this server/).waitFor();
    const replication = page.getByRole('region', { name: 'Replication' });
    await replication.getByText('Off: nothing is copied off this server').waitFor();
    const drill = page.getByRole('region', { name: 'Last disaster-recovery drill' });
    await drill.getByText(/No drill has been run on this server/).waitFor();
    await expectAccessible(page, 'backups, replication off');
    await screenshot(page, 'backups-replication-off');
  });

  test('with a last-drill.json in the data folder, the drill’s figures show against their objectives', async () => {
    const startedAt = new Date(Date.now() - 2 * 86_400_000);
    const result: DrillResult = {
      engine: 'sqlite',
      replica: 'file:/srv/caretrail-replica',
      mode: 'async',
      startedAt: startedAt.toISOString(),
      loadSeconds: 8.1,
      acknowledged: { notes: 512, documents: 44 },
      missing: { notes: 3, documents: 1 },
      rpoSeconds: 0.42,
      rtoSeconds: 71.3,
      restoreSeconds: 2.6,
      restoredTo: startedAt.toISOString(),
      audit: { ok: true, message: 'intact: 1712 events checked' },
      files: { checked: 43, ok: 43, bad: 0 },
      objectives: { rpoSeconds: 1, rtoSeconds: 60 },
      passed: false,
      problems: ['RTO 71.3 s is over the objective of 60 s'],
    };
    fs.writeFileSync(path.join(dataDir, LAST_DRILL_FILE), JSON.stringify(result, null, 2));
    await page.getByRole('button', { name: 'Check again' }).click();

    const drill = page.getByRole('region', { name: 'Last disaster-recovery drill' });
    const figures = drill.getByRole('table', { name: /against their objectives/ });
    const rpo = figures.getByRole('row', { name: /Data lost \(RPO\)/ });
    await rpo
      .getByRole('cell', {
        name: '4 acknowledged writes missing (3 notes, 1 upload); 0.42 s of writes lost',
      })
      .waitFor();
    await rpo.getByRole('cell', { name: '1 s', exact: true }).waitFor();
    await rpo.getByRole('cell', { name: 'Met', exact: true }).waitFor();
    const rto = figures.getByRole('row', { name: /Time to recover \(RTO\)/ });
    await rto.getByRole('cell', { name: /^71\.3 s from the loss .*\(restore 2\.6 s\)$/ }).waitFor();
    await rto.getByRole('cell', { name: '60 s', exact: true }).waitFor();
    await rto.getByRole('cell', { name: 'Missed', exact: true }).waitFor();
    await drill.getByText('Failed', { exact: true }).waitFor();

    const how = drill.getByRole('table', { name: 'How the last drill ran' });
    await how.getByRole('row', { name: /Engine\s+SQLite/ }).waitFor();
    await how.getByRole('row', { name: /Replication mode\s+Asynchronous/ }).waitFor();
    await how
      .getByRole('row', { name: /Audit trail\s+Verified: intact: 1712 events checked/ })
      .waitFor();
    await how
      .getByRole('row', { name: /Files\s+43 of 43 restored uploads read back intact/ })
      .waitFor();
    await drill
      .getByRole('listitem')
      .filter({ hasText: 'RTO 71.3 s is over the objective' })
      .waitFor();
    // The failed drill is among the warnings too, with replication still off.
    const banner = page.getByRole('alert').filter({ hasText: 'Replication is off' });
    await banner.getByText(/The last disaster-recovery drill \(.+\) failed: RTO 71\.3 s/).waitFor();
    assert.equal(
      await banner.getByText(/No disaster-recovery drill has been run/).count(),
      0,
      'the warning about no drill is gone',
    );
    await expectAccessible(page, 'backups, a failed drill');
    await screenshot(page, 'backups-failed-drill');
  });

  test('a clinician is not offered the page, and the server refuses it', async () => {
    const vet = await newPage();
    await signInAs(vet, clinician.email, PASSWORD);
    await vet.getByRole('heading', { name: 'Patients', exact: true }).waitFor();
    const nav = vet.getByRole('navigation', { name: 'Main' });
    assert.equal(await nav.getByRole('link', { name: 'Backups' }).count(), 0);
    await vet.goto('/admin/backups');
    await vet
      .getByRole('alert')
      .filter({ hasText: 'The backup status could not be loaded' })
      .waitFor();
    assert.equal(await vet.getByRole('region', { name: 'Replication' }).count(), 0);
  });
});
