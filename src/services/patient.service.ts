// Patients and owners: register, read, search, update with optimistic concurrency.
import {
  summarize,
  type AccessSummary,
  type PatientAccess,
  type ShareAccess,
  type ShareRole,
} from '../domain/access.js';
import { findPatientById, liveSharesOf } from '../store/access.store.js';
import { revokeOwnerSharesOffRecord } from '../store/sharing.store.js';
import { AppError, notFound, staleVersion } from '../domain/errors.js';
import { uuidv7 } from '../domain/ids.js';
import {
  IDENTIFIER_SYSTEMS,
  isIdentifierSystem,
  normalizeIdentifier,
  searchKey,
  type IdentifierSystem,
  type Sex,
  type Species,
} from '../domain/patient.js';
import { isUniqueViolation } from '../store/dialect.js';
import {
  findIdentifierHolders,
  findOwners,
  findPatient,
  identifiersOf,
  insertOwner,
  insertPatient,
  ownersOf,
  replaceIdentifiers,
  replacePatientOwners,
  searchPatients,
  updatePatientIfVersion,
} from '../store/patient.store.js';
import type { PatientRow, Tx } from '../store/tables.js';
import { audited, auditedView } from './audit.service.js';
import { accessPatient } from './access.js';
import { requireActor, requireStaff, type RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import { decodeCursor, toPage, type Page, idAfter } from './pagination.js';

export interface OwnerInput {
  id?: string;
  name?: string;
  email?: string | null;
  phone?: string | null;
}

export interface PatientInput {
  name: string;
  species: Species;
  breed?: string | null;
  sex?: Sex | null;
  birthDate?: string | null;
  alerts?: string[];
  identifiers?: { system: IdentifierSystem; value: string }[];
  owners?: OwnerInput[];
}

export interface Owner {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
}

export interface Patient {
  id: string;
  organizationId: string;
  name: string;
  species: Species;
  breed: string | null;
  sex: Sex | null;
  birthDate: string | null;
  /** Warnings for everyone who opens the chart, e.g. "Bites — muzzle". */
  alerts: string[];
  identifiers: { system: IdentifierSystem; value: string }[];
  owners: Owner[];
  version: number;
  createdAt: string;
  updatedAt: string;
  access: AccessSummary;
}

function checkBirthDate(value: string | null | undefined, today: Date): string | null {
  if (value === undefined || value === null) return null;
  const date = new Date(`${value}T00:00:00Z`);
  if (Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== value) {
    throw new AppError('invalid', 'birthDate must be a real calendar date (YYYY-MM-DD).');
  }
  if (date.getTime() > today.getTime())
    throw new AppError('invalid', 'birthDate cannot be in the future.');
  return value;
}

function normalizeIdentifiers(
  list: { system: IdentifierSystem; value: string }[],
): { system: IdentifierSystem; value: string }[] {
  const seen = new Set<string>();
  return list.map((i) => {
    const value = normalizeIdentifier(i.system, i.value);
    const key = `${i.system}|${value}`;
    if (seen.has(key)) throw new AppError('invalid', `The ${i.system} identifier is listed twice.`);
    seen.add(key);
    return { system: i.system, value };
  });
}

/** Alerts as stored: trimmed, blank ones dropped, each once, as a JSON array. */
function alertsJson(alerts: string[]): string {
  const kept: string[] = [];
  for (const alert of alerts) {
    const text = alert.trim();
    if (text !== '' && !kept.some((k) => k.toLowerCase() === text.toLowerCase())) kept.push(text);
  }
  return JSON.stringify(kept);
}

/**
 * One owner as the caller sees them. Owners' email and phone are for the clinic (staff, referral
 * clinicians, break-glass readers): trainers, walkers and carers see only the name, and an owner
 * sees their own contact details but not a co-owner's. Owner shares are granted to an owner on
 * record by email, so the signed-in owner is the one whose email is theirs.
 */
function ownerView(
  owner: { id: string; name: string; email: string | null; phone: string | null },
  access: PatientAccess,
  viewerEmail: string,
): Owner {
  const full = { id: owner.id, name: owner.name, email: owner.email, phone: owner.phone };
  if (access.via !== 'share' || access.shareRole === 'clinician') return full;
  const ownSelf =
    access.shareRole === 'owner' &&
    owner.email !== null &&
    owner.email.toLowerCase() === viewerEmail.toLowerCase();
  return ownSelf ? full : { id: owner.id, name: owner.name, email: null, phone: null };
}

function checkOwnerInput(o: OwnerInput): void {
  if (o.id === undefined && (o.name === undefined || o.name.trim() === '')) {
    throw new AppError('invalid', 'Each owner needs either the id of an existing owner or a name.');
  }
}

export function createPatientService(deps: ServiceDeps) {
  const { clock } = deps;

  /**
   * Patients as answered; `access` is how the caller reaches them (one value for all rows) and
   * `viewerEmail` who they are, which decides whose contact details they see (`ownerView`).
   */
  async function assemble(
    tx: Tx,
    rows: PatientRow[],
    access: PatientAccess,
    viewerEmail: string,
  ): Promise<Patient[]> {
    const ids = rows.map((r) => r.id);
    const [identifiers, owners] = await Promise.all([identifiersOf(tx, ids), ownersOf(tx, ids)]);
    return rows.map((row) => ({
      id: row.id,
      organizationId: row.organization_id,
      name: row.name,
      species: row.species as Species,
      breed: row.breed,
      sex: row.sex as Sex | null,
      birthDate: row.birth_date,
      alerts: JSON.parse(row.alerts) as string[],
      identifiers: identifiers
        .filter((i) => i.patient_id === row.id)
        .map((i) => ({ system: i.system as IdentifierSystem, value: i.value })),
      owners: owners
        .filter((o) => o.patient_id === row.id)
        .map((o) => ownerView(o, access, viewerEmail)),
      version: row.version,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      access: summarize(access),
    }));
  }

  async function assembleOne(
    tx: Tx,
    row: PatientRow,
    access: PatientAccess,
    viewerEmail: string,
  ): Promise<Patient> {
    const [patient] = await assemble(tx, [row], access, viewerEmail);
    if (!patient) throw notFound('Patient');
    return patient;
  }

  /** Replaces a patient's identifiers; one taken meanwhile (a concurrent request) is a 409. */
  async function saveIdentifiers(
    tx: Tx,
    patient: { id: string; organization_id: string },
    identifiers: { system: IdentifierSystem; value: string }[],
  ): Promise<void> {
    try {
      await replaceIdentifiers(
        tx,
        patient,
        identifiers.map((i) => ({ ...i, id: uuidv7() })),
      );
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new AppError('conflict', 'Another patient already has one of these identifiers.');
      }
      throw err;
    }
  }

  async function checkIdentifiersFree(
    tx: Tx,
    organizationId: string,
    identifiers: { system: string; value: string }[],
    patientId: string | null,
  ): Promise<void> {
    const taken = await findIdentifierHolders(tx, organizationId, identifiers, patientId);
    const first = taken[0];
    if (first)
      throw new AppError(
        'conflict',
        `Another patient already has this ${first.system} identifier.`,
      );
  }

  /** Resolves owner inputs to owner ids: existing ones by id (same organization), new ones created. */
  async function resolveOwners(
    tx: Tx,
    organizationId: string,
    inputs: OwnerInput[],
    now: string,
  ): Promise<string[]> {
    const existingIds = inputs.flatMap((o) => (o.id !== undefined ? [o.id] : []));
    const found = await findOwners(tx, organizationId, existingIds);
    if (found.length !== new Set(existingIds).size) throw notFound('Owner');
    const ids: string[] = [];
    for (const input of inputs) {
      if (input.id !== undefined) {
        if (!ids.includes(input.id)) ids.push(input.id);
        continue;
      }
      const name = (input.name ?? '').trim();
      const id = uuidv7();
      await insertOwner(tx, {
        id,
        organization_id: organizationId,
        name,
        name_search: searchKey(name),
        email: input.email?.trim() || null,
        phone: input.phone?.trim() || null,
        created_at: now,
        updated_at: now,
      });
      ids.push(id);
    }
    return ids;
  }

  async function create(ctx: RequestContext, input: PatientInput): Promise<Patient> {
    const name = input.name.trim();
    if (name === '') throw new AppError('invalid', 'The patient needs a name.');
    const birthDate = checkBirthDate(input.birthDate, clock.now());
    const identifiers = normalizeIdentifiers(input.identifiers ?? []);
    (input.owners ?? []).forEach(checkOwnerInput);
    return audited(
      deps,
      ctx,
      { action: 'C', type: 'patient.create', permission: 'patients.write' },
      async (tx, record) => {
        const actor = requireStaff(ctx);
        const now = clock.now().toISOString();
        const id = uuidv7();
        record.patientId = id;
        record.entity = { type: 'Patient', id, version: 1 };
        await checkIdentifiersFree(tx, actor.organizationId, identifiers, null);
        await insertPatient(tx, {
          id,
          organization_id: actor.organizationId,
          name,
          name_search: searchKey(name),
          species: input.species,
          breed: input.breed?.trim() || null,
          sex: input.sex ?? null,
          birth_date: birthDate,
          alerts: alertsJson(input.alerts ?? []),
          version: 1,
          created_by: actor.userId,
          created_at: now,
          updated_at: now,
        });
        await saveIdentifiers(tx, { id, organization_id: actor.organizationId }, identifiers);
        await replacePatientOwners(
          tx,
          id,
          await resolveOwners(tx, actor.organizationId, input.owners ?? [], now),
        );
        const row = await findPatient(tx, actor.organizationId, id);
        if (!row) throw notFound('Patient');
        return assembleOne(tx, row, { via: 'organization', role: actor.role }, actor.email);
      },
    );
  }

  async function get(ctx: RequestContext, id: string): Promise<Patient> {
    return auditedView(
      deps,
      ctx,
      {
        action: 'R',
        type: 'patient.read',
        patientId: id,
        entity: { type: 'Patient', id, version: null },
      },
      async (tx, record) => {
        const {
          actor,
          patient: row,
          access,
        } = await accessPatient(tx, ctx, id, 'patient.read', record, clock.now());
        record.entity = { type: 'Patient', id, version: row.version };
        return assembleOne(tx, row, access, actor.email);
      },
    );
  }

  async function search(
    ctx: RequestContext,
    query: { q?: string; identifier?: string; limit: number; cursor?: string },
  ): Promise<Page<Patient>> {
    // The cursor names only the last patient shown (its name would sit in proxies' URL logs);
    // where the page goes on is read from that patient's row.
    const afterId = query.cursor === undefined ? undefined : decodeCursor(query.cursor, 1)[0];
    let identifier: { system: string; value: string } | undefined;
    if (query.identifier !== undefined) {
      const bar = query.identifier.indexOf('|');
      const system = query.identifier.slice(0, bar);
      if (bar <= 0)
        throw new AppError(
          'invalid',
          'identifier must look like system|value, e.g. microchip|985112345678901.',
        );
      if (!isIdentifierSystem(system)) {
        throw new AppError(
          'invalid',
          `Unknown identifier system; use one of: ${IDENTIFIER_SYSTEMS.join(', ')}.`,
        );
      }
      identifier = { system, value: normalizeIdentifier(system, query.identifier.slice(bar + 1)) };
    }
    const text = query.q === undefined ? undefined : searchKey(query.q);
    const raw = query.q?.trim() ?? '';
    const identifierValues =
      raw === '' ? [] : [...new Set([raw, raw.replace(/[\s-]/g, '').toUpperCase()])];
    return auditedView(
      deps,
      ctx,
      { action: 'E', type: 'patient.search', permission: 'patients.read' },
      async (tx, record) => {
        const actor = requireStaff(ctx);
        let after: { nameSearch: string; id: string } | undefined;
        if (afterId !== undefined) {
          const last = await findPatient(tx, actor.organizationId, afterId);
          if (!last)
            throw new AppError(
              'invalid',
              'The cursor is not valid; start again from the first page.',
            );
          after = { nameSearch: last.name_search, id: last.id };
        }
        const rows = await searchPatients(tx, {
          organizationId: actor.organizationId,
          ...(text !== undefined && text !== '' ? { text, identifierValues } : {}),
          ...(identifier !== undefined ? { identifier } : {}),
          ...(after !== undefined ? { after } : {}),
          limit: query.limit + 1,
        });
        const page = toPage(
          rows,
          query.limit,
          (r) => [r.id],
          (r) => r,
        );
        // Which patients were disclosed, never the search terms (they are patient data).
        record.detail = { count: page.items.length, patientIds: page.items.map((r) => r.id) };
        return {
          items: await assemble(
            tx,
            page.items,
            { via: 'organization', role: actor.role },
            actor.email,
          ),
          nextCursor: page.nextCursor,
        };
      },
    );
  }

  async function update(
    ctx: RequestContext,
    id: string,
    expectedVersion: number,
    changes: Partial<PatientInput>,
  ): Promise<Patient> {
    const name = changes.name?.trim();
    if (name === '') throw new AppError('invalid', 'The patient needs a name.');
    const birthDate =
      changes.birthDate === undefined ? undefined : checkBirthDate(changes.birthDate, clock.now());
    const identifiers =
      changes.identifiers === undefined ? undefined : normalizeIdentifiers(changes.identifiers);
    changes.owners?.forEach(checkOwnerInput);
    return audited(
      deps,
      ctx,
      {
        action: 'U',
        type: 'patient.update',
        patientId: id,
        entity: { type: 'Patient', id, version: null },
      },
      async (tx, record) => {
        const { patient: row, access } = await accessPatient(
          tx,
          ctx,
          id,
          'patient.write',
          record,
          clock.now(),
        );
        // Only the patient's own organization may change it (allowed above), so this is staff.
        const actor = requireStaff(ctx);
        if (row.version !== expectedVersion) {
          throw staleVersion('patient', row.version);
        }
        const now = clock.now().toISOString();
        const updated = await updatePatientIfVersion(tx, id, expectedVersion, {
          ...(name !== undefined ? { name, name_search: searchKey(name) } : {}),
          ...(changes.species !== undefined ? { species: changes.species } : {}),
          ...(changes.breed !== undefined ? { breed: changes.breed?.trim() || null } : {}),
          ...(changes.sex !== undefined ? { sex: changes.sex } : {}),
          ...(birthDate !== undefined ? { birth_date: birthDate } : {}),
          ...(changes.alerts !== undefined ? { alerts: alertsJson(changes.alerts) } : {}),
          updated_at: now,
        });
        if (!updated) throw staleVersion('patient');
        if (identifiers !== undefined) {
          await checkIdentifiersFree(tx, actor.organizationId, identifiers, id);
          await saveIdentifiers(tx, row, identifiers);
        }
        let ownerSharesEnded = 0;
        if (changes.owners !== undefined) {
          await replacePatientOwners(
            tx,
            id,
            await resolveOwners(tx, actor.organizationId, changes.owners, now),
          );
          // Someone no longer an owner on record loses owner access now.
          ownerSharesEnded = await revokeOwnerSharesOffRecord(tx, id, actor.userId, now);
        }
        record.entity = { type: 'Patient', id, version: expectedVersion + 1 };
        record.detail = {
          fields: Object.keys(changes).sort(),
          ...(ownerSharesEnded > 0 ? { ownerSharesEnded } : {}),
        };
        const after = await findPatient(tx, actor.organizationId, id);
        if (!after) throw notFound('Patient');
        return assembleOne(tx, after, access, actor.email);
      },
    );
  }

  /**
   * The portal's "my animals" (and any sharee's list): patients shared with the caller through
   * a share in force, newest share first, each with the caller's access.
   */
  async function listShared(
    ctx: RequestContext,
    page: { limit: number; cursor?: string },
  ): Promise<Page<Patient>> {
    const beforeId = idAfter(page.cursor);
    return audited(deps, ctx, { action: 'E', type: 'patient.list-shared' }, async (tx, record) => {
      const actor = requireActor(ctx);
      const now = clock.now();
      const shares = await liveSharesOf(tx, actor.userId, now.toISOString(), {
        beforeId,
        limit: page.limit + 1,
      });
      const result = toPage(
        shares,
        page.limit,
        (r) => [r.id],
        (r) => r,
      );
      const items: Patient[] = [];
      for (const share of result.items) {
        const row = await findPatientById(tx, share.patient_id);
        if (!row) continue;
        items.push(
          await assembleOne(
            tx,
            row,
            {
              via: 'share',
              shareId: share.id,
              shareRole: share.role as ShareRole,
              access: share.access as ShareAccess,
              expiresAt: share.expires_at,
            },
            actor.email,
          ),
        );
      }
      record.detail = { count: items.length, patientIds: items.map((p) => p.id) };
      return { items, nextCursor: result.nextCursor };
    });
  }

  return { create, get, search, update, listShared };
}

export type PatientService = ReturnType<typeof createPatientService>;
