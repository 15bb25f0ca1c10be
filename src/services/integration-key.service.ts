// Integration credentials for devices and lab systems: per organization, ingest-only, shown
// once at creation, stored hashed (the HMAC secret wrapped by the master key), revocable.
import { randomBytes } from 'node:crypto';
import { AppError, notFound } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import {
  findLiveKey,
  insertIntegrationKey,
  keysOf,
  revokeKey,
  touchKey,
} from '../store/integration-key.store.js';
import type { IntegrationKeyRow } from '../store/tables.js';
import { audited } from './audit.service.js';
import { requirePermission, type Actor, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { toPage, type Page, idAfter } from './pagination.js';
import { hashToken, newToken } from './tokens.js';
import { insertNewUser } from './user.service.js';

/** Integration keys start with this, so a key is never mistaken for a session token. */
export const INTEGRATION_KEY_PREFIX = 'ctk_';

export interface IntegrationKey {
  id: string;
  name: string;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface CreatedIntegrationKey extends IntegrationKey {
  /** Shown only in this answer. */
  key: string;
  secret: string;
}

export const integrationSecretContext = (id: string) => `integration-key:${id}`;

function toKey(row: IntegrationKeyRow): IntegrationKey {
  return {
    id: row.id,
    name: row.name,
    createdAt: row.created_at,
    createdBy: row.created_by,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

export function createIntegrationKeyService(deps: ServiceDeps) {
  const { db, clock, vault } = deps;

  async function create(
    ctx: RequestContext,
    input: { name: string },
  ): Promise<CreatedIntegrationKey> {
    const name = input.name.trim();
    if (name === '') throw new AppError('invalid', 'Name the device or system this key is for.');
    return audited(
      deps,
      ctx,
      { action: 'C', type: 'integration-key.create', permission: 'integrations.manage' },
      async (tx, record) => {
        const actor = requirePermission(ctx, 'integrations.manage');
        const now = clock.now().toISOString();
        const id = uuidv7();
        const key = newToken('ctk');
        const secret = randomBytes(32).toString('hex');
        const wrapped = vault.wrapSecret(Buffer.from(secret, 'utf8'), integrationSecretContext(id));
        // The device's own account: it authors the result notes; it cannot sign in (disabled,
        // no password) and is not listed among the staff (no role).
        const account = await insertNewUser(tx, {
          organizationId: actor.organizationId,
          email: `integration-${id}@integrations.invalid`,
          name,
          role: null,
          passwordHash: '!',
          now,
        });
        await tx.updateTable('users').set({ disabled: 1 }).where('id', '=', account.id).execute();
        const row: IntegrationKeyRow = {
          id,
          organization_id: actor.organizationId,
          user_id: account.id,
          name,
          key_hash: hashToken(key),
          secret_key_id: wrapped.keyId,
          secret_wrapped: wrapped.wrapped,
          created_by: actor.userId,
          created_at: now,
          last_used_at: null,
          revoked_at: null,
        };
        await insertIntegrationKey(tx, row);
        record.entity = { type: 'IntegrationKey', id, version: null };
        return { ...toKey(row), key, secret };
      },
    );
  }

  async function list(
    ctx: RequestContext,
    page: { limit: number; cursor?: string },
  ): Promise<Page<IntegrationKey>> {
    const beforeId = idAfter(page.cursor);
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'integration-key.list', permission: 'integrations.manage' },
      async (tx) => {
        const actor = requirePermission(ctx, 'integrations.manage');
        const rows = await keysOf(tx, actor.organizationId, { beforeId, limit: page.limit + 1 });
        return toPage(rows, page.limit, (r) => [r.id], toKey);
      },
    );
  }

  async function revoke(ctx: RequestContext, id: string): Promise<void> {
    await audited(
      deps,
      ctx,
      {
        action: 'D',
        type: 'integration-key.revoke',
        permission: 'integrations.manage',
        entity: { type: 'IntegrationKey', id, version: null },
      },
      async (tx) => {
        const actor = requirePermission(ctx, 'integrations.manage');
        const outcome = await revokeKey(tx, actor.organizationId, id, clock.now().toISOString());
        if (outcome === 'missing') throw notFound('Integration key');
        if (outcome === 'already') throw new AppError('conflict', 'This key was already revoked.');
      },
    );
  }

  /** Resolves an integration key to its actor; last use is recorded to within a minute. */
  async function actorOf(by: { keyHash: string } | { id: string }): Promise<Actor> {
    const row = await findLiveKey(db.read, by);
    if (!row)
      throw new AppError('unauthenticated', 'This integration key is not valid or was revoked.');
    const now = clock.now();
    if (row.last_used_at === null || now.getTime() - Date.parse(row.last_used_at) >= 60_000)
      await db.write((tx) => touchKey(tx, row.id, now.toISOString()));
    return {
      kind: 'integration',
      userId: row.user_id,
      integrationKeyId: row.id,
      organizationId: row.organization_id,
      role: null,
      email: '',
      name: row.name,
      sessionId: null,
    };
  }

  /** The actor of a bearer token (`ctk_…`). */
  const authenticate = (key: string): Promise<Actor> => actorOf({ keyHash: hashToken(key) });

  /** The actor of a key named by id in the configuration (the MLLP listener's). */
  const actorForKeyId = (id: string): Promise<Actor> => actorOf({ id });

  /** The HMAC secret of a key, for checking X-Caretrail-Signature on ingest requests. */
  async function secretOf(keyId: string): Promise<string> {
    const row = await db.read
      .selectFrom('integration_keys')
      .selectAll()
      .where('id', '=', keyId)
      .executeTakeFirst();
    if (!row) throw notFound('Integration key');
    return vault
      .unwrapSecret(
        { keyId: row.secret_key_id, wrapped: row.secret_wrapped },
        integrationSecretContext(row.id),
      )
      .toString('utf8');
  }

  return { create, list, revoke, authenticate, actorForKeyId, secretOf };
}

export type IntegrationKeyService = ReturnType<typeof createIntegrationKeyService>;
