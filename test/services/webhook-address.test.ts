// Which webhook receivers count as the server's own network (refused unless allowed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isPrivateAddress,
  isPrivateLiteral,
  resolvesToPrivate,
} from '../../src/services/webhook-address.js';

test('loopback, private, link-local and mapped addresses are private; public ones are not', () => {
  for (const ip of [
    '127.0.0.1',
    '10.1.2.3',
    '172.20.0.5',
    '192.168.1.10',
    '169.254.169.254',
    '0.0.0.0',
    '::1',
    'fd12:3456::1',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
  ])
    assert.equal(isPrivateAddress(ip), true, ip);
  for (const ip of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:1.1.1.1'])
    assert.equal(isPrivateAddress(ip), false, ip);
});

test('literal hosts are judged without DNS; localhost names count as local', () => {
  assert.equal(isPrivateLiteral(new URL('http://127.0.0.1:8080/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://[::1]/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://localhost/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://api.localhost/hook')), true);
  assert.equal(isPrivateLiteral(new URL('https://hooks.example.org/hook')), false);
});

test('a name that resolves to loopback is refused at delivery time', async () => {
  assert.equal(await resolvesToPrivate(new URL('http://localhost:9/hook')), true);
  assert.equal(await resolvesToPrivate(new URL('https://93.184.216.34/hook')), false);
});
