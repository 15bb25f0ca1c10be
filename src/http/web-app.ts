// Serves the built web app (web/ → dist/web): hashed assets cached for good, and index.html for
// every other page address, so the app's own router shows the page.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Where `npm run build` puts the app: dist/web under the package root (from src/ or dist/). */
export function defaultWebDir(): string {
  return fileURLToPath(new URL('../../dist/web/', import.meta.url));
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

// Scripts only from this server; Mantine sets inline style attributes; thumbnails may be blobs.
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Caretrail</title></head>
<body><h1>Caretrail</h1><p>The web app is not built. Run <code>npm run build</code>, then restart
the server. The API answers at <code>/api/v1/</code>.</p></body></html>`;

export interface WebApp {
  /** Answers a GET for a page or asset; false when the path is not the web app's. */
  serve(request: FastifyRequest, reply: FastifyReply): boolean;
}

/** The files are listed once at start-up: only those can be served, whatever the URL says. */
export function createWebApp(dir: string | null): WebApp {
  const files = new Map<string, { file: string; type: string }>();
  const walk = (folder: string, prefix: string) => {
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) walk(full, `${prefix}${entry.name}/`);
      else if (entry.isFile())
        files.set(`${prefix}${entry.name}`, {
          file: full,
          type: TYPES[path.extname(entry.name)] ?? 'application/octet-stream',
        });
    }
  };
  if (dir !== null && fs.existsSync(path.join(dir, 'index.html'))) walk(dir, '/');
  const index = files.get('/index.html');

  return {
    serve(request, reply) {
      if (request.method !== 'GET' && request.method !== 'HEAD') return false;
      const pathname = request.url.split('?')[0] ?? '/';
      if (pathname.startsWith('/api/')) return false;
      reply.header('content-security-policy', CSP);
      const asset = files.get(pathname);
      if (asset && asset !== index) {
        // Vite names assets by their content hash: a changed file is a new address.
        const immutable = pathname.startsWith('/assets/');
        reply
          .code(200)
          .header(
            'cache-control',
            immutable ? 'public, max-age=31536000, immutable' : 'public, max-age=3600',
          )
          .type(asset.type);
        void reply.send(fs.createReadStream(asset.file));
        return true;
      }
      // An unknown asset is a 404; any other path is a page of the app.
      if (pathname.startsWith('/assets/') || path.extname(pathname) !== '') return false;
      reply.code(200).header('cache-control', 'no-cache').type('text/html; charset=utf-8');
      void reply.send(index ? fs.createReadStream(index.file) : NOT_BUILT);
      return true;
    },
  };
}
