// IP address text: IPv6 parsing, and the unit a sign-in lockout counts by.
import net from 'node:net';

/** The 16 bytes of an IPv6 address (zone id dropped), or null when it is not one. */
export function ipv6Bytes(ip: string): Buffer | null {
  let text = ip.replace(/%.*$/, '');
  if (!net.isIPv6(text)) return null;
  // A dotted IPv4 tail ("::ffff:1.2.3.4") becomes its two hexadecimal words.
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(2).map(Number) as [number, number, number, number];
    text = `${dotted[1] ?? ''}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left = '', right] = text.split('::');
  const words = (part: string) => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  const head = words(left);
  const tail = right === undefined ? [] : words(right);
  const all =
    right === undefined
      ? head
      : [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  if (all.length !== 8) return null;
  const bytes = Buffer.alloc(16);
  all.forEach((w, i) => bytes.writeUInt16BE(w, i * 2));
  return bytes;
}

/**
 * What per-address sign-in limits count: an IPv4 address, or an IPv6 address's /64 (one
 * subscriber or host usually holds a whole /64, so counting single addresses would give an
 * attacker 2^64 fresh ones). IPv4-mapped IPv6 counts as its IPv4 address.
 */
export function lockoutAddress(ip: string): string {
  if (net.isIPv4(ip)) return ip;
  const bytes = ipv6Bytes(ip);
  if (!bytes) return ip;
  const zero = bytes.subarray(0, 10).every((b) => b === 0);
  if (zero && bytes[10] === 0xff && bytes[11] === 0xff)
    return `${String(bytes[12])}.${String(bytes[13])}.${String(bytes[14])}.${String(bytes[15])}`;
  const words = [0, 2, 4, 6].map((at) => bytes.readUInt16BE(at).toString(16));
  return `${words.join(':')}::/64`;
}
