// TLS for HTTPS and MLLP: the certificate and key files turned into server options (TLS 1.2 and
// 1.3 only, ECDHE key exchange with AEAD ciphers), and their reload into listening servers.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { ConfigError } from './config.js';

// The TLS 1.3 suites are named too: Node caps a context at TLS 1.2 when its list names none.
const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/** A certificate chain and its key, read and checked. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 fingerprint of the leaf certificate (for the log: which one is served). */
  fingerprint: string;
  validTo: string;
}

/** The options every TLS server of Caretrail is created and reloaded with. */
export function tlsServerOptions(material: Pick<TlsMaterial, 'cert' | 'key'>) {
  return {
    cert: material.cert,
    key: material.key,
    minVersion: 'TLSv1.2',
    ciphers: CIPHERS,
    honorCipherOrder: true,
  } satisfies tls.SecureContextOptions;
}

function readFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`Cannot read the ${what} ${file} (${code}).`);
  }
}

/** Reads a PEM file of CA certificates (client certificate verification). */
export function readCaFile(file: string): Buffer {
  const ca = readFile(file, 'CA certificate file');
  try {
    new X509Certificate(ca);
  } catch {
    throw new ConfigError(`The CA certificate file ${file} holds no PEM certificate.`);
  }
  return ca;
}

/** Reads the files and checks that OpenSSL can serve them (a certificate and its own key). */
export function readTlsMaterial(files: TlsFiles): TlsMaterial {
  const cert = readFile(files.certFile, 'TLS certificate');
  const key = readFile(files.keyFile, 'TLS key');
  try {
    const x509 = new X509Certificate(cert);
    tls.createSecureContext(tlsServerOptions({ cert, key }));
    return { cert, key, fingerprint: x509.fingerprint256, validTo: x509.validTo };
  } catch (err) {
    // OpenSSL's reason ("key values mismatch", "no start line") names no secret.
    const reason = err instanceof Error ? err.message : 'unusable';
    throw new ConfigError(
      `The TLS certificate ${files.certFile} and key ${files.keyFile} cannot be used: ${reason}`,
    );
  }
}

export interface TlsReloader {
  /** What servers are created with now. */
  material(): TlsMaterial;
  /**
   * A listening server whose certificate a reload replaces; `extra` adds its own context options
   * (read again at each reload, e.g. the MLLP client CA).
   */
  add(server: tls.Server, extra?: () => tls.SecureContextOptions): void;
  /**
   * Reads the files again and gives every server the new certificate for new handshakes;
   * connections already open keep theirs. Anything unusable is logged and the old one kept.
   */
  reload(): boolean;
}

export function createTlsReloader(files: TlsFiles, log: Logger): TlsReloader {
  let current = readTlsMaterial(files);
  const servers: { server: tls.Server; extra: () => tls.SecureContextOptions }[] = [];
  log.info(
    { fingerprint: current.fingerprint, validTo: current.validTo },
    'TLS certificate loaded',
  );
  return {
    material: () => current,
    add(server, extra = () => ({})) {
      servers.push({ server, extra });
    },
    reload() {
      let next: TlsMaterial;
      let options: tls.SecureContextOptions[];
      try {
        next = readTlsMaterial(files);
        options = servers.map((s) => ({ ...tlsServerOptions(next), ...s.extra() }));
        // All or nothing: every server's new context is built before any is switched.
        for (const o of options) tls.createSecureContext(o);
      } catch (err) {
        log.error(
          {
            reason: err instanceof Error ? err.message : 'unusable',
            fingerprint: current.fingerprint,
          },
          'TLS reload failed: still serving the previous certificate',
        );
        return false;
      }
      servers.forEach((s, i) => {
        s.server.setSecureContext(options[i] ?? {});
      });
      current = next;
      log.info(
        { fingerprint: current.fingerprint, validTo: current.validTo, servers: servers.length },
        'TLS certificate reloaded',
      );
      return true;
    },
  };
}
