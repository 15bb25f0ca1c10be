// An HL7 v2 message over CARETRAIL_RESULT_MAX_BYTES sent over real HTTP, on both engines: the
// sender gets an HL7 ACK (AE, "too large") it can read, nothing is stored, and the server does
// not hold the oversize body in memory while it reads it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Hl7Message } from '@medplum/core';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness } from '../helpers/harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'hl7');
const MAX_BYTES = 64 * 1024;
const MIB = 1024 * 1024;

// A full garbage collection before each memory sample, so that it counts what is still held, not
// what was read and dropped but not yet collected.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

/** Posts `head` then `fillBytes` of filler in 64 KiB pieces (one reused buffer), as a device would. */
function postStreamed(
  base: string,
  key: string,
  head: string,
  fillBytes: number,
  filler: string,
): Promise<{ status: number; type: string; body: string; peakServerBytes: number }> {
  const piece = Buffer.alloc(64 * 1024, filler);
  collectGarbage();
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const sample = () => {
    collectGarbage();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
  };
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}/api/v1/integrations/hl7v2`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'x-application/hl7-v2+er7',
          'content-length': String(Buffer.byteLength(head) + fillBytes),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          sample();
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type']),
            body: Buffer.concat(chunks).toString('utf8'),
            peakServerBytes: peak,
          });
        });
      },
    );
    req.on('error', reject);
    req.write(head);
    let left = fillBytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, piece.length);
        left -= n;
        if (left % (2 * MIB) < n) sample();
        if (!req.write(n === piece.length ? piece : piece.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

const ackOf = (body: string) => {
  const ack = Hl7Message.parse(body);
  return {
    code: ack.getSegment('MSA')?.getField(1).toString(),
    controlId: ack.getSegment('MSA')?.getField(2).toString(),
    error: ack.getSegment('ERR')?.toString() ?? '',
  };
};

describeEachEngine('HL7 v2 over HTTP: oversize messages', ({ url }) => {
  let h: Harness;
  let base: string;
  let key: string;

  before(async () => {
    h = await startHarness(url(), { CARETRAIL_RESULT_MAX_BYTES: String(MAX_BYTES) });
    const admin = await h.newOrganization();
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/integrations/keys',
      token: admin.token,
      body: { name: 'ProCyte Dx' },
    });
    key = created.json<{ key: string }>().key;
    await h.runtime.app.listen({ host: '127.0.0.1', port: 0 });
    const address = h.runtime.app.server.address() as AddressInfo;
    base = `http://127.0.0.1:${address.port}`;
  });
  after(async () => {
    await h.close();
  });

  const resultCount = async () =>
    (await h.runtime.db.read.selectFrom('results').select('id').execute()).length;

  test('a message over the limit gets an AE ACK naming its control id and the reason, not JSON', async (t) => {
    const message = fs.readFileSync(path.join(FIXTURES, 'idexx-procyte-2.5.1.hl7'), 'utf8');
    const stored = await resultCount();
    // The sample with a long comment segment: 32 MiB in all, 512 times the limit.
    const res = await postStreamed(base, key, `${message}NTE|1||`, 32 * MIB, 'x');
    t.diagnostic(`peak array-buffer growth while sending 32 MiB: ${res.peakServerBytes} bytes`);
    assert.equal(res.status, 413, res.body);
    assert.match(res.type, /^x-application\/hl7-v2\+er7/);
    const ack = ackOf(res.body);
    assert.equal(ack.code, 'AE');
    assert.equal(ack.controlId, 'PCY-000123');
    assert.match(ack.error, new RegExp(`larger than ${MAX_BYTES} bytes`));
    assert.equal(await resultCount(), stored, 'nothing stored');
    // Not buffered: far less than the 32 MiB sent was ever held at once (client and server,
    // sampled every 2 MiB sent).
    assert.ok(
      res.peakServerBytes < 8 * MIB,
      `peak array-buffer growth ${res.peakServerBytes} bytes`,
    );
  });

  test('an oversize body without a readable MSH still gets an AE ACK', async () => {
    const res = await postStreamed(base, key, '', 2 * MIB, '\u0001');
    assert.equal(res.status, 413, res.body);
    assert.match(res.type, /^x-application\/hl7-v2\+er7/);
    const ack = ackOf(res.body);
    assert.equal(ack.code, 'AE');
    assert.equal(ack.controlId, '');
    assert.match(ack.error, /larger than/);
  });

  test('a message under the limit is still taken as before', async () => {
    const message = fs
      .readFileSync(path.join(FIXTURES, 'idexx-procyte-2.5.1.hl7'), 'utf8')
      .replace('PCY-000123', 'PCY-000999');
    const res = await postStreamed(base, key, message, 0, 'x');
    // Unknown microchip in this organization: stored as an unmatched result, acknowledged AA.
    assert.equal(res.status, 200, res.body);
    assert.equal(ackOf(res.body).code, 'AA');
  });
});
