// Login sessions: opaque bearer tokens, stored only as their SHA-256.
import type { Role } from '../domain/roles.js';
import { prepared } from './prepared.js';
import type { SessionRow, Tx } from './tables.js';

export async function insertSession(
  tx: Tx,
  row: {
    id: string;
    token_hash: string;
    user_id: string;
    created_at: string;
    expires_at: string;
    ip: string | null;
    user_agent: string | null;
  },
): Promise<void> {
  await tx
    .insertInto('sessions')
    .values({ ...row, revoked_at: null, last_seen_at: row.created_at })
    .execute();
}

export interface ActiveSession {
  sessionId: string;
  userId: string;
  organizationId: string | null;
  role: Role | null;
  email: string;
  name: string;
  lastSeenAt: string | null;
}

const activeSession = prepared((db, p: { tokenHash: string; now: string; idleSince: string }) =>
  db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'sessions.id as sessionId',
      'users.id as userId',
      'users.organization_id as organizationId',
      'users.role as role',
      'users.email as email',
      'users.name as name',
      'sessions.last_seen_at as lastSeenAt',
    ])
    .where('sessions.token_hash', '=', p.tokenHash)
    .where('sessions.revoked_at', 'is', null)
    .where('sessions.expires_at', '>', p.now)
    .where('sessions.last_seen_at', '>', p.idleSince)
    .where('users.disabled', '=', 0),
);

/**
 * The live session for a token: not revoked, not expired, used since `idleSince` (inactivity
 * logoff), user not disabled.
 */
export async function findActiveSession(
  tx: Tx,
  tokenHash: string,
  now: string,
  idleSince: string,
): Promise<ActiveSession | undefined> {
  const row = await activeSession.first(tx, { tokenHash, now, idleSince });
  return row ? { ...row, role: row.role as Role | null } : undefined;
}

/** When a session ends at the latest (its fixed lifetime), or undefined for an unknown id. */
export async function sessionExpiry(tx: Tx, sessionId: string): Promise<string | undefined> {
  const row = await tx
    .selectFrom('sessions')
    .select('expires_at')
    .where('id', '=', sessionId)
    .executeTakeFirst();
  return row?.expires_at;
}

/** Records activity on a session (the caller keeps this to about once a minute). */
export async function touchSession(tx: Tx, sessionId: string, now: string): Promise<void> {
  await tx
    .updateTable('sessions')
    .set({ last_seen_at: now })
    .where('id', '=', sessionId)
    .where((eb) => eb.or([eb('last_seen_at', 'is', null), eb('last_seen_at', '<', now)]))
    .execute();
}

/** A user's sessions still in force, newest first. */
export async function liveSessionsOf(
  tx: Tx,
  userId: string,
  now: string,
  idleSince: string,
): Promise<SessionRow[]> {
  return tx
    .selectFrom('sessions')
    .selectAll()
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .where('last_seen_at', '>', idleSince)
    .orderBy('id', 'desc')
    .limit(200)
    .execute();
}

/** Ends one of the user's sessions; false when there is no such live session of theirs. */
export async function revokeOwnSession(
  tx: Tx,
  userId: string,
  sessionId: string,
  now: string,
): Promise<boolean> {
  const result = await tx
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('id', '=', sessionId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function revokeSession(tx: Tx, sessionId: string, now: string): Promise<void> {
  await tx
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .execute();
}

/**
 * Ends every session of a user; returns how many were still in force (not expired, used since
 * `idleSince`), which is what the user's own session list showed.
 */
export async function revokeUserSessions(
  tx: Tx,
  userId: string,
  now: string,
  idleSince: string,
): Promise<number> {
  const live = await tx
    .selectFrom('sessions')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .where('last_seen_at', '>', idleSince)
    .executeTakeFirstOrThrow();
  await tx
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .execute();
  return live.n;
}
