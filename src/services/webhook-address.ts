// Webhook receivers must not be the server's own network unless the operator allows it: a user
// who may create subscriptions could otherwise make the server call internal services (SSRF).
// The name is resolved once per delivery and the connection made to the address checked.
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { ipv6Bytes } from '../domain/ip.js';

const PRIVATE = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const)
  PRIVATE.addSubnet(prefix, bits, 'ipv4');
for (const [prefix, bits] of [
  ['::', 96], // unspecified, loopback and the deprecated IPv4-compatible form
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const)
  PRIVATE.addSubnet(prefix, bits, 'ipv6');

const v4 = (b: Buffer, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

/**
 * The IPv4 address an IPv6 address stands for, when it embeds one that routers act on:
 * IPv4-mapped (::ffff:a.b.c.d, in any spelling), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
 */
function embeddedIpv4(bytes: Buffer): string | null {
  const zero = (from: number, to: number) => bytes.subarray(from, to).every((b) => b === 0);
  if (zero(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff) return v4(bytes, 12);
  if (bytes.readUInt32BE(0) === 0x0064ff9b && zero(4, 12)) return v4(bytes, 12);
  if (bytes.readUInt16BE(0) === 0x2002) return v4(bytes, 2);
  return null;
}

/** Loopback, private, link-local, unspecified, multicast or reserved (IPv4, IPv6, embedded). */
export function isPrivateAddress(ip: string): boolean {
  if (net.isIPv4(ip)) return PRIVATE.check(ip, 'ipv4');
  const bytes = ipv6Bytes(ip);
  if (!bytes) return false;
  const embedded = embeddedIpv4(bytes);
  if (embedded !== null && PRIVATE.check(embedded, 'ipv4')) return true;
  return PRIVATE.check(ip.replace(/%.*$/, ''), 'ipv6');
}

/** The host of a URL without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

/** Checked when a subscription is created: literal private addresses and localhost names. */
export function isPrivateLiteral(url: URL): boolean {
  const host = hostOf(url).toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || isPrivateAddress(host);
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** What a name resolves to (the network's answer; tests point it at their own DNS server). */
export type HostResolver = (host: string) => Promise<ResolvedAddress[]>;

export const systemResolver: HostResolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

/** The receiver resolves to an address of the server's own network. */
export class PrivateAddressError extends Error {
  constructor() {
    super(
      'the receiver resolves to a local or private address (see CARETRAIL_WEBHOOK_ALLOW_PRIVATE)',
    );
    this.name = 'PrivateAddressError';
  }
}

/**
 * The one address a delivery connects to: the name is resolved once, refused if any address it
 * has is private (an attacker's DNS may answer with several, or change its answer between a
 * check and a connection), and the first address is used for the connection itself.
 */
export async function deliveryAddress(
  url: URL,
  resolve: HostResolver,
  allowPrivate: boolean,
): Promise<ResolvedAddress> {
  const host = hostOf(url);
  const literal = net.isIP(host);
  const addresses: ResolvedAddress[] =
    literal !== 0 ? [{ address: host, family: literal === 6 ? 6 : 4 }] : await resolve(host);
  const [first] = addresses;
  if (!first) throw new Error('the receiver host name does not resolve');
  if (!allowPrivate && addresses.some((a) => isPrivateAddress(a.address)))
    throw new PrivateAddressError();
  return first;
}
