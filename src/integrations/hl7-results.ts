// From a parsed ORU^R01 to a device result, and the ACK that answers the sender.
import { createHash } from 'node:crypto';
import { MAX_OBSERVATION_TEXT, type ResultFlag, type ResultObservation } from '../domain/result.js';
import type { Demographics, ResultInput } from '../services/result.service.js';
import { Hl7Rejection, type AbnormalFlag, type OruMessage } from './hl7-oru.js';

const FLAGS: Record<AbnormalFlag, ResultFlag> = {
  L: 'L',
  H: 'H',
  LL: 'LL',
  HH: 'HH',
  A: 'A',
  AA: 'A',
  '<': 'A',
  '>': 'A',
};

const EXTENSIONS: Record<string, string> = {
  'application/pdf': '.pdf',
  'image/jpeg': '.jpg',
  'image/png': '.png',
  'text/plain': '.txt',
  'text/html': '.html',
};

/** PID identifiers as our systems: microchips by type MC or a MICROCHIP authority, MR as MRN. */
function identifierOf(message: OruMessage): { system: string; value: string } | undefined {
  const ids = message.patient.identifiers;
  const chip = ids.find(
    (i) => i.typeCode?.toUpperCase() === 'MC' || /micro\s*chip/i.test(i.authority ?? ''),
  );
  if (chip) return { system: 'microchip', value: chip.value };
  const mrn = ids.find((i) => i.typeCode?.toUpperCase() === 'MR');
  if (mrn) return { system: 'mrn', value: mrn.value };
  const first = ids[0];
  return first ? { system: 'external', value: first.value } : undefined;
}

/**
 * Name, species, owner surname and birth date for the fallback match. Veterinary senders put the
 * owner's surname in PID-5.1 and the animal's name in PID-5.2 ("SMITH^REX"); an NK1 segment, when
 * present, names the owner instead (then PID-5.1 is the animal's name if 5.2 is empty).
 */
function demographicsOf(message: OruMessage): Demographics {
  const { familyName, givenName, ownerFamilyName, species, birthDate } = message.patient;
  const ownerSurname = ownerFamilyName ?? (givenName !== null ? familyName : null);
  const name = givenName ?? familyName;
  return {
    ...(name !== null ? { name } : {}),
    ...(species !== null ? { species } : {}),
    ...(ownerSurname !== null ? { ownerSurname } : {}),
    ...(birthDate !== null ? { birthDate } : {}),
  };
}

/**
 * One message is one result: its result id is the filler order number of the first order (so a
 * corrected message is a new version of it), else the message control id.
 */
export function resultInputOf(message: OruMessage): ResultInput {
  const several = message.orders.length > 1;
  const observations: ResultObservation[] = message.orders.flatMap((order) =>
    order.observations.map((o) => ({
      code: several ? `${order.code}.${o.code}` : o.code,
      ...(o.display !== null ? { display: o.display } : {}),
      value:
        o.value === null
          ? ''
          : o.comparator !== null && typeof o.value === 'number'
            ? `${o.comparator}${o.value}`
            : o.value,
      ...(o.unit !== null ? { unit: o.unit } : {}),
      ...(o.referenceRange !== null ? { referenceRange: o.referenceRange } : {}),
      ...(o.flag !== null ? { flag: FLAGS[o.flag] } : {}),
    })),
  );
  if (observations.length === 0)
    throw new Hl7Rejection('AE', '101', 'The message carries no observations to store.');
  // The JSON API's limit too: a longer value could not be listed (found by the fuzzer: the
  // unmatched queue answered 500 once such a message had been stored).
  const tooLong = observations.find(
    (o) => typeof o.value === 'string' && o.value.length > MAX_OBSERVATION_TEXT,
  );
  if (tooLong)
    throw new Hl7Rejection(
      'AE',
      '102',
      `OBX-5 of ${tooLong.code.slice(0, 40)} is longer than ${MAX_OBSERVATION_TEXT} characters.`,
    );
  const first = message.orders[0];
  const found = identifierOf(message);
  const identifier = found ? { identifier: found } : {};
  return {
    patient: { ...identifier, ...demographicsOf(message) },
    source: message.sendingApplication || 'hl7',
    kind: 'lab',
    resultId: first?.fillerOrderId ?? first?.placerOrderId ?? message.controlId,
    observations,
    // ED values (PDF reports and the like) become documents on the chart.
    attachments: message.attachments.map((a, i) => ({
      filename: `${a.code || 'attachment'}-${i + 1}${EXTENSIONS[a.contentType] ?? ''}`,
      data: a.data,
    })),
  };
}

/** The Idempotency-Key of a message: its control id per sender (a re-send is answered again). */
export function messageKey(message: OruMessage): string {
  const id = `${message.sendingApplication}|${message.sendingFacility}|${message.controlId}`;
  return `hl7-${createHash('sha256').update(id).digest('hex').slice(0, 48)}`;
}

const escapeText = (text: string) =>
  text
    .replace(/\\/g, '\\E\\')
    .replace(/\|/g, '\\F\\')
    .replace(/\^/g, '\\S\\')
    .replace(/&/g, '\\T\\')
    .replace(/~/g, '\\R\\')
    .replace(/[\r\n]+/g, ' ');

function mshFields(text: string): string[] {
  // eslint-disable-next-line no-control-regex -- an MLLP start byte (VT) may precede MSH
  const header = text.replace(/^[\s\u000b]+/, '').split(/\r\n|\r|\n/)[0] ?? '';
  return header.startsWith('MSH|') ? header.split('|') : [];
}

/**
 * The ACK for a message, built from its MSH as far as it can be read (an unreadable message still
 * gets an AR): MSA with the code and the message's control id, and ERR with the reason.
 */
export function ackFor(
  text: string,
  code: 'AA' | 'AE' | 'AR',
  reason: string | null,
  errorCode: string | null,
  now: Date,
): string {
  const msh = mshFields(text);
  const controlId = msh[9] ?? '';
  const version = msh[11] && /^2\.\d(\.\d)?$/.test(msh[11]) ? msh[11] : '2.5.1';
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const ackId = createHash('sha256')
    .update(`${controlId}|${stamp}|${code}`)
    .digest('hex')
    .slice(0, 20);
  const segments = [
    `MSH|^~\\&|CARETRAIL|CARETRAIL|${msh[2] ?? ''}|${msh[3] ?? ''}|${stamp}||ACK^R01^ACK|${ackId}|P|${version}`,
    `MSA|${code}|${controlId}${reason !== null ? `|${escapeText(reason).slice(0, 200)}` : ''}`,
  ];
  if (code !== 'AA' && reason !== null)
    segments.push(`ERR||||E|${errorCode ?? '207'}^^HL70357|||${escapeText(reason).slice(0, 200)}`);
  return `${segments.join('\r')}\r`;
}
