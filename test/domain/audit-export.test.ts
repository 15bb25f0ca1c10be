// CSV cells are RFC 4180 and never run as spreadsheet formulas.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { csvCell } from '../../src/domain/audit-export.js';

test('cells a spreadsheet would evaluate are prefixed with a quote', () => {
  assert.equal(csvCell('=SUM(A1:A9)'), "'=SUM(A1:A9)");
  assert.equal(csvCell('+1-2'), "'+1-2");
  assert.equal(csvCell('-2+3'), "'-2+3");
  assert.equal(csvCell('@cmd'), "'@cmd");
  assert.equal(csvCell('\tx'), "'\tx");
  assert.equal(csvCell('\rx'), `"'\rx"`);
});

test('commas, quotes and line breaks are quoted; plain values and nulls are not', () => {
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('two\nlines'), '"two\nlines"');
  assert.equal(csvCell('plain'), 'plain');
  assert.equal(csvCell(42), '42');
  assert.equal(csvCell(null), '');
});

test('the fast path of a cell gives exactly the full rules', () => {
  // The rules as written before the fast path: formula prefix, then quoting.
  const reference = (value: string | number | null): string => {
    if (value === null) return '';
    let text = String(value);
    if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const awkward = fc.string({
    unit: fc.constantFrom(
      'a',
      'é',
      '"',
      ',',
      '\r',
      '\n',
      '\t',
      ' ',
      '\u00a0',
      '\u2028',
      '\ufeff',
      '=',
      '+',
      '-',
      '@',
      '😀',
    ),
    maxLength: 8,
  });
  fc.assert(
    fc.property(
      fc.oneof(awkward, fc.string({ unit: 'binary' }), fc.integer(), fc.constant(null)),
      (v) => {
        assert.equal(csvCell(v), reference(v));
      },
    ),
    { numRuns: 5000 },
  );
});
