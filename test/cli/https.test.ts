// `caretrail serve` over HTTPS as a real process, checked from outside with openssl s_client and
// HTTPS requests that trust only a throwaway test CA: TLS 1.1 refused, 1.2 (AEAD ciphers only)
// and 1.3 accepted, HSTS, the plain-HTTP redirect listener, a Secure sign-in cookie, and a
// certificate renewed with SIGHUP while the process and its open connections carry on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../helpers/engines.js';
import { PASSWORD } from '../helpers/harness.js';
import { runCli, startServer, type ServerProcess } from '../helpers/process.js';
import {
  httpsRequest,
  issueCertificate,
  makeCa,
  sClient,
  type TestCertificate,
} from '../helpers/tls.js';
import { freePort } from '../web/web-helpers.js';

const MAIN = path.resolve('src/cli/main.ts');
const EMAIL = 'tls-admin@example.test';

describe('caretrail serve over HTTPS', () => {
  let dir: string;
  let ca: TestCertificate;
  let first: TestCertificate;
  let server: ServerProcess;
  let port: number;
  let redirectPort: number;
  let caPem: Buffer;
  const certFile = () => path.join(dir, 'served.crt');
  const keyFile = () => path.join(dir, 'served.key');
  const serve = (cert: TestCertificate) => {
    // Renewal as an operator does it: the files at the configured paths are replaced.
    fs.copyFileSync(cert.certFile, certFile());
    fs.copyFileSync(cert.keyFile, keyFile());
  };
  const base = () => `https://127.0.0.1:${port}`;
  /** Waits until the server's output has `n` lines matching `pattern`. */
  const logged = async (pattern: RegExp, n = 1) => {
    const deadline = Date.now() + 10_000;
    const count = () =>
      server
        .output()
        .split('\n')
        .filter((l) => pattern.test(l)).length;
    while (count() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(count() >= n, `no ${String(pattern)} in the log:\n${server.output()}`);
  };

  before(async () => {
    dir = tempDir('caretrail-tls-');
    ca = await makeCa(dir);
    caPem = fs.readFileSync(ca.certFile);
    first = await issueCertificate(dir, ca, 'first');
    serve(first);
    port = await freePort();
    redirectPort = await freePort();
    const env = {
      CARETRAIL_DATA_DIR: path.join(dir, 'data'),
      CARETRAIL_TLS_CERT: certFile(),
      CARETRAIL_TLS_KEY: keyFile(),
      CARETRAIL_HTTP_REDIRECT_PORT: String(redirectPort),
    };
    fs.writeFileSync(path.join(dir, 'password'), PASSWORD);
    const admin = await runCli(
      [
        'admin',
        'create',
        '--org',
        'TLS Vets',
        '--email',
        EMAIL,
        '--password-file',
        path.join(dir, 'password'),
      ],
      env,
    );
    assert.equal(admin.code, 0, admin.stderr);
    server = await startServer(env, [MAIN, 'serve', '--port', String(port)]);
    await logged(/HTTP redirect listener started/);
  });
  after(async () => {
    if (server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('unusable certificate files stop the start with one line, exit code 2', async () => {
    const data = { CARETRAIL_DATA_DIR: path.join(dir, 'data-refused') };
    const missing = await runCli(['serve', '--port', '0'], {
      ...data,
      CARETRAIL_TLS_CERT: path.join(dir, 'nowhere.crt'),
      CARETRAIL_TLS_KEY: first.keyFile,
    });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(
      missing.stderr,
      /^caretrail: Cannot read the TLS certificate .*nowhere\.crt \(ENOENT\)\.\n$/,
    );
    const other = await issueCertificate(dir, ca, 'other');
    const mismatch = await runCli(['serve', '--port', '0'], {
      ...data,
      CARETRAIL_TLS_CERT: first.certFile,
      CARETRAIL_TLS_KEY: other.keyFile,
    });
    assert.equal(mismatch.code, 2, mismatch.stderr);
    assert.match(mismatch.stderr, /cannot be used: .*key values mismatch/);
    const half = await runCli(['serve', '--port', '0'], {
      ...data,
      CARETRAIL_TLS_CERT: first.certFile,
    });
    assert.equal(half.code, 2);
    assert.match(half.stderr, /CARETRAIL_TLS_CERT and CARETRAIL_TLS_KEY go together/);
  });

  test('the server says it listens on https:// and the default public URL is https', () => {
    assert.equal(server.baseUrl, base());
    assert.match(server.output(), /"to":"https:\/\/127\.0\.0\.1:\d+"/);
  });

  test('TLS 1.1 is refused by the server; TLS 1.2 and 1.3 are negotiated', async (t) => {
    // SECLEVEL=0 lets Debian's client offer TLS 1.1, so the refusal is the server's.
    const old = await sClient(port, ['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0']);
    t.diagnostic(
      `-tls1_1: ${old.output
        .split('\n')
        .filter((l) => /alert|^New,|Protocol/.test(l))
        .join(' | ')}`,
    );
    assert.equal(old.protocol, null, old.output);
    assert.match(old.output, /alert protocol version/, 'the server answered with an alert');

    const v12 = await sClient(port, ['-tls1_2', '-CAfile', ca.certFile]);
    t.diagnostic(
      `-tls1_2: ${v12.output
        .split('\n')
        .filter((l) => /^New,|Protocol|Verify return/.test(l))
        .join(' | ')}`,
    );
    assert.equal(v12.protocol, 'TLSv1.2', v12.output);
    assert.match(
      v12.output,
      /^New, TLSv1\.2, Cipher is ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/m,
    );
    assert.match(v12.output, /Verify return code: 0 \(ok\)/);
    assert.equal(v12.fingerprint, first.fingerprint);

    const v13 = await sClient(port, ['-tls1_3', '-CAfile', ca.certFile]);
    t.diagnostic(
      `-tls1_3: ${v13.output
        .split('\n')
        .filter((l) => /^New,|Protocol|Verify return/.test(l))
        .join(' | ')}`,
    );
    assert.equal(v13.protocol, 'TLSv1.3', v13.output);
  });

  test('TLS 1.2 without forward secrecy or AEAD is refused', async (t) => {
    for (const cipher of [
      'AES128-GCM-SHA256',
      'ECDHE-ECDSA-AES128-SHA',
      'ECDHE-ECDSA-AES256-SHA384',
    ]) {
      const shake = await sClient(port, ['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`]);
      t.diagnostic(
        `-tls1_2 -cipher ${cipher}: ${shake.output
          .split('\n')
          .filter((l) => /alert|^New,/.test(l))
          .join(' | ')}`,
      );
      assert.equal(shake.protocol, null, `${cipher} was accepted:\n${shake.output}`);
    }
  });

  test('answers over HTTPS carry HSTS', async () => {
    const health = await httpsRequest(`${base()}/healthz`, { ca: caPem });
    assert.equal(health.status, 200);
    assert.equal(
      health.headers['strict-transport-security'],
      'max-age=31536000; includeSubDomains',
    );
    const page = await httpsRequest(`${base()}/patients/x`, { ca: caPem });
    assert.equal(page.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  });

  test('the plain-HTTP port only redirects to the same path and query under https', async () => {
    const http = `http://127.0.0.1:${redirectPort}`;
    const page = await fetch(`${http}/patients/abc?tab=notes&x=1`, { redirect: 'manual' });
    assert.equal(page.status, 301);
    assert.equal(page.headers.get('location'), `${base()}/patients/abc?tab=notes&x=1`);
    assert.equal(await page.text(), '');
    // Writes are sent on with their method (308); nothing is answered over plain HTTP.
    const signIn = await fetch(`${http}/api/v1/auth/session`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    assert.equal(signIn.status, 308);
    assert.equal(signIn.headers.get('location'), `${base()}/api/v1/auth/session`);
    assert.equal(signIn.headers.get('set-cookie'), null);
    assert.equal(await signIn.text(), '');
    const health = await fetch(`${http}/healthz`, { redirect: 'manual' });
    assert.equal(health.status, 301);
    assert.equal(health.headers.get('location'), `${base()}/healthz`);
    // Following it lands on the HTTPS server (the redirect is to the configured public URL).
    assert.equal(
      (await httpsRequest(health.headers.get('location') ?? '', { ca: caPem })).status,
      200,
    );
  });

  test('the web sign-in cookie is Secure over HTTPS', async () => {
    const res = await httpsRequest(`${base()}/api/v1/auth/session`, {
      ca: caPem,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    assert.equal(res.status, 200, res.body);
    const cookie = [res.headers['set-cookie'] ?? []].flat()[0] ?? '';
    assert.match(cookie, /^__Host-caretrail_session=[^;]{10,};/);
    assert.match(cookie, /; Secure(;|$)/);
    assert.match(cookie, /HttpOnly/);
  });

  test(
    'SIGHUP serves a renewed certificate to new handshakes; open connections and the process carry on',
    { timeout: 60_000 },
    async (t) => {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const before = await httpsRequest(`${base()}/healthz`, { ca: caPem, agent });
        assert.equal(before.fingerprint, first.fingerprint);

        const second = await issueCertificate(dir, ca, 'second');
        assert.notEqual(second.fingerprint, first.fingerprint);
        serve(second);
        server.child.kill('SIGHUP');
        await logged(/TLS certificate reloaded/);
        const fresh = await sClient(port, ['-CAfile', ca.certFile]);
        t.diagnostic(
          `after SIGHUP: ${fresh.output
            .split('\n')
            .filter((l) => /^New,|Verify return/.test(l))
            .join(' | ')}; fingerprint ${fresh.fingerprint ?? '?'}`,
        );
        assert.equal(
          fresh.fingerprint,
          second.fingerprint,
          'new handshakes get the new certificate',
        );
        assert.match(fresh.output, /Verify return code: 0 \(ok\)/);

        // The keep-alive connection opened before the reload still answers, with its old handshake.
        const reused = await httpsRequest(`${base()}/healthz`, { ca: caPem, agent });
        assert.equal(reused.status, 200);
        assert.equal(reused.localPort, before.localPort, 'the same connection as before');

        // A broken renewal (key of another certificate, then garbage) is refused; the last good
        // certificate stays in service.
        fs.copyFileSync(first.keyFile, keyFile());
        server.child.kill('SIGHUP');
        await logged(/TLS reload failed/);
        fs.writeFileSync(certFile(), 'not a certificate\n');
        server.child.kill('SIGHUP');
        await logged(/TLS reload failed/, 2);
        assert.match(server.output(), /key values mismatch/);
        const still = await sClient(port, ['-CAfile', ca.certFile]);
        assert.equal(still.fingerprint, second.fingerprint);
        assert.equal(server.child.exitCode, null, 'the process is still running');
        assert.equal((await httpsRequest(`${base()}/readyz`, { ca: caPem })).status, 200);
      } finally {
        agent.destroy();
      }
    },
  );

  test('SIGTERM stops HTTPS and the redirect listener cleanly', { timeout: 30_000 }, async () => {
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, server.output());
    assert.match(server.output(), /stopped cleanly/);
    await assert.rejects(fetch(`http://127.0.0.1:${redirectPort}/`), 'the redirect port is closed');
  });
});
