// Ids are UUIDv7: well-formed, unique, and strictly increasing even within one millisecond.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uuidv7 } from '../../src/domain/ids.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('ids made in the same millisecond sort in creation order', () => {
  const ms = Date.now() + 10_000;
  const ids = Array.from({ length: 5000 }, () => uuidv7(ms));
  assert.ok(ids.every((id) => UUID_V7.test(id)));
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([...ids].sort(), ids);
});

test('a clock that steps back does not make ids go backwards', () => {
  const ms = Date.now() + 20_000;
  const first = uuidv7(ms);
  const second = uuidv7(ms - 5_000);
  assert.ok(second > first);
});

test('the timestamp is in the first 48 bits', () => {
  const ms = Date.UTC(2030, 0, 1);
  const id = uuidv7(ms + 50_000);
  assert.ok(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16) >= ms + 50_000);
});
