// A tiny authoritative DNS server on 127.0.0.1 (UDP) whose A answers a test decides per query,
// as an attacker's name server would (DNS rebinding: one answer at a check, another later).
// Enough of RFC 1035 for Node's resolver: one question, A records, NXDOMAIN for other names.
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import type { HostResolver } from '../../src/services/webhook-address.js';

export interface DnsServer {
  /** "127.0.0.1:<port>", for dns.Resolver#setServers. */
  address: string;
  /** Every A question asked, in order (lower-case names). */
  queries: string[];
  /** A resolver that asks only this server (what the system resolver would get from it). */
  resolver: HostResolver;
  close(): Promise<void>;
}

/** `answer(name, n)` gives the IPv4 addresses for the n-th A question (from 1); null: NXDOMAIN. */
export type DnsPolicy = (name: string, n: number) => string[] | null;

function readName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let at = offset;
  for (;;) {
    const length = msg[at] ?? 0;
    if (length === 0) return { name: labels.join('.').toLowerCase(), end: at + 1 };
    labels.push(msg.subarray(at + 1, at + 1 + length).toString('latin1'));
    at += 1 + length;
  }
}

function reply(query: Buffer, policy: DnsPolicy, queries: string[]): Buffer {
  const { name, end } = readName(query, 12);
  const type = query.readUInt16BE(end);
  const question = query.subarray(12, end + 4);
  let addresses: string[] | null = [];
  if (type === 1) {
    queries.push(name);
    addresses = policy(name, queries.length);
  }
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // id
  header.writeUInt16BE(0x8400 | (addresses === null ? 3 : 0), 2); // response, authoritative
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(addresses?.length ?? 0, 6);
  const answers = (addresses ?? []).map((ip) => {
    if (!net.isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the name of the question
    rr.writeUInt16BE(1, 2); // A
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(0, 6); // TTL 0: no cache may keep it
    rr.writeUInt16BE(4, 10);
    ip.split('.').forEach((part, i) => rr.writeUInt8(Number(part), 12 + i));
    return rr;
  });
  return Buffer.concat([header, question, ...answers]);
}

export async function startDnsServer(policy: DnsPolicy): Promise<DnsServer> {
  const socket = dgram.createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (msg, from) => {
    socket.send(reply(msg, policy, queries), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${socket.address().port}`;
  const client = new dns.promises.Resolver({ timeout: 1000, tries: 1 });
  client.setServers([address]);
  return {
    address,
    queries,
    resolver: async (host) =>
      (await client.resolve4(host)).map((ip) => ({ address: ip, family: 4 as const })),
    close: () =>
      new Promise((resolve) => {
        socket.close(() => {
          resolve();
        });
      }),
  };
}
