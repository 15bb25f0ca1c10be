// The web app's sign-in: the session token in an HttpOnly cookie, so page scripts never hold it.
// Cookie-authenticated writes must carry a custom header, which another site cannot send
// without a CORS preflight this server never grants (on top of SameSite=Strict).
import type { FastifyReply, FastifyRequest } from 'fastify';

export const SESSION_COOKIE = 'caretrail_session';
export const CSRF_HEADER = 'x-caretrail-csrf';

const TOKEN = /^[A-Za-z0-9_\-.~+/=]{10,200}$/;

/** The session token from the request's cookie, or null. */
export function sessionCookie(request: FastifyRequest): string | null {
  const header = request.headers.cookie;
  if (header === undefined) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== SESSION_COOKIE) continue;
    const value = part.slice(eq + 1).trim();
    return TOKEN.test(value) ? value : null;
  }
  return null;
}

/** A write sent with the cookie but without the header is refused (cross-site forgery). */
export function csrfHeaderMissing(request: FastifyRequest): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return false;
  return request.headers[CSRF_HEADER] !== '1';
}

function cookieAttributes(request: FastifyRequest, publicUrl: string): string {
  // Secure whenever people reach the server over TLS: served here, or ended by a proxy in front
  // (the public URL is https even when the proxy talks plain HTTP to us). Only a plain-HTTP
  // installation goes without (browsers drop Secure cookies over HTTP except on localhost).
  const tls = request.protocol === 'https' || publicUrl.startsWith('https:');
  const secure = tls ? '; Secure' : '';
  // No Max-Age: the cookie ends with the browser, the session at its own expiry or idle limit.
  return `Path=/; HttpOnly; SameSite=Strict${secure}`;
}

export function setSessionCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  publicUrl: string,
  token: string,
) {
  reply.header('set-cookie', `${SESSION_COOKIE}=${token}; ${cookieAttributes(request, publicUrl)}`);
}

export function clearSessionCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  publicUrl: string,
) {
  reply.header(
    'set-cookie',
    `${SESSION_COOKIE}=; ${cookieAttributes(request, publicUrl)}; Max-Age=0`,
  );
}
