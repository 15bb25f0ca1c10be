// Login sessions: opaque bearer tokens, stored only as their SHA-256.
import type { Role } from '../domain/roles.js';
import type { Tx } from './tables.js';

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
    .values({ ...row, revoked_at: null })
    .execute();
}

export interface ActiveSession {
  sessionId: string;
  userId: string;
  organizationId: string;
  role: Role;
  email: string;
  name: string;
}

/** The live session for a token: not revoked, not expired, user not disabled. */
export async function findActiveSession(
  tx: Tx,
  tokenHash: string,
  now: string,
): Promise<ActiveSession | undefined> {
  const row = await tx
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'sessions.id as sessionId',
      'users.id as userId',
      'users.organization_id as organizationId',
      'users.role as role',
      'users.email as email',
      'users.name as name',
    ])
    .where('sessions.token_hash', '=', tokenHash)
    .where('sessions.revoked_at', 'is', null)
    .where('sessions.expires_at', '>', now)
    .where('users.disabled', '=', 0)
    .executeTakeFirst();
  return row ? { ...row, role: row.role as Role } : undefined;
}

export async function revokeSession(tx: Tx, sessionId: string, now: string): Promise<void> {
  await tx
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .execute();
}

export async function revokeUserSessions(tx: Tx, userId: string, now: string): Promise<void> {
  await tx
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .execute();
}
