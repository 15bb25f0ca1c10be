// Real Chromium (Debian's package) driven by playwright-core, with axe-core for accessibility
// checks and optional screenshots for the README. On a laptop without Chromium the browser
// tests are skipped with the reason; under CI=true a missing Chromium fails them.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

const EXECUTABLE = process.env.CARETRAIL_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null when they can. */
export function browserUnavailable(): string | null {
  if (fs.existsSync(EXECUTABLE)) return null;
  const reason = `Chromium not found at ${EXECUTABLE} (apt-get install chromium, or set CARETRAIL_CHROMIUM)`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${reason}`);
  return reason;
}

/**
 * Debian's Chromium, headless. `ignoreCertificateErrors` lets it talk HTTPS to a server whose
 * certificate a throwaway test CA signed (the browser cannot be told to trust that CA alone).
 */
export async function launchBrowser(options: { ignoreCertificateErrors?: boolean } = {}) {
  const browser: Browser = await chromium.launch({
    executablePath: EXECUTABLE,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-dev-shm-usage',
      ...(options.ignoreCertificateErrors ? ['--ignore-certificate-errors'] : []),
    ],
  });
  return browser;
}

const axeSource = fs.readFileSync(
  createRequire(import.meta.url).resolve('axe-core/axe.min.js'),
  'utf8',
);

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; html: string; failureSummary?: string }[];
}

/** axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A/AA). */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  // Evaluated through the DevTools protocol: the app's CSP (no inline scripts) stays in force.
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (
      globalThis as unknown as { axe: { run: (o: unknown) => Promise<{ violations: unknown[] }> } }
    ).axe;
    const result = await axe.run({
      runOnly: {
        type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'],
      },
    });
    return result.violations;
  });
  return (violations as AxeViolation[]).filter(
    (v) => v.impact === 'serious' || v.impact === 'critical',
  );
}

/** A readable account of violations for an assertion message. */
export function describeViolations(violations: AxeViolation[]): string {
  return violations
    .map(
      (v) =>
        `${v.id} (${v.impact ?? '?'}): ${v.help}\n` +
        v.nodes
          .slice(0, 3)
          .map((n) => `    ${n.html.slice(0, 200)}\n      ${n.failureSummary ?? ''}`)
          .join('\n'),
    )
    .join('\n');
}

/** Fails with axe-core's account when the page, as it is now, has serious violations. */
export async function expectAccessible(page: Page, screen: string): Promise<void> {
  // A modal or menu still fading in or out has its colours blended with the overlay: axe would
  // measure a contrast nobody reads (seen once on a loaded machine). Check the settled page.
  await page.waitForFunction(
    () => {
      // (The page's own types: these tests compile without the DOM library.)
      interface Running {
        playState: string;
        effect: { getTiming(): { iterations?: number } } | null;
      }
      const doc = (globalThis as unknown as { document: { getAnimations(): Running[] } }).document;
      // Endless animations, such as a loading spinner, never settle and are left out.
      return doc
        .getAnimations()
        .every(
          (a) =>
            a.playState !== 'running' ||
            a.effect === null ||
            a.effect.getTiming().iterations === Infinity,
        );
    },
    undefined,
    { timeout: 5_000 },
  );
  const violations = await seriousViolations(page);
  assert.equal(violations.length, 0, `${screen}:\n${describeViolations(violations)}`);
}

/** Signs in through the sign-in page and waits for the signed-in frame. */
export async function signInAs(page: Page, email: string, password: string): Promise<void> {
  await page.goto('/');
  await page.getByLabel('Email').fill(email);
  // By role: Mantine's password field also has a "toggle visibility" button with that label.
  await page.getByRole('textbox', { name: 'Password' }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: /Account menu/ }).waitFor();
}

/** Saves a screenshot when CARETRAIL_SCREENSHOTS names a folder (npm run screenshots). */
export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = process.env.CARETRAIL_SCREENSHOTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  // Let fonts, images and transitions settle so the picture shows the finished screen.
  await page.waitForLoadState('networkidle');
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(dir, `${name}.png`) });
}
