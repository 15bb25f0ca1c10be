// HL7 v2 ORU^R01 (versions 2.3 to 2.5.1) into one result message: who it is about, which
// orders, their observations (NM, ST, TX, FT, CE/CWE, SN, ED) with units, reference ranges,
// abnormal flags and result status, and their notes. @medplum/core parses the wire format; the
// mapping is ours. A message we cannot read is a rejection with the ACK code it deserves.
import { Hl7Field, Hl7Message, type Hl7Segment } from '@medplum/core';

export const SUPPORTED_VERSIONS = ['2.3', '2.3.1', '2.4', '2.5', '2.5.1'] as const;

/** Abnormal flags (HL7 table 0078) that the chart highlights; N is normal. */
export const ABNORMAL_FLAGS = ['L', 'H', 'LL', 'HH', 'A', 'AA', '<', '>'] as const;
export type AbnormalFlag = (typeof ABNORMAL_FLAGS)[number];

/** OBX-11 (HL7 table 0085), as far as a chart cares. */
export type ObservationStatus = 'final' | 'corrected' | 'preliminary' | 'cancelled' | 'other';

export interface Observation {
  /** OBX-4: tells apart observations with the same code in one order. */
  subId: string | null;
  code: string;
  display: string | null;
  codeSystem: string | null;
  /** OBX-2 */
  valueType: string;
  /** A number for NM and plain SN values; text otherwise (coded values: their text). */
  value: number | string | null;
  /** SN comparators: "<", ">", "<=", ">=", "=", "<>". */
  comparator: string | null;
  unit: string | null;
  referenceRange: string | null;
  /** OBX-8, when it marks the value abnormal. */
  flag: AbnormalFlag | null;
  status: ObservationStatus;
  observedAt: string | null;
  notes: string[];
}

export interface Attachment {
  /** e.g. application/pdf */
  contentType: string;
  data: Buffer;
  /** The OBX that carried it. */
  code: string;
}

export interface ResultOrder {
  placerOrderId: string | null;
  fillerOrderId: string | null;
  code: string;
  display: string | null;
  observedAt: string | null;
  /** OBR-25 */
  status: string | null;
  observations: Observation[];
  notes: string[];
}

export interface PatientIdentification {
  /** PID-3 repetitions (and PID-2 on older versions): value, type code and authority as sent. */
  identifiers: { value: string; typeCode: string | null; authority: string | null }[];
  familyName: string | null;
  givenName: string | null;
  /** YYYY-MM-DD, only when PID-7 names the whole day (a year alone matches nobody). */
  birthDate: string | null;
  sex: string | null;
  /** PID-35 (2.4+): the text, else the code. */
  species: string | null;
  /** NK1-2 family name of the first next of kin (in veterinary use, the owner). */
  ownerFamilyName: string | null;
}

export interface OruMessage {
  /** MSH-10: with the sender, the key that makes a re-sent message a duplicate. */
  controlId: string;
  sendingApplication: string;
  sendingFacility: string;
  version: string;
  sentAt: string | null;
  patient: PatientIdentification;
  orders: ResultOrder[];
  attachments: Attachment[];
  /** Notes before the first order (patient notes). */
  notes: string[];
}

/**
 * Why a message is not taken. AR: not understood (not HL7, wrong encoding, not ORU^R01, an
 * unsupported version, no control id). AE: understood but not acceptable (no patient, no
 * results).
 */
export class Hl7Rejection extends Error {
  readonly ackCode: 'AR' | 'AE';
  /** The HL7 error code for ERR-3 (table 0357). */
  readonly errorCode: string;
  constructor(ackCode: 'AR' | 'AE', errorCode: string, message: string) {
    super(message);
    this.name = 'Hl7Rejection';
    this.ackCode = ackCode;
    this.errorCode = errorCode;
  }
}

const STATUS: Record<string, ObservationStatus> = {
  F: 'final',
  C: 'corrected',
  P: 'preliminary',
  R: 'preliminary',
  S: 'preliminary',
  I: 'preliminary',
  X: 'cancelled',
  D: 'cancelled',
  W: 'cancelled',
};

/** Undoes HL7 escape sequences in text values (\F\ \S\ \T\ \R\ \E\, \.br\, \Xhh\). */
export function unescapeHl7(text: string): string {
  return text.replace(/\\(F|S|T|R|E|\.br|X[0-9A-Fa-f]+|H|N)\\/g, (_m, code: string) => {
    switch (code) {
      case 'F':
        return '|';
      case 'S':
        return '^';
      case 'T':
        return '&';
      case 'R':
        return '~';
      case 'E':
        return '\\';
      case '.br':
        return '\n';
      case 'H':
      case 'N':
        return '';
      default:
        return Buffer.from(code.slice(1), 'hex').toString('latin1');
    }
  });
}

/** HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as ISO 8601, or null when absent or bad. */
export function hl7Time(value: string): string | null {
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$/.exec(
    value.trim(),
  );
  if (!m) return null;
  const [, y, mo = '01', d = '01', h, mi = '00', s = '00', zone] = m;
  if (h === undefined) return `${y}-${mo}-${d}`;
  const offset = zone ? `${zone.slice(0, 3)}:${zone.slice(3)}` : '';
  return `${y}-${mo}-${d}T${h}:${mi}:${s}${offset}`;
}

/** A field's text; '' for a field the segment does not have (the library returns undefined). */
function fieldText(segment: Hl7Segment, index: number): string {
  const field = segment.getField(index) as Hl7Field | undefined;
  return field?.toString() ?? '';
}

/** A field, or an empty one where the segment stops early. */
function fieldOf(segment: Hl7Segment, index: number): Hl7Field {
  const field = segment.getField(index) as Hl7Field | undefined;
  return field ?? new Hl7Field([['']], segment.context);
}

const text = (value: string): string | null => {
  const v = unescapeHl7(value).trim();
  return v === '' ? null : v;
};

function observationValue(
  obx: Hl7Segment,
  valueType: string,
): { value: number | string | null; comparator: string | null } {
  const raw = fieldOf(obx, 5);
  switch (valueType) {
    case 'NM': {
      const t = raw.toString().trim();
      const n = Number(t);
      return t !== '' && Number.isFinite(n)
        ? { value: n, comparator: null }
        : { value: text(t), comparator: null };
    }
    case 'SN': {
      // comparator ^ num1 ^ separator/suffix ^ num2, e.g. ">^300", "^1^:^128", "^10^-^20".
      const comparator = raw.getComponent(1).trim() || null;
      const first = raw.getComponent(2).trim();
      const separator = raw.getComponent(3).trim();
      const second = raw.getComponent(4).trim();
      if (separator === '' && first !== '' && Number.isFinite(Number(first)))
        return { value: Number(first), comparator };
      return { value: text(`${first}${separator}${second}`), comparator };
    }
    case 'CE':
    case 'CWE':
    case 'CNE':
      // The text a person reads; the code when there is no text.
      return { value: text(raw.getComponent(2)) ?? text(raw.getComponent(1)), comparator: null };
    default:
      // ST, TX, FT and anything else: the whole field as text, repetitions as lines.
      return {
        value: text(raw.toString().split(obx.context.repetitionSeparator).join('\n')),
        comparator: null,
      };
  }
}

/** ED: source ^ type ^ subtype ^ encoding ^ data. */
function embedded(obx: Hl7Segment, code: string): Attachment | null {
  const field = fieldOf(obx, 5);
  const type = field.getComponent(2).trim().toLowerCase();
  const subtype = field.getComponent(3).trim().toLowerCase();
  const encoding = field.getComponent(4).trim().toLowerCase();
  const data = field.getComponent(5);
  if (data === '') return null;
  const contentType =
    subtype === 'pdf' || type === 'pdf'
      ? 'application/pdf'
      : type === 'image' && subtype !== ''
        ? `image/${subtype}`
        : type === 'text'
          ? 'text/plain'
          : 'application/octet-stream';
  const bytes =
    encoding === 'base64'
      ? Buffer.from(data, 'base64')
      : encoding === 'hex'
        ? Buffer.from(data, 'hex')
        : Buffer.from(unescapeHl7(data), 'latin1');
  return { contentType, data: bytes, code };
}

/** Parses one ORU^R01 message. Throws Hl7Rejection for what must be refused. */
export function parseOru(message: string): OruMessage {
  // MLLP frame bytes (VT before, FS after) may come along with a message read from a file.
  // eslint-disable-next-line no-control-regex
  const trimmed = message.replace(/^[\s\u000b]+|[\s\u001c]+$/g, '');
  if (!trimmed.startsWith('MSH'))
    throw new Hl7Rejection('AR', '100', 'The message does not start with an MSH segment.');
  // MSH-1 and MSH-2: the separators. Anything but the standard set is refused: senders that
  // change them are misconfigured, and values would be split in the wrong places.
  if (trimmed.slice(3, 8) !== '|^~\\&')
    throw new Hl7Rejection(
      'AR',
      '103',
      'The MSH encoding characters must be |^~\\& (field, component, repetition, escape, subcomponent).',
    );
  // Line feeds or CR LF between segments are common in files; the standard separator is CR.
  const parsed = Hl7Message.parse(trimmed.replace(/\r\n|\n/g, '\r'));
  const msh = parsed.header;
  const type = `${msh.getComponent(9, 1)}^${msh.getComponent(9, 2)}`;
  if (type !== 'ORU^R01')
    throw new Hl7Rejection('AR', '200', `Message type ${type} is not supported; send ORU^R01.`);
  const version = msh.getComponent(12, 1).trim();
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version))
    throw new Hl7Rejection(
      'AR',
      '203',
      `HL7 version ${version || '(none)'} is not supported; use ${SUPPORTED_VERSIONS.join(', ')}.`,
    );
  const controlId = fieldText(msh, 10).trim();
  if (controlId === '')
    throw new Hl7Rejection('AR', '101', 'MSH-10 (message control id) is empty.');

  const pid = parsed.getSegment('PID');
  if (!pid) throw new Hl7Rejection('AE', '101', 'The message has no PID segment (patient).');
  const identifiers: PatientIdentification['identifiers'] = [];
  for (const index of [3, 2, 4]) {
    const field = fieldOf(pid, index);
    field.components.forEach((_c, repetition) => {
      const value = text(field.getComponent(1, undefined, repetition));
      if (value === null) return;
      identifiers.push({
        value,
        typeCode: text(field.getComponent(5, undefined, repetition)),
        authority: text(field.getComponent(4, undefined, repetition)),
      });
    });
  }
  const patient: PatientIdentification = {
    identifiers,
    familyName: text(pid.getComponent(5, 1)),
    givenName: text(pid.getComponent(5, 2)),
    birthDate: /^\d{8}/.test(fieldText(pid, 7).trim())
      ? (hl7Time(fieldText(pid, 7))?.slice(0, 10) ?? null)
      : null,
    sex: text(fieldText(pid, 8)),
    species: text(pid.getComponent(35, 2)) ?? text(pid.getComponent(35, 1)),
    ownerFamilyName: (() => {
      const nk1 = parsed.getSegment('NK1');
      return nk1 ? text(nk1.getComponent(2, 1)) : null;
    })(),
  };

  const orders: ResultOrder[] = [];
  const attachments: Attachment[] = [];
  const notes: string[] = [];
  let order: ResultOrder | null = null;
  let last: Observation | null = null;
  for (const segment of parsed.segments) {
    switch (segment.name) {
      case 'OBR':
        order = {
          placerOrderId: text(segment.getComponent(2, 1)),
          fillerOrderId: text(segment.getComponent(3, 1)),
          code: text(segment.getComponent(4, 1)) ?? 'unknown',
          display: text(segment.getComponent(4, 2)),
          observedAt: hl7Time(fieldText(segment, 7)),
          status: text(fieldText(segment, 25)),
          observations: [],
          notes: [],
        };
        orders.push(order);
        last = null;
        break;
      case 'OBX': {
        const valueType = fieldText(segment, 2).trim().toUpperCase() || 'ST';
        const code = text(segment.getComponent(3, 1)) ?? 'unknown';
        if (valueType === 'ED') {
          const attachment = embedded(segment, code);
          if (attachment) attachments.push(attachment);
          last = null;
          break;
        }
        if (!order) {
          // Some senders put OBX straight after PID: one implicit order.
          order = {
            placerOrderId: null,
            fillerOrderId: null,
            code: 'unknown',
            display: null,
            observedAt: null,
            status: null,
            observations: [],
            notes: [],
          };
          orders.push(order);
        }
        const flag = fieldText(segment, 8).trim().toUpperCase();
        const { value, comparator } = observationValue(segment, valueType);
        last = {
          subId: text(fieldText(segment, 4)),
          code,
          display: text(segment.getComponent(3, 2)),
          codeSystem: text(segment.getComponent(3, 3)),
          valueType,
          value,
          comparator,
          unit: text(segment.getComponent(6, 1)) ?? text(segment.getComponent(6, 2)),
          referenceRange: text(fieldText(segment, 7)),
          flag: (ABNORMAL_FLAGS as readonly string[]).includes(flag)
            ? (flag as AbnormalFlag)
            : null,
          status: STATUS[fieldText(segment, 11).trim().toUpperCase()] ?? 'other',
          observedAt: hl7Time(fieldText(segment, 14)),
          notes: [],
        };
        order.observations.push(last);
        break;
      }
      case 'NTE': {
        const comment = text(
          fieldText(segment, 3).split(segment.context.repetitionSeparator).join('\n'),
        );
        if (comment === null) break;
        if (last) last.notes.push(comment);
        else if (order) order.notes.push(comment);
        else notes.push(comment);
        break;
      }
      default:
        break;
    }
  }
  if (orders.every((o) => o.observations.length === 0) && attachments.length === 0)
    throw new Hl7Rejection('AE', '101', 'The message carries no OBX results.');

  return {
    controlId,
    sendingApplication: text(msh.getComponent(3, 1)) ?? '',
    sendingFacility: text(msh.getComponent(4, 1)) ?? '',
    version,
    sentAt: hl7Time(fieldText(msh, 7)),
    patient,
    orders,
    attachments,
    notes,
  };
}

/** Whether any observation is flagged abnormal (for highlighting the result in the chart). */
export function isAbnormal(message: OruMessage): boolean {
  return message.orders.some((o) => o.observations.some((x) => x.flag !== null));
}
