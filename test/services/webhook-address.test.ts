// Which webhook receivers count as the server's own network (refused unless allowed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isPrivateAddress,
  isPrivateLiteral,
  deliveryAddress,
  systemResolver,
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
    // The same, as the URL parser spells them, and through NAT64 and 6to4.
    '::ffff:7f00:1',
    '::ffff:a00:1',
    '64:ff9b::7f00:1',
    '64:ff9b::169.254.169.254',
    '2002:7f00:1::1',
    '::127.0.0.1',
    '::',
    'fe80::1%eth0',
    'fec0::1',
    'ff02::1',
    '224.0.0.251',
    '255.255.255.255',
  ])
    assert.equal(isPrivateAddress(ip), true, ip);
  for (const ip of [
    '93.184.216.34',
    '8.8.8.8',
    '2606:4700::1111',
    '::ffff:1.1.1.1',
    '::ffff:101:101',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ])
    assert.equal(isPrivateAddress(ip), false, ip);
});

test('literal hosts are judged without DNS; localhost names count as local', () => {
  assert.equal(isPrivateLiteral(new URL('http://127.0.0.1:8080/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://[::1]/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://localhost/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://api.localhost/hook')), true);
  assert.equal(isPrivateLiteral(new URL('http://[::ffff:127.0.0.1]/hook')), true);
  assert.equal(isPrivateLiteral(new URL('https://hooks.example.org/hook')), false);
});

test('a name that resolves to loopback is refused at delivery time unless allowed', async () => {
  await assert.rejects(
    deliveryAddress(new URL('http://localhost:9/hook'), systemResolver, false),
    /local or private address/,
  );
  const allowed = await deliveryAddress(new URL('http://localhost:9/hook'), systemResolver, true);
  assert.equal(allowed.address === '127.0.0.1' || allowed.address === '::1', true);
  const literal = await deliveryAddress(
    new URL('https://93.184.216.34/hook'),
    systemResolver,
    false,
  );
  assert.deepEqual(literal, { address: '93.184.216.34', family: 4 });
});
