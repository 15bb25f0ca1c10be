// The web app over HTTPS in real Chromium: `caretrail serve` as a real process with a certificate
// from a throwaway test CA; signing in through the sign-in page leaves a Secure, HttpOnly session
// cookie, the patient search and the chart load over TLS, and every answer carries HSTS.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { tempDir } from '../helpers/engines.js';
import { runCli, startServer, type ServerProcess } from '../helpers/process.js';
import { httpsRequest, issueCertificate, makeCa } from '../helpers/tls.js';
import { browserUnavailable, launchBrowser, signInAs } from './browser.js';
import { freePort } from './web-helpers.js';

const MAIN = path.resolve('src/cli/main.ts');
const PASSWORD = 'a long enough password 1';
const EMAIL = 'vera@tls-vets.test';
const skip = browserUnavailable() ?? false;

describe('web app over HTTPS in Chromium', { skip }, () => {
  const cleanups: (() => Promise<void>)[] = [];
  let server: ServerProcess;
  let browser: Browser;
  let base: string;
  let dir: string;

  before(async () => {
    dir = tempDir('caretrail-web-tls-');
    cleanups.push(() => {
      fs.rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    });
    const ca = await makeCa(dir);
    const cert = await issueCertificate(dir, ca, 'server');
    const port = await freePort();
    base = `https://127.0.0.1:${port}`;
    const env = {
      CARETRAIL_DATA_DIR: path.join(dir, 'data'),
      CARETRAIL_TLS_CERT: cert.certFile,
      CARETRAIL_TLS_KEY: cert.keyFile,
    };
    fs.writeFileSync(path.join(dir, 'password'), PASSWORD);
    const admin = await runCli(
      [
        'admin',
        'create',
        '--org',
        'TLS Vets',
        '--email',
        EMAIL,
        '--name',
        'Vera Admin',
        '--password-file',
        path.join(dir, 'password'),
      ],
      env,
    );
    assert.equal(admin.code, 0, admin.stderr);
    server = await startServer(env, [MAIN, 'serve', '--port', String(port)]);
    cleanups.push(async () => {
      server.child.kill('SIGTERM');
      await server.exited;
    });
    // A patient to find, registered through the API over the same TLS.
    const caPem = fs.readFileSync(ca.certFile);
    const login = await httpsRequest(`${base}/api/v1/auth/login`, {
      ca: caPem,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    assert.equal(login.status, 200, login.body);
    const { token } = JSON.parse(login.body) as { token: string };
    const patient = await httpsRequest(`${base}/api/v1/patients`, {
      ca: caPem,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: 'Pepper', species: 'feline' }),
    });
    assert.equal(patient.status, 201, patient.body);
    browser = await launchBrowser({ ignoreCertificateErrors: true });
    cleanups.push(() => browser.close());
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('sign in over HTTPS: the session cookie is Secure and the chart loads', async () => {
    const context = await browser.newContext({
      baseURL: base,
      viewport: { width: 1280, height: 860 },
    });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      const hsts: string[] = [];
      page.on('response', (response) => {
        if (response.url().startsWith(`${base}/`))
          hsts.push(response.headers()['strict-transport-security'] ?? 'missing');
      });
      await signInAs(page, EMAIL, PASSWORD);
      assert.ok(page.url().startsWith('https://'), page.url());

      const cookies = await context.cookies(base);
      const session = cookies.find((c) => c.name === '__Host-caretrail_session');
      assert.ok(session, `no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
      assert.equal(session.secure, true);
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');

      // The header's search box (the patients page has one of its own).
      const search = page.getByRole('textbox', { name: 'Find a patient' }).first();
      await search.fill('Pep');
      await page.getByRole('option', { name: /Pepper/ }).waitFor();
      await search.press('Enter');
      await page.getByRole('heading', { name: 'Pepper', level: 1 }).waitFor();
      assert.match(page.url(), /^https:\/\/127\.0\.0\.1:\d+\/patients\/[\w-]+$/);

      assert.ok(hsts.length > 3, `answers seen: ${hsts.length}`);
      assert.deepEqual([...new Set(hsts)], ['max-age=31536000; includeSubDomains']);
    } finally {
      await context.close();
    }
  });
});
