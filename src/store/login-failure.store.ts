// Sign-in attempts per account and per client address, for throttling and lockout. Attempts
// are counted before the password is checked, in one locked step, so parallel guesses cannot
// slip past the limit.
import { engineOf } from './dialect.js';
import type { Tx } from './tables.js';

export interface LockoutPolicy {
  maxAttempts: number;
  windowMs: number;
}

/**
 * Counts one attempt against `key` and returns the time it is locked until, or null when the
 * attempt may go ahead. The attempt past `maxAttempts` in the window locks the key for the
 * window; a running lock is never shortened or lifted by later attempts.
 */
export async function registerLoginAttempt(
  tx: Tx,
  key: string,
  now: Date,
  policy: LockoutPolicy,
): Promise<Date | null> {
  const nowIso = now.toISOString();
  await tx
    .insertInto('login_failures')
    .values({ key, failures: 0, window_started_at: nowIso, locked_until: null })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
  let q = tx.selectFrom('login_failures').selectAll().where('key', '=', key);
  if (engineOf(tx) === 'postgres') q = q.forUpdate();
  const row = await q.executeTakeFirstOrThrow();
  if (row.locked_until !== null && row.locked_until > nowIso) return new Date(row.locked_until);
  const windowExpired =
    Date.parse(row.window_started_at) + policy.windowMs <= now.getTime() ||
    row.locked_until !== null;
  const attempts = windowExpired ? 1 : row.failures + 1;
  if (attempts > policy.maxAttempts) {
    const until = new Date(now.getTime() + policy.windowMs);
    await tx
      .updateTable('login_failures')
      .set({ failures: 0, window_started_at: nowIso, locked_until: until.toISOString() })
      .where('key', '=', key)
      .execute();
    return until;
  }
  await tx
    .updateTable('login_failures')
    .set({
      failures: attempts,
      window_started_at: windowExpired ? nowIso : row.window_started_at,
      locked_until: null,
    })
    .where('key', '=', key)
    .execute();
  return null;
}

/** Takes back one counted attempt (it proved the right password). */
export async function refundLoginAttempt(tx: Tx, key: string): Promise<void> {
  await tx
    .updateTable('login_failures')
    .set((eb) => ({ failures: eb('failures', '-', 1) }))
    .where('key', '=', key)
    .where('failures', '>', 0)
    .execute();
}

export async function clearLoginFailures(tx: Tx, key: string): Promise<void> {
  await tx.deleteFrom('login_failures').where('key', '=', key).execute();
}
