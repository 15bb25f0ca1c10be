// Sign-in, sign-out, session lookup and TOTP multi-factor authentication.
import { Secret, TOTP } from 'otpauth';
import { AppError, notFound } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import {
  clearLoginFailures,
  refundLoginAttempt,
  registerLoginAttempt,
} from '../store/login-failure.store.js';
import {
  findActiveSession,
  insertSession,
  liveSessionsOf,
  revokeOwnSession,
  revokeSession,
  sessionExpiry,
  touchSession,
} from '../store/session.store.js';
import type { UserRow } from '../store/tables.js';
import { findUserByEmail, findUserById, updateUser, useTotpStep } from '../store/user.store.js';
import { audited, auditedRead } from './audit.service.js';
import { requireActor, type Actor, type RequestContext } from './context.js';
import { openTotpSecret, sealTotpSecret } from './secret-box.js';
import type { ServiceDeps } from './deps.js';
import { verifyPassword } from './passwords.js';
import { lockoutAddress } from '../domain/ip.js';
import { hashToken, newToken } from './tokens.js';
import { toUser, type User } from './user.service.js';

export interface SessionInfo {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  ip: string | null;
  userAgent: string | null;
  current: boolean;
}

/** The caller's own session, for the web app's inactivity warning. */
export interface CurrentSession {
  expiresAt: string;
  idleTimeoutMinutes: number;
  user: User;
}

export interface LoginResult {
  token: string;
  expiresAt: string;
  user: User;
}

const BAD_CREDENTIALS = 'Email, password or code is incorrect.';
const TOTP_PERIOD = 30;

function totpFor(secret: string, label: string): TOTP {
  return new TOTP({
    issuer: 'Caretrail',
    label,
    algorithm: 'SHA1',
    digits: 6,
    period: TOTP_PERIOD,
    secret: Secret.fromBase32(secret),
  });
}

/** The time step a code matches (±1 step of clock drift), or null. */
function matchTotp(secret: string, code: string, now: Date): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const delta = totpFor(secret, '').validate({ token: code, timestamp: now.getTime(), window: 1 });
  if (delta === null) return null;
  return Math.floor(now.getTime() / 1000 / TOTP_PERIOD) + delta;
}

export function createAuthService(deps: ServiceDeps) {
  const { db, clock, settings } = deps;
  const lockoutPolicy = (max: number) => ({
    maxAttempts: max,
    windowMs: settings.loginLockoutMinutes * 60_000,
  });

  async function login(
    ctx: RequestContext,
    input: { email: string; password: string; totp?: string },
  ): Promise<LoginResult> {
    const email = input.email.trim().toLowerCase();
    const accountKey = `account:${email}`;
    const addressKey = `address:${ctx.ip === null ? 'unknown' : lockoutAddress(ctx.ip)}`;
    const now = clock.now();

    // Count this attempt against the account and the address before checking anything, in one
    // committed step: a burst of parallel guesses is counted guess by guess.
    const lock = await db.write(async (tx) => {
      const account = await registerLoginAttempt(
        tx,
        accountKey,
        now,
        lockoutPolicy(settings.loginMaxFailures),
      );
      const address = await registerLoginAttempt(
        tx,
        addressKey,
        now,
        lockoutPolicy(settings.loginIpMaxFailures),
      );
      return [account, address]
        .filter((d): d is Date => d !== null)
        .sort((x, y) => y.getTime() - x.getTime())[0];
    });
    if (lock) {
      const retryAfterSeconds = Math.max(1, Math.ceil((lock.getTime() - now.getTime()) / 1000));
      await audited(deps, ctx, { action: 'E', type: 'login' }, (_tx, record) => {
        record.outcome = 'failure';
        record.detail = { reason: 'locked_out' };
        return Promise.resolve();
      });
      throw new AppError(
        'too_many_requests',
        `Too many failed sign-ins. Try again in ${Math.ceil(retryAfterSeconds / 60)} minute(s).`,
        {
          retryAfterSeconds,
        },
      );
    }

    const user = await findUserByEmail(db.read, email);
    const passwordOk = await verifyPassword(user?.password_hash, input.password);
    let failure: 'bad_credentials' | 'mfa_required' | null = null;
    let step: number | null = null;
    if (!user || !passwordOk || user.disabled === 1) {
      failure = 'bad_credentials';
    } else if (user.totp_enabled === 1 && user.totp_secret) {
      if (input.totp === undefined || input.totp === '') failure = 'mfa_required';
      else {
        step = matchTotp(openTotpSecret(deps.vault, user.id, user.totp_secret), input.totp, now);
        if (step === null || (user.totp_last_step !== null && step <= user.totp_last_step))
          failure = 'bad_credentials';
      }
    }

    if (failure !== null) {
      // The refusal and its audit event are committed before we answer; the attempt was counted.
      await audited(deps, ctx, { action: 'E', type: 'login' }, async (tx, record) => {
        record.outcome = 'failure';
        record.detail = { reason: failure };
        record.actorUserId = user?.id ?? null;
        record.actorOrganizationId = user?.organization_id ?? null;
        record.actorRole = user?.role ?? null;
        // The right password, only the code missing: not a guess.
        if (failure === 'mfa_required') {
          await refundLoginAttempt(tx, accountKey);
          await refundLoginAttempt(tx, addressKey);
        }
      });
      if (failure === 'mfa_required') {
        throw new AppError('mfa_required', 'Enter the 6-digit code from your authenticator app.');
      }
      throw new AppError('unauthenticated', BAD_CREDENTIALS);
    }

    const signedIn = user as UserRow;
    const token = newToken('ct');
    const expiresAt = new Date(now.getTime() + settings.sessionTtlMinutes * 60_000).toISOString();
    await audited(deps, ctx, { action: 'E', type: 'login' }, async (tx, record) => {
      record.actorUserId = signedIn.id;
      record.actorOrganizationId = signedIn.organization_id;
      record.actorRole = signedIn.role;
      const sessionId = uuidv7(now.getTime());
      record.entity = { type: 'Session', id: sessionId, version: null };
      await insertSession(tx, {
        id: sessionId,
        token_hash: hashToken(token),
        user_id: signedIn.id,
        created_at: now.toISOString(),
        expires_at: expiresAt,
        ip: ctx.ip,
        user_agent: ctx.userAgent,
      });
      // A time step is used once, even by sign-ins racing each other with the same code.
      if (step !== null && !(await useTotpStep(tx, signedIn.id, step, now.toISOString()))) {
        throw new AppError('unauthenticated', BAD_CREDENTIALS);
      }
      await clearLoginFailures(tx, accountKey);
      await refundLoginAttempt(tx, addressKey);
    });
    return { token, expiresAt, user: toUser(signedIn) };
  }

  const idleMs = settings.sessionIdleMinutes * 60_000;
  // Activity is recorded at most this often, so a session ends at most this much early.
  const touchEveryMs = Math.min(60_000, idleMs / 10);

  /**
   * Resolves a session token to its actor, or throws unauthenticated: expired, ended, unused
   * for longer than the inactivity limit, or the user disabled.
   */
  async function authenticate(token: string): Promise<Actor> {
    const now = clock.now();
    const session = await findActiveSession(
      db.read,
      hashToken(token),
      now.toISOString(),
      new Date(now.getTime() - idleMs).toISOString(),
    );
    if (!session)
      throw new AppError(
        'unauthenticated',
        'Your session has expired or was ended; sign in again.',
      );
    if (
      session.lastSeenAt === null ||
      now.getTime() - Date.parse(session.lastSeenAt) >= touchEveryMs
    ) {
      await db.write((tx) => touchSession(tx, session.sessionId, now.toISOString()));
    }
    return {
      kind: 'user',
      userId: session.userId,
      organizationId: session.organizationId,
      role: session.role,
      email: session.email,
      name: session.name,
      sessionId: session.sessionId,
    };
  }

  /** The caller's sessions still in force; `current` marks the one making the request. */
  async function listSessions(ctx: RequestContext): Promise<SessionInfo[]> {
    return audited(deps, ctx, { action: 'R', type: 'session.list' }, async (tx, record) => {
      const actor = requireActor(ctx);
      const now = clock.now();
      const rows = await liveSessionsOf(
        tx,
        actor.userId,
        now.toISOString(),
        new Date(now.getTime() - idleMs).toISOString(),
      );
      record.detail = { count: rows.length };
      return rows.map((r) => ({
        id: r.id,
        createdAt: r.created_at,
        lastSeenAt: r.last_seen_at ?? r.created_at,
        expiresAt: r.expires_at,
        ip: r.ip,
        userAgent: r.user_agent,
        current: r.id === actor.sessionId,
      }));
    });
  }

  /** Ends one of the caller's own sessions (another device); someone else's is 404. */
  async function revokeMySession(ctx: RequestContext, sessionId: string): Promise<void> {
    await audited(
      deps,
      ctx,
      {
        action: 'E',
        type: 'session.revoke',
        entity: { type: 'Session', id: sessionId, version: null },
      },
      async (tx) => {
        const actor = requireActor(ctx);
        if (!(await revokeOwnSession(tx, actor.userId, sessionId, clock.now().toISOString())))
          throw notFound('Session');
      },
    );
  }

  async function logout(ctx: RequestContext): Promise<void> {
    await audited(deps, ctx, { action: 'E', type: 'logout' }, async (tx, record) => {
      const actor = requireActor(ctx);
      if (actor.sessionId === null) throw new AppError('invalid', 'No session to end.');
      record.entity = { type: 'Session', id: actor.sessionId, version: null };
      await revokeSession(tx, actor.sessionId, clock.now().toISOString());
    });
  }

  /** The signed-in user with when their session ends: at `expiresAt`, or after idle minutes. */
  async function currentSession(ctx: RequestContext): Promise<CurrentSession> {
    const actor = requireActor(ctx);
    return auditedRead(
      deps,
      ctx,
      {
        action: 'R',
        type: 'session.read',
        entity: { type: 'User', id: actor.userId, version: null },
      },
      async () => {
        const user = await findUserById(db.read, actor.userId);
        const expiresAt =
          actor.sessionId === null ? undefined : await sessionExpiry(db.read, actor.sessionId);
        if (!user || expiresAt === undefined)
          throw new AppError('unauthenticated', 'Sign in again.');
        return { expiresAt, idleTimeoutMinutes: settings.sessionIdleMinutes, user: toUser(user) };
      },
    );
  }

  async function startTotpEnrolment(
    ctx: RequestContext,
  ): Promise<{ secret: string; otpauthUrl: string }> {
    return audited(deps, ctx, { action: 'U', type: 'mfa.enrol' }, async (tx, record) => {
      const actor = requireActor(ctx);
      record.entity = { type: 'User', id: actor.userId, version: null };
      const user = await findUserById(tx, actor.userId);
      if (!user) throw new AppError('unauthenticated', 'Sign in again.');
      if (user.totp_enabled === 1)
        throw new AppError('conflict', 'Two-factor sign-in is already on for this account.');
      const secret = new Secret({ size: 20 }).base32;
      await updateUser(tx, actor.userId, {
        totp_pending_secret: sealTotpSecret(deps.vault, actor.userId, secret),
        updated_at: clock.now().toISOString(),
      });
      return { secret, otpauthUrl: totpFor(secret, actor.email).toString() };
    });
  }

  /**
   * Turns two-step sign-in on. The current password is asked again, so that whoever holds a stolen
   * session cannot bind the account to their own authenticator and lock its owner out; a wrong
   * password counts against the account's sign-in lockout like a failed sign-in.
   */
  async function verifyTotpEnrolment(
    ctx: RequestContext,
    input: { code: string; password: string },
  ): Promise<{ enabled: true }> {
    const actor = requireActor(ctx);
    const accountKey = `account:${actor.email.trim().toLowerCase()}`;
    const now = clock.now();
    const lock = await db.write((tx) =>
      registerLoginAttempt(tx, accountKey, now, lockoutPolicy(settings.loginMaxFailures)),
    );
    const user = await findUserById(db.read, actor.userId);
    const passwordOk = await verifyPassword(user?.password_hash, input.password);
    // The right password is not a guess, whatever becomes of the code.
    if (passwordOk) await db.write((tx) => refundLoginAttempt(tx, accountKey));
    return audited(deps, ctx, { action: 'U', type: 'mfa.verify' }, async (tx, record) => {
      record.entity = { type: 'User', id: actor.userId, version: null };
      if (lock) {
        const minutes = Math.max(1, Math.ceil((lock.getTime() - now.getTime()) / 60_000));
        throw new AppError(
          'too_many_requests',
          `Too many wrong passwords. Try again in ${String(minutes)} minute(s).`,
          { retryAfterSeconds: minutes * 60 },
        );
      }
      if (!passwordOk) {
        record.detail = { reason: 'bad_password' };
        throw new AppError('invalid', 'That is not your current password.');
      }
      // Read again in the transaction: an enrolment restarted meanwhile has a new secret.
      const current = await findUserById(tx, actor.userId);
      if (!current?.totp_pending_secret) {
        throw new AppError('conflict', 'Start the enrolment first (POST /api/v1/me/mfa/totp).');
      }
      const step = matchTotp(
        openTotpSecret(deps.vault, actor.userId, current.totp_pending_secret),
        input.code,
        now,
      );
      if (step === null)
        throw new AppError(
          'invalid',
          'That code does not match; check the time on your device and try again.',
        );
      await updateUser(tx, actor.userId, {
        totp_secret: current.totp_pending_secret,
        totp_pending_secret: null,
        totp_enabled: 1,
        totp_last_step: step,
        updated_at: now.toISOString(),
      });
      return { enabled: true as const };
    });
  }

  return {
    login,
    authenticate,
    logout,
    currentSession,
    idleTimeoutMinutes: settings.sessionIdleMinutes,
    listSessions,
    revokeMySession,
    startTotpEnrolment,
    verifyTotpEnrolment,
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
