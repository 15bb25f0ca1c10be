// First-run setup: the page behind the printed one-time link, and the API it calls.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';
import { Email, errorResponses, Name, Password, User } from '../schemas.js';

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Caretrail setup</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.2rem;padding:.6rem 1.2rem}#result{margin-top:1rem}</style></head>
<body><h1>Set up Caretrail</h1>
<p>Create your organization and its first administrator. This link works once.</p>
<form id="setup">
<label for="org">Organization</label><input id="org" name="organizationName" required maxlength="200">
<label for="name">Your name</label><input id="name" name="name" required maxlength="200">
<label for="email">Email</label><input id="email" name="email" type="email" required>
<label for="password">Password (at least 12 characters)</label><input id="password" name="password" type="password" minlength="12" required>
<button type="submit">Create</button></form><p id="result" role="status"></p>
<script src="/setup.js"></script></body></html>`;

const SCRIPT = `document.getElementById('setup').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  const body = Object.fromEntries(form.entries());
  body.token = token;
  const out = document.getElementById('result');
  const res = await fetch('/api/v1/setup', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await res.json();
  out.textContent = res.ok ? 'Done. Sign in as ' + json.email + '.' : json.error.message;
});`;

export const setupRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.get('/setup', { config: { public: true } }, (_request, reply) =>
    reply
      .header(
        'content-security-policy',
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'",
      )
      .type('text/html; charset=utf-8')
      .send(PAGE),
  );
  app.get('/setup.js', { config: { public: true } }, (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').send(SCRIPT),
  );

  app.post(
    '/api/v1/setup',
    {
      config: { public: true },
      schema: {
        body: Type.Object(
          {
            token: Type.String({ minLength: 10, maxLength: 200 }),
            organizationName: Name,
            name: Name,
            email: Email,
            password: Password,
          },
          { additionalProperties: false },
        ),
        response: { 201: User, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { token, ...rest } = request.body;
      const user = await services.setup.createAdmin(request.ctx, { ...rest, setupToken: token });
      return reply.code(201).send(user);
    },
  );
};
