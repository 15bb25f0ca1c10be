// A real Caretrail (real database, real services, Fastify inject) with a movable clock and
// captured log lines, plus shortcuts to create organizations and signed-in users.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import type { LightMyRequestResponse } from 'fastify';
import { loadConfig, type Config } from '../../src/config.js';
import type { Clock } from '../../src/domain/clock.js';
import type { Role } from '../../src/domain/roles.js';
import { createLogger } from '../../src/log.js';
import { createRuntime, type Runtime } from '../../src/server.js';
import { awaitAuditSealed } from '../../src/audit-sealing/index.js';
import { systemContext } from '../../src/services/context.js';
import { tempDir } from './engines.js';

export class TestClock implements Clock {
  private current: number;
  constructor(start: Date = new Date()) {
    this.current = start.getTime();
  }
  now(): Date {
    return new Date(this.current);
  }
  advance(ms: number): void {
    this.current += ms;
  }
}

export const PASSWORD = 'correct horse battery staple';

export interface SignedIn {
  token: string;
  userId: string;
  organizationId: string;
  email: string;
  role: Role;
}

export interface Harness {
  runtime: Runtime;
  config: Config;
  clock: TestClock;
  logs: string[];
  request(options: {
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
    url: string;
    token?: string;
    body?: unknown;
    headers?: Record<string, string>;
    remoteAddress?: string;
  }): Promise<LightMyRequestResponse>;
  /** A new organization with an admin, signed in. */
  newOrganization(): Promise<SignedIn>;
  /** A new user of `role` in the admin's organization, signed in. */
  newUser(admin: SignedIn, role: Role): Promise<SignedIn>;
  close(): Promise<void>;
}

export const uniqueEmail = (label: string): string =>
  `${label}-${randomBytes(5).toString('hex')}@example.test`;

export async function startHarness(
  databaseUrl: string,
  env: Record<string, string> = {},
  options: Parameters<typeof createRuntime>[2] = {},
  // false: the sealer's lag stays visible (tests of sealing itself).
  { sealAfterRequests = true }: { sealAfterRequests?: boolean } = {},
): Promise<Harness> {
  const dataDir = env.CARETRAIL_DATA_DIR ?? tempDir('caretrail-data-');
  const config = loadConfig({
    CARETRAIL_DATABASE_URL: databaseUrl,
    CARETRAIL_LOG_LEVEL: 'info',
    CARETRAIL_DATA_DIR: dataDir,
    ...env,
  });
  const clock = new TestClock();
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString('utf8'));
      done();
    },
  });
  const runtime = await createRuntime(config, createLogger(config.logLevel, sink), {
    clock,
    ...options,
  });

  const request: Harness['request'] = async ({
    method,
    url,
    token,
    body,
    headers = {},
    remoteAddress,
  }) => {
    const response = await runtime.app.inject({
      method,
      url,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined && typeof body !== 'string'
          ? { 'content-type': 'application/json' }
          : {}),
        ...headers,
      },
      ...(body !== undefined
        ? { payload: typeof body === 'string' ? body : JSON.stringify(body) }
        : {}),
      ...(remoteAddress ? { remoteAddress } : {}),
    });
    // On PostgreSQL a request's audit event is sealed into the chain by the sealer within a
    // second; tests that read audit_events directly see it sealed, as audit reads do.
    if (sealAfterRequests) await awaitAuditSealed(runtime.services.deps);
    return response;
  };

  async function login(email: string, password = PASSWORD): Promise<SignedIn> {
    const res = await request({
      method: 'POST',
      url: '/api/v1/auth/login',
      body: { email, password },
    });
    if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
    const json = res.json<{
      token: string;
      user: { id: string; organizationId: string; role: Role };
    }>();
    return {
      token: json.token,
      userId: json.user.id,
      organizationId: json.user.organizationId,
      email,
      role: json.user.role,
    };
  }

  return {
    runtime,
    config,
    clock,
    logs,
    request,
    async newOrganization() {
      const email = uniqueEmail('admin');
      await runtime.services.setup.createAdmin(systemContext('test'), {
        organizationName: `Clinic ${randomBytes(4).toString('hex')}`,
        email,
        name: 'Ada Admin',
        password: PASSWORD,
      });
      return login(email);
    },
    async newUser(admin, role) {
      const email = uniqueEmail(role);
      const res = await request({
        method: 'POST',
        url: '/api/v1/users',
        token: admin.token,
        body: { email, name: `${role} user`, role, password: PASSWORD },
      });
      if (res.statusCode !== 201)
        throw new Error(`user creation failed: ${res.statusCode} ${res.body}`);
      return login(email);
    },
    async close() {
      await runtime.close();
      if (env.CARETRAIL_DATA_DIR === undefined)
        fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
