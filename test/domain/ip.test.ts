// What the sign-in lockout counts per address: an IPv4 address, an IPv6 /64, IPv4-mapped as IPv4.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ipv6Bytes, lockoutAddress } from '../../src/domain/ip.js';

test('IPv4 addresses count one by one', () => {
  assert.equal(lockoutAddress('203.0.113.7'), '203.0.113.7');
  assert.notEqual(lockoutAddress('203.0.113.7'), lockoutAddress('203.0.113.8'));
});

test('IPv6 addresses count by /64, whatever the spelling', () => {
  const one = lockoutAddress('2001:db8:1:2::1');
  assert.equal(one, '2001:db8:1:2::/64');
  assert.equal(lockoutAddress('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), one);
  assert.equal(lockoutAddress('2001:db8:1:2:0:0:0:9%eth0'), one);
  assert.notEqual(lockoutAddress('2001:db8:1:3::1'), one);
  assert.equal(lockoutAddress('::1'), '0:0:0:0::/64');
});

test('IPv4-mapped IPv6 counts as its IPv4 address', () => {
  assert.equal(lockoutAddress('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(lockoutAddress('::ffff:cb00:7107'), '203.0.113.7');
});

test('text that is not an address is kept as it is', () => {
  assert.equal(lockoutAddress('unknown'), 'unknown');
  assert.equal(ipv6Bytes('not:an:address'), null);
});
