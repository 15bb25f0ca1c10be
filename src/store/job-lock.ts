// One runner at a time, across every instance on the database, for scheduled jobs whose runs
// must not overlap (the audit checkpoint, the archive tier move). PostgreSQL: a session-level
// advisory lock on one pooled connection held for the run — released when the run ends or, if
// the instance dies, when its connection closes. SQLite serves one instance: the run goes ahead.
import { sql } from 'kysely';
import type { Database } from './database.js';

/** pg_try_advisory_lock(JOB_LOCK_CLASS, job). */
const JOB_LOCK_CLASS = 7303;

export const JOBS = { checkpoint: 1, archive: 2 } as const;
export type JobName = keyof typeof JOBS;

export type AloneResult<T> = { ran: true; value: T } | { ran: false };

/** Runs `fn` unless another instance (or this one) runs the same job now. */
export async function runAlone<T>(
  db: Database,
  job: JobName,
  fn: () => Promise<T>,
): Promise<AloneResult<T>> {
  if (db.engine !== 'postgres') return { ran: true, value: await fn() };
  return db.read.connection().execute(async (conn) => {
    const { rows } = await sql<{ ok: boolean }>`
      select pg_try_advisory_lock(${JOB_LOCK_CLASS}, ${JOBS[job]}) as ok`.execute(conn);
    if (rows[0]?.ok !== true) return { ran: false };
    try {
      return { ran: true, value: await fn() };
    } finally {
      await sql`select pg_advisory_unlock(${JOB_LOCK_CLASS}, ${JOBS[job]})`
        .execute(conn)
        .catch(() => undefined);
    }
  });
}
