// The plain-HTTP redirect listener with requests a browser would not send: the Location always
// stays under the configured public URL, whatever the request target or Host header says, and
// malformed requests are refused without stopping the listener.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { startRedirectListener, type RedirectListener } from '../../src/http/redirect-listener.js';

let listener: RedirectListener;

/** Sends raw request bytes and returns the status line and Location header of the answer. */
async function raw(request: Buffer | string): Promise<{ status: string; location: string | null }> {
  const socket = net.connect(listener.port, '127.0.0.1');
  let out = '';
  socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      resolve();
    }),
  );
  socket.write(request);
  socket.end();
  await closed;
  const lines = out.split('\r\n');
  const location = lines.find((l) => /^location:/i.test(l));
  return { status: lines[0] ?? '', location: location ? location.slice(9).trim() : null };
}

before(async () => {
  listener = await startRedirectListener({
    host: '127.0.0.1',
    port: 0,
    publicUrl: 'https://records.example.test',
    log: pino({ level: 'silent' }),
  });
});
after(async () => {
  await listener.close();
});

test('the Host header does not choose where people are sent', async () => {
  const answer = await raw('GET /notes/1?x=y HTTP/1.1\r\nHost: evil.test\r\n\r\n');
  assert.equal(answer.status, 'HTTP/1.1 301 Moved Permanently');
  assert.equal(answer.location, 'https://records.example.test/notes/1?x=y');
});

test('absolute-form and protocol-relative targets stay under the public URL', async () => {
  const absolute = await raw('GET http://evil.test/p HTTP/1.1\r\nHost: evil.test\r\n\r\n');
  assert.equal(absolute.location, 'https://records.example.test/');
  const doubled = await raw('GET //evil.test/p HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(doubled.location, 'https://records.example.test//evil.test/p');
  assert.equal(new URL(doubled.location).host, 'records.example.test');
});

test('a malformed request is refused and the listener keeps answering', async () => {
  const bad = await raw(Buffer.from('GET /a\xff\r\nb HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'));
  assert.match(bad.status, /^HTTP\/1\.1 400/);
  const next = await raw('DELETE /api/v1/patients/1 HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(next.status, 'HTTP/1.1 308 Permanent Redirect');
  assert.equal(next.location, 'https://records.example.test/api/v1/patients/1');
});
