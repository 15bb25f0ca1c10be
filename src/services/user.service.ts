// Staff accounts of an organization: create, list, change role, disable.
import { AppError, notFound } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import type { Role } from '../domain/roles.js';
import { isUniqueViolation } from '../store/dialect.js';
import { revokeUserSessions } from '../store/session.store.js';
import type { Tx, UserRow } from '../store/tables.js';
import {
  countActiveAdmins,
  findUserByEmail,
  findUserById,
  findUserInOrganization,
  insertUser,
  listUsers,
  updateUser,
} from '../store/user.store.js';
import { audited, auditedRead } from './audit.service.js';
import { requireActor, requireStaff, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { toPage, type Page, idAfter } from './pagination.js';
import { checkPasswordRule, hashPassword, normalizeEmail } from './passwords.js';

export interface User {
  id: string;
  /** null for people outside any organization */
  organizationId: string | null;
  email: string;
  name: string;
  /** The organization role; null for people outside any organization. */
  role: Role | null;
  disabled: boolean;
  mfaEnabled: boolean;
  version: number;
  createdAt: string;
}

export function toUser(row: UserRow): User {
  return {
    id: row.id,
    organizationId: row.organization_id,
    email: row.email,
    name: row.name,
    role: row.role as Role | null,
    disabled: row.disabled === 1,
    mfaEnabled: row.totp_enabled === 1,
    version: row.version,
    createdAt: row.created_at,
  };
}

/** Inserts a user after the caller checked rights; a taken email is a 409. */
export async function insertNewUser(
  tx: Tx,
  input: {
    /** null for a person outside any organization (an accepted invitation) */
    organizationId: string | null;
    email: string;
    name: string;
    role: Role | null;
    passwordHash: string;
    now: string;
  },
): Promise<UserRow> {
  if (await findUserByEmail(tx, input.email))
    throw new AppError('conflict', 'A user with this email already exists.');
  const row: UserRow = {
    id: uuidv7(),
    organization_id: input.organizationId,
    email: input.email,
    name: input.name,
    role: input.role,
    password_hash: input.passwordHash,
    disabled: 0,
    totp_secret: null,
    totp_pending_secret: null,
    totp_enabled: 0,
    totp_last_step: null,
    version: 1,
    created_at: input.now,
    updated_at: input.now,
  };
  try {
    await insertUser(tx, row);
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('conflict', 'A user with this email already exists.');
    throw err;
  }
  return row;
}

/** A user of the caller's organization, or 404. */
async function loadColleague(tx: Tx, ctx: RequestContext, id: string) {
  const actor = requireStaff(ctx);
  const user = await findUserInOrganization(tx, actor.organizationId, id);
  if (!user) throw notFound('User');
  return { actor, user };
}

export function createUserService(deps: ServiceDeps) {
  const { clock } = deps;
  /** Sessions unused since then have ended by inactivity. */
  const idleSince = (now: Date) =>
    new Date(now.getTime() - deps.settings.sessionIdleMinutes * 60_000).toISOString();

  async function create(
    ctx: RequestContext,
    input: { email: string; name: string; role: Role; password: string },
  ): Promise<User> {
    const email = normalizeEmail(input.email);
    checkPasswordRule(input.password);
    const passwordHash = await hashPassword(input.password);
    return audited(
      deps,
      ctx,
      { action: 'C', type: 'user.create', permission: 'users.manage' },
      async (tx, record) => {
        const actor = requireStaff(ctx);
        const row = await insertNewUser(tx, {
          organizationId: actor.organizationId,
          email,
          name: input.name.trim(),
          role: input.role,
          passwordHash,
          now: clock.now().toISOString(),
        });
        record.entity = { type: 'User', id: row.id, version: row.version };
        record.detail = { role: row.role };
        return toUser(row);
      },
    );
  }

  async function list(
    ctx: RequestContext,
    page: { limit: number; cursor?: string },
  ): Promise<Page<User>> {
    const afterId = idAfter(page.cursor);
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'user.list', permission: 'users.manage' },
      async (tx, record) => {
        const actor = requireStaff(ctx);
        const rows = await listUsers(tx, actor.organizationId, { afterId, limit: page.limit + 1 });
        record.detail = { count: Math.min(rows.length, page.limit) };
        return toPage(rows, page.limit, (r) => [r.id], toUser);
      },
    );
  }

  async function update(
    ctx: RequestContext,
    id: string,
    changes: { role?: Role; disabled?: boolean; name?: string },
  ): Promise<User> {
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'user.update',
        permission: 'users.manage',
        entity: { type: 'User', id, version: null },
      },
      async (tx, record) => {
        const { actor, user } = await loadColleague(tx, ctx, id);
        const losesAdmin =
          user.role === 'admin' &&
          user.disabled === 0 &&
          ((changes.role !== undefined && changes.role !== 'admin') || changes.disabled === true);
        if (losesAdmin && (await countActiveAdmins(tx, actor.organizationId)) <= 1) {
          throw new AppError(
            'conflict',
            'This is the last active admin of the organization; appoint another admin first.',
          );
        }
        const now = clock.now().toISOString();
        await updateUser(tx, id, {
          ...(changes.role !== undefined ? { role: changes.role } : {}),
          ...(changes.disabled !== undefined ? { disabled: changes.disabled ? 1 : 0 } : {}),
          ...(changes.name !== undefined ? { name: changes.name.trim() } : {}),
          updated_at: now,
        });
        // A disabled user or a changed role starts over: existing sessions end now.
        if (
          changes.disabled === true ||
          (changes.role !== undefined && changes.role !== user.role)
        ) {
          await revokeUserSessions(tx, id, now, idleSince(clock.now()));
        }
        const updated = await findUserInOrganization(tx, actor.organizationId, id);
        if (!updated) throw notFound('User');
        record.entity = { type: 'User', id, version: updated.version };
        record.detail = {
          fromRole: user.role,
          toRole: updated.role,
          disabled: updated.disabled === 1,
        };
        return toUser(updated);
      },
    );
  }

  /** Ends every session of a user of the organization (a lost device, a leaving employee). */
  async function forceLogout(ctx: RequestContext, id: string): Promise<{ sessionsEnded: number }> {
    return audited(
      deps,
      ctx,
      {
        action: 'E',
        type: 'user.logout-all',
        permission: 'users.manage',
        entity: { type: 'User', id, version: null },
      },
      async (tx, record) => {
        await loadColleague(tx, ctx, id);
        const ended = await revokeUserSessions(
          tx,
          id,
          clock.now().toISOString(),
          idleSince(clock.now()),
        );
        record.detail = { sessionsEnded: ended };
        return { sessionsEnded: ended };
      },
    );
  }

  async function me(ctx: RequestContext): Promise<User> {
    const actor = requireActor(ctx);
    return auditedRead(
      deps,
      ctx,
      { action: 'R', type: 'user.me', entity: { type: 'User', id: actor.userId, version: null } },
      async () => {
        const row = await findUserById(deps.db.read, actor.userId);
        if (!row) throw new AppError('unauthenticated', 'Sign in again.');
        return toUser(row);
      },
    );
  }

  return { create, list, update, forceLogout, me };
}

export type UserService = ReturnType<typeof createUserService>;
