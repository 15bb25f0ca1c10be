// First run: a one-time setup link when there are no users, and the CLI's admin creation.
import { AppError } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import { findOrganizationByName, insertOrganization } from '../store/organization.store.js';
import { consumeSetupToken, insertSetupToken } from '../store/setup-token.store.js';
import type { Tx } from '../store/tables.js';
import { countUsers } from '../store/user.store.js';
import { audited } from './audit.service.js';
import type { RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { checkPasswordRule, hashPassword, normalizeEmail } from './passwords.js';
import { hashToken, newToken } from './tokens.js';
import { insertNewUser, toUser, type User } from './user.service.js';

const SETUP_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

export function createSetupService(deps: ServiceDeps) {
  const { db, clock, settings } = deps;

  /** When nobody can sign in yet, mints a one-time setup link; otherwise null. */
  async function issueSetupLinkIfNeeded(): Promise<string | null> {
    const token = newToken('setup');
    const issued = await db.write(async (tx) => {
      if ((await countUsers(tx)) > 0) return false;
      const now = clock.now();
      await insertSetupToken(tx, {
        token_hash: hashToken(token),
        created_at: now.toISOString(),
        expires_at: new Date(now.getTime() + SETUP_TOKEN_TTL_MS).toISOString(),
      });
      return true;
    });
    return issued ? `${settings.publicUrl}/setup#token=${token}` : null;
  }

  async function organizationFor(
    tx: Tx,
    name: string,
    now: string,
  ): Promise<{ id: string; created: boolean }> {
    const existing = await findOrganizationByName(tx, name);
    if (existing) return { id: existing.id, created: false };
    const id = uuidv7();
    await insertOrganization(tx, { id, name, created_at: now });
    return { id, created: true };
  }

  async function createAdmin(
    ctx: RequestContext,
    input: {
      organizationName: string;
      email: string;
      name: string;
      password: string;
      setupToken?: string;
    },
  ): Promise<User> {
    const organizationName = input.organizationName.trim();
    if (organizationName === '') throw new AppError('invalid', 'The organization needs a name.');
    const email = normalizeEmail(input.email);
    checkPasswordRule(input.password);
    const passwordHash = await hashPassword(input.password);
    const type = input.setupToken === undefined ? 'admin.create' : 'setup';
    return audited(deps, ctx, { action: 'C', type }, async (tx, record) => {
      const now = clock.now().toISOString();
      if (input.setupToken !== undefined) {
        if (
          (await countUsers(tx)) > 0 ||
          !(await consumeSetupToken(tx, hashToken(input.setupToken), now))
        ) {
          throw new AppError('not_found', 'This setup link is invalid, expired or already used.');
        }
      }
      const org = await organizationFor(tx, organizationName, now);
      const row = await insertNewUser(tx, {
        organizationId: org.id,
        email,
        name: input.name.trim() || email,
        role: 'admin',
        passwordHash,
        now,
      });
      record.entity = { type: 'User', id: row.id, version: row.version };
      record.actorOrganizationId = org.id;
      record.detail = { role: 'admin', organizationCreated: org.created };
      return toUser(row);
    });
  }

  return { issueSetupLinkIfNeeded, createAdmin };
}

export type SetupService = ReturnType<typeof createSetupService>;
