// Throwaway certificates made with the openssl command at test time (never committed): a test
// CA and certificates it signs for 127.0.0.1/localhost, plus openssl s_client handshakes.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificate {
  certFile: string;
  keyFile: string;
  /** SHA-256 fingerprint as Node and openssl print it (AA:BB:…). */
  fingerprint: string;
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { timeout: 30_000 });
}

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'];

function described(certFile: string, keyFile: string): TestCertificate {
  return {
    certFile,
    keyFile,
    fingerprint: new X509Certificate(fs.readFileSync(certFile)).fingerprint256,
  };
}

/** A self-signed CA in `dir`. */
export async function makeCa(dir: string, name = 'Caretrail Test CA'): Promise<TestCertificate> {
  const certFile = path.join(dir, 'ca.crt');
  const keyFile = path.join(dir, 'ca.key');
  await openssl([
    'req',
    '-x509',
    ...P256,
    '-subj',
    `/CN=${name}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return described(certFile, keyFile);
}

/** A certificate for 127.0.0.1 and localhost (server or client use) signed by `ca`. */
export async function issueCertificate(
  dir: string,
  ca: TestCertificate,
  name: string,
): Promise<TestCertificate> {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  await openssl([
    'req',
    '-x509',
    '-CA',
    ca.certFile,
    '-CAkey',
    ca.keyFile,
    ...P256,
    '-subj',
    `/CN=${name}`,
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-addext',
    'basicConstraints=critical,CA:FALSE',
    '-addext',
    'extendedKeyUsage=serverAuth,clientAuth',
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return described(certFile, keyFile);
}

export interface Handshake {
  /** The whole output of openssl s_client (stdout and stderr). */
  output: string;
  /** The negotiated version (e.g. "TLSv1.3"), or null when no handshake completed. */
  protocol: string | null;
  /** SHA-256 fingerprint of the certificate the server presented, or null. */
  fingerprint: string | null;
}

/** One handshake with `openssl s_client` and the given extra options (e.g. "-tls1_2"). */
export async function sClient(port: number, options: string[]): Promise<Handshake> {
  let output: string;
  try {
    const { stdout, stderr } = await run(
      'sh',
      [
        '-c',
        // Nothing to send: close stdin so s_client ends after the handshake.
        `openssl s_client -connect 127.0.0.1:${port} ${options.map((o) => `'${o}'`).join(' ')} </dev/null 2>&1`,
      ],
      { timeout: 30_000 },
    );
    output = stdout + stderr;
  } catch (err) {
    output = String((err as { stdout?: string }).stdout ?? err);
  }
  // "New, (NONE), Cipher is (NONE)" when no handshake completed. Otherwise the SSL-Session
  // block's "Protocol : TLSv1.2" is the negotiated version (that block also appears after a
  // failure, naming the version merely attempted); for TLS 1.3 s_client may end before printing
  // it, and then the "New, TLSv1.3, …" line (the cipher's version; 1.3 suites are 1.3-only) says it.
  const handshake = /^New, (\S+), Cipher is/m.exec(output)?.[1] ?? '(NONE)';
  const session = /^\s*Protocol\s*:\s*(\S+)/m.exec(output)?.[1];
  const protocol = handshake === '(NONE)' ? null : (session ?? handshake);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(output)?.[0];
  return {
    output,
    protocol,
    fingerprint: pem ? new X509Certificate(pem).fingerprint256 : null,
  };
}

export interface HttpsAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Fingerprint of the certificate the server presented on this connection. */
  fingerprint: string;
  /** Local port of the connection (the same on a reused keep-alive connection). */
  localPort: number;
}

/** One HTTPS request that trusts only `ca` (the test CA), on `agent` when given (keep-alive). */
export function httpsRequest(
  url: string,
  options: {
    ca: Buffer;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    agent?: https.Agent;
  },
): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method: options.method ?? 'GET',
        ca: options.ca,
        headers: options.headers ?? {},
        ...(options.agent ? { agent: options.agent } : {}),
      },
      (response) => {
        const socket = response.socket;
        const fingerprint =
          socket instanceof TLSSocket
            ? (socket.getPeerX509Certificate()?.fingerprint256 ?? '')
            : '';
        const localPort = socket.localPort ?? 0;
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body,
            fingerprint,
            localPort,
          });
        });
      },
    );
    request.on('error', reject);
    request.end(options.body);
  });
}
