// Audit export formats: CSV (documented columns, spreadsheet-formula safe) and FHIR R4
// AuditEvent resources as NDJSON.
import type { AuditOutcome, ChainedEvent } from './audit.js';

export const CSV_COLUMNS = [
  'seq',
  'id',
  'occurred_at',
  'action',
  'type',
  'outcome',
  'actor_user_id',
  'actor_role',
  'actor_organization_id',
  'actor_ip',
  'actor_user_agent',
  'patient_id',
  'entity_type',
  'entity_id',
  'entity_version',
  'purpose',
  'request_id',
  'detail',
  'event_hash',
  'chain_hash',
] as const;

const NEEDS_CARE = /[",\r\n]|^[=+\-@\s]|\s$/;

/**
 * One CSV cell (RFC 4180). A value a spreadsheet would run as a formula (starting with =, +, -,
 * @, tab or carriage return) is prefixed with a single quote, as OWASP recommends.
 */
export function csvCell(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  // Most cells (ids, times, hashes) need neither: no formula start, nothing to quote, no
  // surrounding whitespace (\s is exactly what trim() removes).
  if (!NEEDS_CARE.test(text)) return text;
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`;
}

export function csvRow({ event, hash, chain }: ChainedEvent): string {
  const cells: (string | number | null)[] = [
    event.seq,
    event.id,
    event.occurredAt,
    event.action,
    event.type,
    event.outcome,
    event.actor.userId,
    event.actor.role,
    event.actor.organizationId,
    event.actor.ip,
    event.actor.userAgent,
    event.patientId,
    event.entity?.type ?? null,
    event.entity?.id ?? null,
    event.entity?.version ?? null,
    event.purpose,
    event.requestId,
    event.detail === null ? null : JSON.stringify(event.detail),
    hash,
    chain,
  ];
  return `${cells.map(csvCell).join(',')}\r\n`;
}

const FHIR_OUTCOME: Record<AuditOutcome, string> = {
  success: '0',
  failure: '4',
  denied: '4',
  error: '8',
};

/** A FHIR R4 AuditEvent for one event (IHE BALP style: REST operation, agent, patient entity). */
export function fhirAuditEvent({ event, hash, chain }: ChainedEvent): Record<string, unknown> {
  const entities: Record<string, unknown>[] = [];
  if (event.patientId !== null) {
    entities.push({
      what: { reference: `Patient/${event.patientId}` },
      type: {
        system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
        code: '1',
        display: 'Person',
      },
      role: {
        system: 'http://terminology.hl7.org/CodeSystem/object-role',
        code: '1',
        display: 'Patient',
      },
    });
  }
  if (event.entity?.id) {
    entities.push({
      what: {
        reference: `${event.entity.type}/${event.entity.id}${event.entity.version !== null ? `/_history/${event.entity.version}` : ''}`,
      },
      type: {
        system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
        code: '2',
        display: 'System Object',
      },
    });
  }
  return {
    resourceType: 'AuditEvent',
    id: event.id,
    type: {
      system: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
      code: 'rest',
      display: 'RESTful Operation',
    },
    subtype: [{ system: 'urn:caretrail:audit-event-type', code: event.type }],
    action: event.action,
    recorded: event.occurredAt,
    outcome: FHIR_OUTCOME[event.outcome],
    ...(event.purpose !== null ? { purposeOfEvent: [{ text: event.purpose }] } : {}),
    agent: [
      {
        ...(event.actor.userId !== null
          ? { who: { identifier: { system: 'urn:caretrail:user', value: event.actor.userId } } }
          : {}),
        ...(event.actor.role !== null ? { role: [{ text: event.actor.role }] } : {}),
        requestor: true,
        ...(event.actor.ip !== null ? { network: { address: event.actor.ip, type: '2' } } : {}),
      },
    ],
    source: {
      observer: { display: 'Caretrail' },
      type: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/security-source-type',
          code: '4',
          display: 'Application Server',
        },
      ],
    },
    ...(entities.length > 0 ? { entity: entities } : {}),
    extension: [
      { url: 'urn:caretrail:audit:seq', valueInteger: event.seq },
      { url: 'urn:caretrail:audit:event-hash', valueString: hash },
      { url: 'urn:caretrail:audit:chain-hash', valueString: chain },
      ...(event.requestId !== null
        ? [{ url: 'urn:caretrail:audit:request-id', valueString: event.requestId }]
        : []),
      ...(event.actor.organizationId !== null
        ? [{ url: 'urn:caretrail:audit:organization', valueString: event.actor.organizationId }]
        : []),
    ],
  };
}
