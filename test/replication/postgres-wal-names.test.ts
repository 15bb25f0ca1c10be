// WAL segment names and gaps, as the PostgreSQL restore and status read them from the repository
// folder: positions across a log boundary, LSNs, and missing segments named per timeline from a
// backup's first segment.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  missingSegments,
  parseWalName,
  segNoOfLsn,
  walName,
  type ArchivedSegment,
} from '../../src/replication/postgres/wal-names.js';

const archived = (name: string): ArchivedSegment => {
  const segment = parseWalName(name);
  if (!segment) throw new Error(name);
  return { ...segment, archiveId: '15-1', file: name, archivedAt: new Date(0) };
};

test('segment names count across the log boundary and match LSNs', () => {
  assert.equal(walName(1, 255), '0000000100000000000000FF');
  assert.equal(walName(1, 256), '000000010000000100000000');
  assert.equal(parseWalName('000000020000000100000003')?.segNo, 259);
  assert.equal(parseWalName('000000020000000100000003')?.timeline, 2);
  assert.equal(parseWalName('000000010000000000000100'), null, 'no segment 0x100 in a log');
  assert.equal(parseWalName('00000001000000000000000A.partial'), null);
  assert.equal(segNoOfLsn('0/A000090'), 10);
  assert.equal(segNoOfLsn('1/0'), 256);
  assert.equal(segNoOfLsn('1/FFFFFF'), 256);
});

test('missing segments are named from the backup on, per timeline', () => {
  const names = [
    '000000010000000000000001',
    '000000010000000000000003',
    '0000000100000000000000FF',
    '000000010000000100000000',
    '000000010000000100000002',
    '000000020000000100000002',
    '000000020000000100000003',
  ];
  const segments = names.map(archived);
  assert.deepEqual(missingSegments(segments, '000000010000000000000003'), [
    ...Array.from({ length: 0xff - 4 }, (_, i) => walName(1, 4 + i)),
    '000000010000000100000001',
  ]);
  assert.deepEqual(missingSegments(segments, '000000010000000100000000'), [
    '000000010000000100000001',
  ]);
  assert.deepEqual(missingSegments(segments, '000000020000000100000002'), []);
  assert.deepEqual(missingSegments([], null), []);
});
