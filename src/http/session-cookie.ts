// The web app's sign-in: the session token in an HttpOnly cookie, so page scripts never hold it.
// Cookie-authenticated writes must carry a custom header, which another site cannot send
// without a CORS preflight this server never grants (on top of SameSite=Strict).
import type { FastifyReply, FastifyRequest } from 'fastify';

export const SESSION_COOKIE = 'caretrail_session';
/**
 * The name over TLS. Browsers accept a `__Host-` cookie only when it is Secure, has Path=/ and no
 * Domain, so a sibling subdomain cannot plant one (cookie tossing); the server then reads no other.
 */
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;
export const CSRF_HEADER = 'x-caretrail-csrf';

const TOKEN = /^[A-Za-z0-9_\-.~+/=]{10,200}$/;

/** Whether people reach the server over TLS (served here, or ended by a proxy in front). */
function overTls(request: FastifyRequest, publicUrl: string): boolean {
  return request.protocol === 'https' || publicUrl.startsWith('https:');
}

function cookieName(request: FastifyRequest, publicUrl: string): string {
  return overTls(request, publicUrl) ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
}

/** The session token from the request's cookie, or null. */
export function sessionCookie(request: FastifyRequest, publicUrl: string): string | null {
  const header = request.headers.cookie;
  if (header === undefined) return null;
  const name = cookieName(request, publicUrl);
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
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
  const secure = overTls(request, publicUrl) ? '; Secure' : '';
  // No Max-Age: the cookie ends with the browser, the session at its own expiry or idle limit.
  return `Path=/; HttpOnly; SameSite=Strict${secure}`;
}

export function setSessionCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  publicUrl: string,
  token: string,
) {
  reply.header(
    'set-cookie',
    `${cookieName(request, publicUrl)}=${token}; ${cookieAttributes(request, publicUrl)}`,
  );
}

export function clearSessionCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  publicUrl: string,
) {
  reply.header(
    'set-cookie',
    `${cookieName(request, publicUrl)}=; ${cookieAttributes(request, publicUrl)}; Max-Age=0`,
  );
}
