// ORU^R01 messages of several versions and vendors' styles, read into results; and the messages
// that must be refused, with the ACK code each deserves.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  hl7Time,
  Hl7Rejection,
  isAbnormal,
  parseOru,
  unescapeHl7,
} from '../../src/integrations/hl7-oru.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'hl7');
const sample = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

describe('HL7 v2 ORU^R01 parsing', () => {
  test('IDEXX-style 2.5.1: microchip and clinic ids, numeric results with units, ranges and flags', () => {
    const m = parseOru(sample('idexx-procyte-2.5.1.hl7'));
    assert.equal(m.controlId, 'PCY-000123');
    assert.equal(m.sendingApplication, 'PROCYTE DX');
    assert.equal(m.version, '2.5.1');
    assert.equal(m.sentAt, '2026-11-23T10:15:00+01:00');
    assert.deepEqual(m.patient.identifiers, [
      { value: '985112345678901', typeCode: 'MC', authority: 'MICROCHIP' },
      { value: 'A-10442', typeCode: 'PI', authority: 'CLINIC' },
    ]);
    assert.deepEqual([m.patient.familyName, m.patient.birthDate], ['REX', '2019-03-01']);
    const [cbc] = m.orders;
    assert.ok(cbc);
    assert.deepEqual(
      [cbc.code, cbc.display, cbc.fillerOrderId],
      ['CBC', 'Complete blood count', 'RES-5501'],
    );
    assert.deepEqual(
      cbc.observations.map((o) => [o.code, o.value, o.unit, o.referenceRange, o.flag, o.status]),
      [
        ['HCT', 38.2, '%', '37.3-61.7', null, 'final'],
        ['WBC', 19.5, 'K/uL', '5.05-16.76', 'H', 'final'],
        ['PLT', 98, 'K/uL', '148-484', 'LL', 'final'],
      ],
    );
    assert.equal(isAbnormal(m), true);
  });

  test('Abaxis-style 2.3 with line feeds: SN comparators and ratios, notes on an observation', () => {
    const m = parseOru(sample('abaxis-vetscan-2.3.hl7'));
    assert.equal(m.version, '2.3');
    assert.deepEqual(m.patient.identifiers, [
      { value: '900123456789012', typeCode: 'MC', authority: null },
    ]);
    const obs = m.orders[0]?.observations ?? [];
    assert.deepEqual(
      obs.map((o) => [o.code, o.valueType, o.value, o.comparator, o.flag]),
      [
        ['GLU', 'NM', 612, null, 'HH'],
        ['CREA', 'SN', 15, '>', 'H'],
        ['RATIO', 'SN', '1:8', null, null],
        ['HEM', 'ST', '1+', null, null],
      ],
    );
    assert.deepEqual(obs[0]?.notes, ['Sample lipemic; repeat if clinically indicated.']);
  });

  test('Antech-style 2.4: several orders, coded values, escapes in notes, a patient note', () => {
    const m = parseOru(sample('antech-reference-2.4.hl7'));
    assert.deepEqual(m.notes, ['Owner reports vomiting since Monday.']);
    assert.deepEqual(
      m.orders.map((o) => [o.code, o.status, o.observations.length]),
      [
        ['T4', 'F', 1],
        ['CULT', 'P', 1],
      ],
    );
    const organism = m.orders[1]?.observations[0];
    assert.deepEqual(
      [organism?.valueType, organism?.value, organism?.flag, organism?.status],
      ['CWE', 'Escherichia coli', 'A', 'preliminary'],
    );
    assert.deepEqual(organism?.notes, ['Count | >100,000 CFU/mL\nSusceptibility to follow.']);
  });

  test('an imaging report: text with repetitions as lines, and the embedded PDF as an attachment', () => {
    const m = parseOru(sample('imaging-report-2.5.hl7'));
    assert.equal(
      m.orders[0]?.observations[0]?.value,
      'Mild bronchial pattern.\nNo evidence of cardiomegaly.',
    );
    assert.equal(m.attachments.length, 1);
    const [pdf] = m.attachments;
    assert.ok(pdf);
    assert.equal(pdf.contentType, 'application/pdf');
    assert.ok(pdf.data.subarray(0, 5).equals(Buffer.from('%PDF-')), 'the PDF bytes, decoded');
    assert.equal(m.orders.at(0)?.observations.length, 1, 'the PDF is not an observation');
    assert.equal(isAbnormal(m), false);
  });

  test('a corrected result says so on each observation (OBX-11 = C)', () => {
    const m = parseOru(sample('corrected-2.5.1.hl7'));
    assert.equal(m.orders.at(0)?.fillerOrderId, 'RES-5501', 'the same result id as the original');
    assert.deepEqual(
      m.orders[0]?.observations.map((o) => [o.value, o.status]),
      [[41, 'corrected']],
    );
  });

  test('MLLP framing bytes and a trailing separator around a message are ignored', () => {
    const framed = `\u000b${sample('corrected-2.5.1.hl7')}\u001c\r`;
    assert.equal(parseOru(framed).controlId, 'PCY-000124');
  });

  const refusals: [string, 'AR' | 'AE', string, RegExp][] = [
    ['adt-a01.hl7', 'AR', '200', /ADT\^A01 is not supported/],
    ['no-control-id.hl7', 'AR', '101', /MSH-10/],
    ['wrong-encoding.hl7', 'AR', '103', /encoding characters/],
    ['version-2.6.hl7', 'AR', '203', /version 2\.6/],
    ['no-pid.hl7', 'AE', '101', /no PID/],
    ['no-results.hl7', 'AE', '101', /no OBX/],
  ];
  for (const [file, ack, code, message] of refusals) {
    test(`${file} is refused with ${ack}`, () => {
      assert.throws(
        () => parseOru(sample(path.join('bad', file))),
        (err: unknown) =>
          err instanceof Hl7Rejection &&
          err.ackCode === ack &&
          err.errorCode === code &&
          message.test(err.message),
      );
    });
  }

  test('text that is not HL7 at all is refused with AR', () => {
    assert.throws(
      () => parseOru('{"patient": "not hl7"}'),
      (err: unknown) => err instanceof Hl7Rejection && err.ackCode === 'AR',
    );
  });

  test('escape sequences and times', () => {
    assert.equal(unescapeHl7('a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X41\\'), 'a|b^c&d~e\\f\ngA');
    assert.equal(hl7Time('20261123'), '2026-11-23');
    assert.equal(hl7Time('202611231015'), '2026-11-23T10:15:00');
    assert.equal(hl7Time('20261123101530.123-0500'), '2026-11-23T10:15:30-05:00');
    assert.equal(hl7Time('yesterday'), null);
  });
});
