// Failed-login counters per account and per client address, for throttling and lockout.
import type { Tx } from './tables.js';

export interface LockoutPolicy {
  maxFailures: number;
  windowMs: number;
}

/** The time until which `key` is locked, or null. */
export async function lockedUntil(tx: Tx, key: string, now: Date): Promise<Date | null> {
  const row = await tx
    .selectFrom('login_failures')
    .select('locked_until')
    .where('key', '=', key)
    .executeTakeFirst();
  if (!row?.locked_until) return null;
  const until = new Date(row.locked_until);
  return until > now ? until : null;
}

/** Counts one failure against `key`; locks it once the window holds `maxFailures`. */
export async function recordLoginFailure(
  tx: Tx,
  key: string,
  now: Date,
  policy: LockoutPolicy,
): Promise<void> {
  const row = await tx
    .selectFrom('login_failures')
    .selectAll()
    .where('key', '=', key)
    .executeTakeFirst();
  const windowExpired =
    !row || new Date(row.window_started_at).getTime() + policy.windowMs <= now.getTime();
  const failures = windowExpired ? 1 : row.failures + 1;
  const windowStart = windowExpired ? now.toISOString() : row.window_started_at;
  const locked =
    failures >= policy.maxFailures ? new Date(now.getTime() + policy.windowMs).toISOString() : null;
  if (!row) {
    await tx
      .insertInto('login_failures')
      .values({ key, failures, window_started_at: windowStart, locked_until: locked })
      .execute();
  } else {
    await tx
      .updateTable('login_failures')
      .set({
        failures: locked ? 0 : failures,
        window_started_at: windowStart,
        locked_until: locked,
      })
      .where('key', '=', key)
      .execute();
  }
}

export async function clearLoginFailures(tx: Tx, key: string): Promise<void> {
  await tx.deleteFrom('login_failures').where('key', '=', key).execute();
}
