// The optional plain-HTTP listener next to HTTPS: every request, whatever its path, is sent to the
// same path and query under the https public URL, and nothing else is ever answered on it.
import http from 'node:http';
import type { Logger } from 'pino';

export interface RedirectListener {
  readonly port: number;
  close(): Promise<void>;
}

/** Where a request for `url` (origin-form, e.g. "/patients/1?x=2") is sent. */
export function redirectTarget(publicUrl: string, url: string | undefined): string {
  // The configured public URL, never the Host header: a forged Host cannot send people elsewhere.
  // An absolute-form or empty target becomes the start page.
  const path = url?.startsWith('/') ? url : '/';
  return `${publicUrl}${path}`;
}

export async function startRedirectListener(options: {
  host: string;
  port: number;
  publicUrl: string;
  log: Logger;
}): Promise<RedirectListener> {
  const server = http.createServer((request, response) => {
    // 301 for reads (cached by browsers, as wanted); 308 keeps the method and body of a write.
    const status = request.method === 'GET' || request.method === 'HEAD' ? 301 : 308;
    response.writeHead(status, {
      location: redirectTarget(options.publicUrl, request.url),
      'content-length': '0',
    });
    response.end();
  });
  // Nothing is kept open for long here: one redirect and the browser goes to HTTPS.
  server.keepAliveTimeout = 1000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  options.log.info(
    { host: options.host, port, to: options.publicUrl },
    'HTTP redirect listener started',
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
