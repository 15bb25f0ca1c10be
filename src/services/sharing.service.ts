// Care-team sharing: shares of one patient with a person (inside another organization or none),
// invitations for people without an account, the owner's consents, and break-glass access.
import {
  summarize,
  type AccessSummary,
  type ShareAccess,
  type ShareRole,
} from '../domain/access.js';
import { AppError, notFound } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import { findPatientById, insertBreakGlass } from '../store/access.store.js';
import { findDocument } from '../store/document.store.js';
import { ownersOf } from '../store/patient.store.js';
import {
  claimInvitation,
  findUsableInvitation,
  consentVersionsOf,
  consentsOf,
  findConsent,
  findLiveConsent,
  findShare,
  insertConsent,
  insertConsentVersion,
  insertInvitation,
  insertShare,
  linkSharesToUser,
  revokeShare as revokeShareRow,
  revokeSharesOfConsent,
  sharesOf,
  updateConsent,
  type ShareWithConsent,
} from '../store/sharing.store.js';
import type { ConsentRow, ShareRow, Tx, UserRow } from '../store/tables.js';
import { refundLoginAttempt, registerLoginAttempt } from '../store/login-failure.store.js';
import { findUserByEmail } from '../store/user.store.js';
import { accessOf, accessPatient, accessUnlisted } from './access.js';
import { audited } from './audit.service.js';
import { requirePermission, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { mailAdmins, queueMail, SECRET_PLACEHOLDER } from './mail.js';
import { toPage, type Page, idAfter } from './pagination.js';
import { checkPasswordRule, hashPassword, normalizeEmail, verifyPassword } from './passwords.js';
import { hashToken, newToken } from './tokens.js';
import { insertNewUser, toUser, type User } from './user.service.js';

export const CONSENT_METHODS = ['in_person', 'portal', 'signed_form'] as const;
export type ConsentMethod = (typeof CONSENT_METHODS)[number];

export interface Share {
  id: string;
  patientId: string;
  email: string;
  role: ShareRole;
  access: ShareAccess;
  expiresAt: string | null;
  consentId: string | null;
  status: 'active' | 'pending' | 'expired' | 'revoked';
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

export interface CreatedShare extends Share {
  /**
   * For people without an account: when the one-time link mailed to them expires. The link goes
   * only to the mailbox (whoever holds it creates the account for that email), never to staff.
   */
  invitation: { expiresAt: string } | null;
}

export interface Consent {
  id: string;
  patientId: string;
  granteeEmail: string;
  purpose: string;
  scope: ShareAccess;
  method: ConsentMethod;
  consentedBy: { ownerId: string | null; userId: string | null };
  documentId: string | null;
  recordedBy: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
  status: 'active' | 'expired' | 'revoked';
  version: number;
}

export interface ConsentInput {
  granteeEmail: string;
  purpose: string;
  scope: ShareAccess;
  method: ConsentMethod;
  expiresAt?: string;
  /** Staff recording consent: which owner on record gave it. */
  ownerId?: string;
  /** A signed form: the uploaded document (of this patient). */
  documentId?: string;
}

export interface BreakGlassGrant {
  id: string;
  patientId: string;
  expiresAt: string;
  access: AccessSummary;
}

/** As `isLive` decides access: the share's own revocation and expiry, then its consent's. */
function shareStatus(row: Partial<ShareWithConsent> & ShareRow, now: Date): Share['status'] {
  const past = (at: string | null | undefined) =>
    at !== null && at !== undefined && Date.parse(at) <= now.getTime();
  if (row.revoked_at !== null || (row.consent_revoked_at ?? null) !== null) return 'revoked';
  if (past(row.expires_at) || past(row.consent_expires_at)) return 'expired';
  return row.grantee_user_id === null ? 'pending' : 'active';
}

function toShare(row: Partial<ShareWithConsent> & ShareRow, now: Date): Share {
  return {
    id: row.id,
    patientId: row.patient_id,
    email: row.grantee_email,
    role: row.role as ShareRole,
    access: row.access as ShareAccess,
    expiresAt: row.expires_at,
    consentId: row.consent_id,
    status: shareStatus(row, now),
    createdAt: row.created_at,
    createdBy: row.created_by,
    revokedAt: row.revoked_at,
  };
}

function toConsent(row: ConsentRow, now: Date): Consent {
  return {
    id: row.id,
    patientId: row.patient_id,
    granteeEmail: row.grantee_email,
    purpose: row.purpose,
    scope: row.scope as ShareAccess,
    method: row.method as ConsentMethod,
    consentedBy: { ownerId: row.consented_by_owner_id, userId: row.consented_by_user_id },
    documentId: row.document_id,
    recordedBy: row.recorded_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    revokedBy: row.revoked_by,
    status:
      row.revoked_at !== null
        ? 'revoked'
        : row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime()
          ? 'expired'
          : 'active',
    version: row.version,
  };
}

/** An optional expiry: a real time, in the future. */
function futureTime(value: string | undefined, now: Date, field: string): string | null {
  if (value === undefined) return null;
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new AppError('invalid', `${field} must be a date and time (ISO 8601).`);
  if (at.getTime() <= now.getTime())
    throw new AppError('invalid', `${field} is in the past; give a time in the future or none.`);
  return at.toISOString();
}

export function createSharingService(deps: ServiceDeps) {
  const { db, clock, settings, vault } = deps;

  async function recordConsentVersion(
    tx: Tx,
    row: ConsentRow,
    change: 'created' | 'revoked',
    actorId: string,
    at: string,
  ): Promise<void> {
    await insertConsentVersion(tx, {
      consent_id: row.id,
      version: row.version,
      change,
      snapshot: JSON.stringify(row),
      actor_id: actorId,
      at,
    });
  }

  async function create(
    ctx: RequestContext,
    patientId: string,
    input: { email: string; role: ShareRole; access: ShareAccess; expiresAt?: string },
  ): Promise<CreatedShare> {
    const email = normalizeEmail(input.email);
    const now = clock.now();
    const expiresAt = futureTime(input.expiresAt, now, 'expiresAt');
    return audited(
      deps,
      ctx,
      { action: 'C', type: 'share.create', patientId },
      async (tx, record) => {
        const { actor, patient } = await accessPatient(
          tx,
          ctx,
          patientId,
          'shares.manage',
          record,
          now,
        );
        if (email === actor.email.toLowerCase())
          throw new AppError('invalid', 'You cannot share a patient with yourself.');
        const grantee = await findUserByEmail(tx, email);
        if (grantee && grantee.organization_id === patient.organization_id)
          throw new AppError(
            'invalid',
            'This person works in the patient’s organization; their role already decides their access.',
          );
        if (input.role === 'owner') {
          // Owner access goes only to an owner on record, so a typo cannot hand a record over.
          const owners = await ownersOf(tx, [patientId]);
          if (!owners.some((o) => o.email?.toLowerCase() === email))
            throw new AppError(
              'invalid',
              'Owner access goes to an owner on record: add this email to one of the patient’s owners first.',
            );
        }
        let consentId: string | null = null;
        if (input.role !== 'owner') {
          // Everyone who gets a share is outside the organization (staff were refused above).
          const consent = await findLiveConsent(tx, patientId, email, now.toISOString());
          if (!consent || (input.access === 'write' && consent.scope === 'read'))
            throw new AppError(
              'consent_required',
              consent
                ? 'The owner’s consent for this person covers reading only; record consent for write access first.'
                : 'Sharing outside the organization needs the owner’s consent for this person; record it first (POST /api/v1/patients/{id}/consents).',
            );
          consentId = consent.id;
        }
        // An account's email was proven only when it came from an invitation link (people
        // outside any organization). A staff account's email was typed by its clinic's admin,
        // who could name anyone: its holder confirms through the mailed link, with the password.
        const linkNow = grantee !== undefined && grantee.organization_id === null;
        const at = now.toISOString();
        const row: ShareRow = {
          id: uuidv7(now.getTime()),
          organization_id: patient.organization_id,
          patient_id: patientId,
          grantee_email: email,
          grantee_user_id: linkNow ? grantee.id : null,
          role: input.role,
          access: input.access,
          expires_at: expiresAt,
          consent_id: consentId,
          created_by: actor.userId,
          created_at: at,
          revoked_at: null,
          revoked_by: null,
        };
        await insertShare(tx, row);
        record.entity = { type: 'Share', id: row.id, version: null };
        record.detail = { role: input.role, access: input.access, consentId, invited: !linkNow };
        let invitation: CreatedShare['invitation'] = null;
        if (linkNow) {
          await queueMail(tx, now, vault, {
            to: email,
            subject: 'A patient record was shared with you',
            text: `${actor.name} shared a patient record with you in Caretrail (as ${input.role}, ${input.access} access).\n\nSign in to see it: ${settings.publicUrl}/\n`,
            organizationId: patient.organization_id,
          });
        } else {
          const token = newToken('inv');
          const invitationExpires = new Date(
            now.getTime() + settings.invitationTtlHours * 3_600_000,
          ).toISOString();
          await insertInvitation(tx, {
            id: uuidv7(now.getTime()),
            token_hash: hashToken(token),
            email,
            share_id: row.id,
            created_by: actor.userId,
            created_at: at,
            expires_at: invitationExpires,
            used_at: null,
          });
          await queueMail(tx, now, vault, {
            to: email,
            subject: 'You are invited to Caretrail',
            text: `${actor.name} shared a patient record with you in Caretrail (as ${input.role}, ${input.access} access).\n\n${grantee ? 'Confirm it with this link and the password of your Caretrail account' : 'Set your password with this link'}; it works once, until ${invitationExpires}:\n${settings.publicUrl}/invitations#token=${SECRET_PLACEHOLDER}\n`,
            secret: token,
            organizationId: patient.organization_id,
          });
          invitation = { expiresAt: invitationExpires };
        }
        return { ...toShare(row, now), invitation };
      },
    ).finally(() => deps.onOutbox?.());
  }

  async function list(
    ctx: RequestContext,
    patientId: string,
    page: { limit: number; cursor?: string },
  ): Promise<Page<Share>> {
    const beforeId = idAfter(page.cursor);
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'share.list', patientId },
      async (tx, record) => {
        const now = clock.now();
        await accessPatient(tx, ctx, patientId, 'consents.read', record, now);
        const rows = await sharesOf(tx, patientId, { beforeId, limit: page.limit + 1 });
        const result = toPage(
          rows,
          page.limit,
          (r) => [r.id],
          (r) => toShare(r, now),
        );
        record.detail = { count: result.items.length };
        return result;
      },
    );
  }

  /** Revoking takes effect on the sharee's next request: access is looked up every time. */
  async function revoke(ctx: RequestContext, patientId: string, shareId: string): Promise<Share> {
    return audited(
      deps,
      ctx,
      {
        action: 'D',
        type: 'share.revoke',
        patientId,
        entity: { type: 'Share', id: shareId, version: null },
      },
      async (tx, record) => {
        const now = clock.now();
        const { actor } = await accessPatient(tx, ctx, patientId, 'shares.manage', record, now);
        const row = await findShare(tx, patientId, shareId);
        if (!row) throw notFound('Share');
        if (!(await revokeShareRow(tx, row.id, actor.userId, now.toISOString())))
          throw new AppError('conflict', 'This share was already revoked.');
        return toShare({ ...row, revoked_at: now.toISOString(), revoked_by: actor.userId }, now);
      },
    );
  }

  /**
   * Turns an invitation into an account (name and password), linking every share waiting for
   * that email. A used or expired link is 404. An email that meanwhile has an account keeps its
   * password: the shares are linked and the person signs in as before.
   */
  const invitationNotValid = () =>
    new AppError(
      'not_found',
      'This invitation link is not valid: it was used already or it expired. Ask for a new one.',
    );

  /**
   * Someone accepting an invitation for an email that already has an account proves they hold
   * it with its password (counted towards its sign-in lockout like a sign-in): the email of a
   * staff account was typed by an admin, possibly of another clinic, and is no proof by itself.
   */
  async function confirmAccountHolder(user: UserRow, password: string): Promise<void> {
    const now = clock.now();
    const accountKey = `account:${user.email}`;
    const lockedUntil = await db.write((tx) =>
      registerLoginAttempt(tx, accountKey, now, {
        maxAttempts: settings.loginMaxFailures,
        windowMs: settings.loginLockoutMinutes * 60_000,
      }),
    );
    if (lockedUntil)
      throw new AppError(
        'too_many_requests',
        'Too many wrong passwords for this account; try again later.',
        {
          retryAfterSeconds: Math.max(1, Math.ceil((lockedUntil.getTime() - now.getTime()) / 1000)),
        },
      );
    if (user.disabled === 1 || !(await verifyPassword(user.password_hash, password)))
      throw new AppError(
        'unauthenticated',
        'An account with this email exists already: enter its password to accept the invitation.',
      );
    await db.write((tx) => refundLoginAttempt(tx, accountKey));
  }

  /**
   * Turns an invitation into an account (name and password), linking every share waiting for
   * that email. A used or expired link is 404. An email that already has an account keeps it:
   * the acceptor gives its password, the shares are linked and the person signs in as before.
   */
  async function acceptInvitation(
    ctx: RequestContext,
    token: string,
    input: { name: string; password: string },
  ): Promise<User> {
    const name = input.name.trim();
    if (name === '') throw new AppError('invalid', 'Give your name.');
    const tokenHash = hashToken(token);
    const pending = await findUsableInvitation(db.read, tokenHash, clock.now().toISOString());
    const holder = pending ? await findUserByEmail(db.read, pending.email) : undefined;
    let passwordHash: string | null = null;
    if (holder) await confirmAccountHolder(holder, input.password);
    else if (pending) {
      // Hashing costs real CPU and memory: only for a link that can still be used.
      checkPasswordRule(input.password);
      passwordHash = await hashPassword(input.password);
    }
    return audited(deps, ctx, { action: 'C', type: 'invitation.accept' }, async (tx, record) => {
      const now = clock.now();
      const at = now.toISOString();
      const invitation = await claimInvitation(tx, tokenHash, at);
      if (!invitation) throw invitationNotValid();
      record.entity = { type: 'Invitation', id: invitation.id, version: null };
      // The event belongs to the shared patient, so the clinic finds it in its trail.
      const invitedTo = await tx
        .selectFrom('shares')
        .select('patient_id')
        .where('id', '=', invitation.share_id)
        .executeTakeFirst();
      record.patientId = invitedTo?.patient_id ?? null;
      // Two invitations to one email accepted at the same moment: one of them is a 409 (its
      // link stays unused) and works when opened again, finding the account. An account made
      // since the password was checked was not confirmed: the link stays unused too.
      const existing = await findUserByEmail(tx, invitation.email);
      if (existing && existing.id !== holder?.id)
        throw new AppError(
          'conflict',
          'An account with this email was created meanwhile; open the link again.',
        );
      // A link that was not usable before the checks above is not usable now either.
      if (!existing && passwordHash === null) throw invitationNotValid();
      const userId =
        existing?.id ??
        (
          await insertNewUser(tx, {
            organizationId: null,
            email: invitation.email,
            name,
            role: null,
            passwordHash: passwordHash ?? '!',
            now: at,
          })
        ).id;
      const linked = await linkSharesToUser(tx, invitation.email, userId);
      record.actorUserId = userId;
      record.detail = { accountCreated: !existing, sharesLinked: linked };
      const user = await findUserByEmail(tx, invitation.email);
      if (!user) throw notFound('User');
      return toUser(user);
    });
  }

  async function recordConsent(
    ctx: RequestContext,
    patientId: string,
    input: ConsentInput,
  ): Promise<Consent> {
    const email = normalizeEmail(input.granteeEmail);
    const purpose = input.purpose.trim();
    if (purpose === '') throw new AppError('invalid', 'Say what the consent is for (purpose).');
    const now = clock.now();
    const expiresAt = futureTime(input.expiresAt, now, 'expiresAt');
    return audited(
      deps,
      ctx,
      { action: 'C', type: 'consent.create', patientId },
      async (tx, record) => {
        const { actor, access, patient } = await accessPatient(
          tx,
          ctx,
          patientId,
          'consents.record',
          record,
          now,
        );
        const byOwner = access.via === 'share' && access.shareRole === 'owner';
        let ownerId: string | null = null;
        if (byOwner) {
          if (input.method !== 'portal')
            throw new AppError(
              'invalid',
              'Consent you give yourself is recorded as method "portal".',
            );
        } else {
          if (input.method === 'portal')
            throw new AppError(
              'invalid',
              'Only the owner gives consent in the portal; staff record "in_person" or "signed_form".',
            );
          const owners = await ownersOf(tx, [patientId]);
          if (input.ownerId === undefined || !owners.some((o) => o.id === input.ownerId))
            throw new AppError(
              'invalid',
              'Name the owner on record who gave consent (ownerId, one of the patient’s owners).',
            );
          ownerId = input.ownerId;
        }
        let documentId: string | null = null;
        if (input.method === 'signed_form') {
          const form =
            input.documentId === undefined ? undefined : await findDocument(tx, input.documentId);
          if (!form || form.patient_id !== patientId || form.status !== 'active')
            throw new AppError(
              'invalid',
              'A signed form consent needs documentId: the uploaded form, a document of this same patient.',
            );
          documentId = form.id;
        } else if (input.documentId !== undefined) {
          throw new AppError('invalid', 'documentId goes with method "signed_form" only.');
        }
        const at = now.toISOString();
        const row: ConsentRow = {
          id: uuidv7(now.getTime()),
          organization_id: patient.organization_id,
          patient_id: patientId,
          grantee_email: email,
          purpose,
          scope: input.scope,
          method: input.method,
          consented_by_owner_id: ownerId,
          consented_by_user_id: byOwner ? actor.userId : null,
          document_id: documentId,
          recorded_by: actor.userId,
          created_at: at,
          expires_at: expiresAt,
          revoked_at: null,
          revoked_by: null,
          version: 1,
        };
        await insertConsent(tx, row);
        await recordConsentVersion(tx, row, 'created', actor.userId, at);
        record.entity = { type: 'Consent', id: row.id, version: 1 };
        record.detail = { scope: row.scope, method: row.method };
        return toConsent(row, now);
      },
    );
  }

  async function listConsents(
    ctx: RequestContext,
    patientId: string,
    page: { limit: number; cursor?: string },
  ): Promise<Page<Consent>> {
    const beforeId = idAfter(page.cursor);
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'consent.list', patientId },
      async (tx, record) => {
        const now = clock.now();
        await accessPatient(tx, ctx, patientId, 'consents.read', record, now);
        const rows = await consentsOf(tx, patientId, { beforeId, limit: page.limit + 1 });
        const result = toPage(
          rows,
          page.limit,
          (r) => [r.id],
          (r) => toConsent(r, now),
        );
        record.detail = { count: result.items.length };
        return result;
      },
    );
  }

  async function getConsent(
    ctx: RequestContext,
    id: string,
  ): Promise<
    Consent & { history: { version: number; change: string; actorId: string; at: string }[] }
  > {
    return audited(
      deps,
      ctx,
      { action: 'R', type: 'consent.read', entity: { type: 'Consent', id, version: null } },
      async (tx, record) => {
        const now = clock.now();
        const row = await findConsent(tx, id);
        if (!row) throw notFound('Consent');
        await accessUnlisted(tx, ctx, row.patient_id, 'consents.read', record, now, 'Consent');
        record.entity = { type: 'Consent', id, version: row.version };
        const history = (await consentVersionsOf(tx, id)).map((v) => ({
          version: v.version,
          change: v.change,
          actorId: v.actor_id,
          at: v.at,
        }));
        return { ...toConsent(row, now), history };
      },
    );
  }

  /** Withdraws a consent (the owner in the portal, or staff on their behalf); its shares end. */
  async function revokeConsent(ctx: RequestContext, id: string): Promise<Consent> {
    return audited(
      deps,
      ctx,
      { action: 'U', type: 'consent.revoke', entity: { type: 'Consent', id, version: null } },
      async (tx, record) => {
        const now = clock.now();
        const row = await findConsent(tx, id);
        if (!row) throw notFound('Consent');
        const { actor } = await accessUnlisted(
          tx,
          ctx,
          row.patient_id,
          'consents.record',
          record,
          now,
          'Consent',
        );
        if (row.revoked_at !== null)
          throw new AppError('conflict', 'This consent was already withdrawn.');
        const at = now.toISOString();
        if (
          !(await updateConsent(tx, id, row.version, { revoked_at: at, revoked_by: actor.userId }))
        )
          throw new AppError('conflict', 'This consent changed meanwhile; reload and try again.');
        const revoked: ConsentRow = {
          ...row,
          revoked_at: at,
          revoked_by: actor.userId,
          version: row.version + 1,
        };
        await recordConsentVersion(tx, revoked, 'revoked', actor.userId, at);
        const ended = await revokeSharesOfConsent(tx, id, actor.userId, at);
        record.entity = { type: 'Consent', id, version: revoked.version };
        record.detail = { sharesEnded: ended };
        return toConsent(revoked, now);
      },
    );
  }

  /**
   * Break-glass: a clinician opens a patient they have no access to, stating why. Access is
   * read-only, lasts a limited time, marks every audit event it causes, raises an alert and
   * mails the admins of the patient's organization.
   */
  async function breakGlass(
    ctx: RequestContext,
    patientId: string,
    input: { reason: string },
  ): Promise<BreakGlassGrant> {
    const reason = input.reason.trim();
    if (reason.length < 10)
      throw new AppError(
        'invalid',
        'State the reason for emergency access (at least 10 characters).',
      );
    return audited(
      deps,
      ctx,
      { action: 'E', type: 'break-glass.open', patientId, purpose: 'BTG' },
      async (tx, record) => {
        const actor = requirePermission(ctx, 'break_glass');
        const now = clock.now();
        // Locked so that parallel requests open one grant, not several (PostgreSQL).
        const patient = await findPatientById(tx, patientId, { forUpdate: true });
        if (!patient) throw notFound('Patient');
        const current = await accessOf(tx, actor, patient, now);
        if (current)
          throw new AppError(
            'conflict',
            current.via === 'break_glass'
              ? `Your emergency access to this patient is open until ${current.expiresAt}.`
              : 'You already have access to this patient; break-glass is not needed.',
          );
        const at = now.toISOString();
        const grant = {
          id: uuidv7(now.getTime()),
          organization_id: patient.organization_id,
          patient_id: patientId,
          user_id: actor.userId,
          reason,
          created_at: at,
          expires_at: new Date(now.getTime() + settings.breakGlassMinutes * 60_000).toISOString(),
        };
        await insertBreakGlass(tx, grant);
        record.entity = { type: 'BreakGlass', id: grant.id, version: null };
        record.breakGlassId = grant.id;
        record.detail = { expiresAt: grant.expires_at };
        await tx
          .insertInto('audit_alerts')
          .values({
            id: uuidv7(now.getTime()),
            organization_id: patient.organization_id,
            user_id: actor.userId,
            rule: 'break_glass',
            // The stated reason is free text: it goes to the alert the admins review, not into
            // the hash-chained events (which are exported and kept for years).
            detail: JSON.stringify({
              grantId: grant.id,
              patientId,
              actorOrganizationId: actor.organizationId,
              expiresAt: grant.expires_at,
              reason,
            }),
            created_at: at,
          })
          .execute();
        await mailAdmins(tx, now, vault, patient.organization_id, {
          subject: 'Break-glass access to a patient record',
          text: `${actor.name} (${actor.email}) opened a patient record of your organization with break-glass access at ${at}, until ${grant.expires_at}.\n\nThe reason they gave is in the break-glass alert, and every access is in the audit trail (events marked BTG, grant ${grant.id}): ${settings.publicUrl}/\n`,
        });
        return {
          id: grant.id,
          patientId,
          expiresAt: grant.expires_at,
          access: summarize({ via: 'break_glass', grantId: grant.id, expiresAt: grant.expires_at }),
        };
      },
    ).finally(() => deps.onOutbox?.());
  }

  return {
    create,
    list,
    revoke,
    acceptInvitation,
    recordConsent,
    listConsents,
    getConsent,
    revokeConsent,
    breakGlass,
  };
}

export type SharingService = ReturnType<typeof createSharingService>;
