// Schema-driven fuzzing: requests generated from every route's schema (valid, broken and hostile
// values) by every kind of caller; no 5xx, no stack trace, one error shape, nothing of another
// organization, and nothing changed by a refused request. Reproduce with CARETRAIL_FUZZ_SEED.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { buildDicom } from '../helpers/dicom-fixtures.js';
import { describeEachEngine, type EngineName } from '../helpers/engines.js';
import { invitationToken } from '../helpers/invitations.js';
import {
  PASSWORD,
  startHarness,
  uniqueEmail,
  type Harness,
  type SignedIn,
} from '../helpers/harness.js';

const LONG = process.env.CARETRAIL_FAULTS_LONG === '1';
/**
 * Requests per engine. Every refused API request still writes its audit event, and on PostgreSQL
 * those commits queue on the audit chain's head row (about 100 a second here), so the default run
 * sends 25,000 on SQLite and 10,000 on PostgreSQL (about 3 minutes on 2 cores); the long variant
 * 100,000 on each. CARETRAIL_FUZZ_REQUESTS sets both.
 */
const REQUESTS_OF: Record<EngineName, number> = process.env.CARETRAIL_FUZZ_REQUESTS
  ? {
      sqlite: Number(process.env.CARETRAIL_FUZZ_REQUESTS),
      postgres: Number(process.env.CARETRAIL_FUZZ_REQUESTS),
    }
  : LONG
    ? { sqlite: 100_000, postgres: 100_000 }
    : { sqlite: 25_000, postgres: 10_000 };
/** Requests sent together (the runner batches them, as clients do; group commit needs it). */
const BATCH = 32;
const SEED = Number(process.env.CARETRAIL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const PATH = process.env.CARETRAIL_FUZZ_PATH;

/** Seeded in organization B only: no response to a caller of organization A may contain them. */
const B_MARKERS = [
  'Quokkaberry Zanzibarr', // patient name
  'Ottoline Vexhammerr', // owner name
  'vexhammerr.orgb@example.test', // owner email
  'Borgnote zygomatic tracker 4471', // final, released note
  'Borginternal methadone ledger 5512', // internal draft note
  '985141592653589', // microchip
  'Borgfile radiograph caption 8832', // document text
  'Borgdoc title 9917', // document title
  'Borgtrainer Wexley', // trainer's name (a share of B)
] as const;

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean;
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minProperties?: number;
  format?: string;
}

interface RouteSchema {
  params?: JsonSchema;
  querystring?: JsonSchema;
  body?: JsonSchema;
  headers?: JsonSchema;
}

interface Route {
  method: Method;
  url: string;
  schema: RouteSchema;
}

const ACTORS = [
  'A.admin',
  'A.clinician',
  'A.nurse',
  'A.reception',
  'A.auditor',
  'owner',
  'trainer',
  'walker',
  'carer',
  'key',
  'anonymous',
  'garbage',
] as const;
type Actor = (typeof ACTORS)[number];

interface FuzzRequest {
  route: string;
  actor: Actor;
  method: Method;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

/** Ids to aim at, by kind; filled while seeding. */
interface Pools {
  /** What each seeded id is: patients, notes, documents, shares, consents, keys, results, ... */
  kindOf: Map<string, string>;
  a: string[];
  b: string[];
  /** B's patients that carry the markers (never targets of break-glass, which would show them). */
  bMarked: string[];
  emails: string[];
}

// ---------------------------------------------------------------- hostile values

const NASTY_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '%00',
  '%ED%A0%80',
  '%C0%AF',
  '%E2%82',
  '../../../../etc/passwd',
  '..%2f..%2f..%2fetc%2fpasswd',
  '..\\..\\windows\\win.ini',
  "' OR '1'='1",
  "'; DROP TABLE patients; --",
  '" OR ""="',
  '1; SELECT pg_sleep(1)',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  '{{7*7}}',
  '${jndi:ldap://x}',
  '__proto__',
  'constructor',
  'null',
  'undefined',
  'NaN',
  '-1',
  '0',
  '1e309',
  '9007199254740993',
  '-9223372036854775809',
  '0x7fffffff',
  '\u202eevil',
  '\ud83d\udc36\ud83d\udc31',
  'Zalgo̶̡͈̓ͅ',
  '\ufeff',
  '\ud800',
  'ＡＢＣ',
  '\r\nX-Injected: 1',
  'a'.repeat(101),
  'a'.repeat(257),
  'x'.repeat(5000),
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '019c0000-0000-7000-8000-000000000000',
  '*',
  '%',
  '?',
  '#',
  '/',
  '//',
  '.',
  '..',
  'admin',
  'true',
];

const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 200_000 }).map((n) => 'é'.repeat(n)) },
);

const nastyNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, -1, -0, 1.5, 2 ** 31, 2 ** 53 + 2, -(2 ** 63), 1e308, Number.MIN_VALUE),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: nastyString },
  { weight: 2, arbitrary: nastyNumber },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom([], {}, [null], { $gt: '' }, { __proto__: 1 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** Lone surrogates become U+FFFD: a URL cannot carry them (raw invalid UTF-8 is in NASTY). */
const wellFormed = (text: string): string =>
  text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');

const b64 = (text: string): string => Buffer.from(text).toString('base64url');

// ---------------------------------------------------------------- values from schemas

/** Ids of `kind` (the collection named before the parameter) mostly, any id sometimes. */
function idArb(pools: Pools, kind?: string): fc.Arbitrary<string> {
  const ofKind = (ids: string[]) => {
    const wanted = kind === 'unmatched' ? 'results' : kind === 'actors' ? 'users' : kind;
    const matching = ids.filter((id) => pools.kindOf.get(id) === wanted);
    return matching.length > 0 ? matching : ids;
  };
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...ofKind(pools.a)) },
    { weight: 3, arbitrary: fc.constantFrom(...ofKind(pools.b)) },
    { weight: 2, arbitrary: fc.constantFrom(...pools.a) },
    { weight: 1, arbitrary: fc.constantFrom(...pools.b) },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: nastyString },
  );
}

function cursorArb(pools: Pools): fc.Arbitrary<string> {
  const part = fc.oneof(
    fc.constantFrom(...pools.b, ...pools.a),
    fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    nastyString,
  );
  return fc.oneof(
    fc.array(part, { maxLength: 4 }).map((parts) => b64(JSON.stringify(parts))),
    fc.jsonValue({ maxDepth: 2 }).map((v) => b64(JSON.stringify(v))),
    nastyString,
    fc.string({ minLength: 1, maxLength: 60 }),
  );
}

function emailArb(pools: Pools): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(...pools.emails),
    fc.emailAddress(),
    fc.emailAddress(),
    fc.constant(uniqueEmail('fuzz')),
    nastyString,
  );
}

/** A value that satisfies `schema` (ids, emails and cursors aimed at seeded objects). */
function validArb(schema: JsonSchema, name: string, pools: Pools): fc.Arbitrary<unknown> {
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((s) => validArb(s, name, pools)));
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer':
      return fc.integer({
        min: schema.minimum ?? -(2 ** 31),
        max: Math.min(schema.maximum ?? 2 ** 31, 2 ** 31),
      });
    case 'number':
      return fc.double({
        min: schema.minimum ?? -1e9,
        max: schema.maximum ?? 1e9,
        noNaN: true,
        noDefaultInfinity: true,
      });
    case 'array':
      return fc.array(schema.items ? validArb(schema.items, name, pools) : fc.string(), {
        minLength: schema.minItems ?? 0,
        maxLength: Math.min(schema.maxItems ?? 4, 4),
      });
    case 'object': {
      const properties = schema.properties ?? {};
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, sub] of Object.entries(properties)) model[key] = validArb(sub, key, pools);
      return fc.record(model, { requiredKeys: schema.required ?? [] });
    }
    case 'string':
    default: {
      const min = schema.minLength ?? 0;
      const max = schema.maxLength ?? 200;
      const fits = (s: string) => s.length >= min && s.length <= max;
      if (schema.pattern === '^\\d{4}-\\d{2}-\\d{2}$')
        return fc.oneof(
          fc
            .date({ min: new Date('1990-01-01'), max: new Date('2026-01-01'), noInvalidDate: true })
            .map((d) => d.toISOString().slice(0, 10)),
          fc.stringMatching(new RegExp(schema.pattern)),
        );
      if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern));
      if (name === 'value' && min <= 15 && max >= 15)
        return fc.oneof(
          fc.stringMatching(/^9[0-9]{14}$/),
          fc.string({ minLength: min, maxLength: Math.min(max, 30) }),
        );
      if (schema.format === 'date-time' || /At$|^from$|^to$|[dD]ate$/.test(name))
        return fc.oneof(
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10)),
          fc.string({ minLength: min, maxLength: Math.min(max, 30) }),
        );
      if (/email/i.test(name)) return emailArb(pools).filter(fits);
      if (name === 'cursor') return cursorArb(pools).filter(fits);
      if (/(^id$|Id$)/.test(name))
        return idArb(pools, name === 'id' ? undefined : `${name.slice(0, -2)}s`).filter(fits);
      if (name === 'password') return fc.constantFrom(PASSWORD, 'wrong password', 'x');
      return fc.oneof(
        {
          weight: 3,
          arbitrary: fc.stringMatching(/^[A-Z][a-z]{2,11}( [A-Z][a-z]{2,11}){0,3}$/).filter(fits),
        },
        { weight: 2, arbitrary: fc.string({ minLength: min, maxLength: Math.min(max, 40) }) },
        { weight: 1, arbitrary: nastyString.filter(fits) },
        { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: min, maxLength: 20 }) },
      );
    }
  }
}

/** A value that probably breaks `schema`: a wrong type, a hostile string, a field too many. */
function invalidObjectArb(schema: JsonSchema, pools: Pools): fc.Arbitrary<unknown> {
  const valid = validArb(schema, '', pools) as fc.Arbitrary<Record<string, unknown>>;
  const keys = Object.keys(schema.properties ?? {});
  const variants: fc.Arbitrary<unknown>[] = [
    fc.tuple(valid, fc.string({ minLength: 1, maxLength: 20 }), nastyValue).map(([v, k, x]) => ({
      ...v,
      [k]: x,
    })),
    nastyValue,
  ];
  if (keys.length > 0)
    variants.push(
      fc.tuple(valid, fc.constantFrom(...keys), nastyValue).map(([v, k, x]) => ({ ...v, [k]: x })),
      fc.tuple(valid, fc.constantFrom(...keys)).map(([v, k]) => {
        const copy = { ...v };
        // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- a required field goes missing
        delete copy[k];
        return copy;
      }),
    );
  return fc.oneof(...variants);
}

function objectArb(schema: JsonSchema | undefined, pools: Pools): fc.Arbitrary<unknown> {
  if (!schema) return fc.oneof(fc.constant(undefined), nastyValue);
  return fc.oneof(
    { weight: 4, arbitrary: validArb(schema, '', pools) },
    { weight: 2, arbitrary: invalidObjectArb(schema, pools) },
  );
}

// ---------------------------------------------------------------- whole requests

function multipartBody(
  fields: [string, string][],
  file: { name: string; type: string; bytes: Buffer } | null,
  boundary: string,
): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields)
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      ),
    );
  if (file)
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${file.name}"\r\nContent-Type: ${file.type}\r\n\r\n`,
      ),
      file.bytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    );
  return Buffer.concat(parts);
}

const headerText = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 80,
});

const CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'multipart/form-data; boundary=',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/json;;;',
  'application/dicom',
  'x-application/hl7-v2+er7',
  'image/png',
  'application/octet-stream',
  '*/*',
  'json',
];

interface BodyChoice {
  payload?: string | Buffer;
  contentType?: string;
}

/** The body: JSON from the schema (valid or broken), or raw bytes for the upload routes. */
function bodyArb(route: Route, pools: Pools): fc.Arbitrary<BodyChoice> {
  const json = objectArb(route.schema.body, pools).map((v): BodyChoice =>
    v === undefined ? {} : { payload: JSON.stringify(v), contentType: 'application/json' },
  );
  const raw: fc.Arbitrary<BodyChoice>[] = [
    fc.constantFrom<BodyChoice>(
      { payload: '{"a":', contentType: 'application/json' },
      { payload: '', contentType: 'application/json' },
      { payload: '{"name":"a\\u0000b"}', contentType: 'application/json' },
      { payload: '[1,2,', contentType: 'application/json' },
      { payload: '{"__proto__":{"admin":true}}', contentType: 'application/json' },
      { payload: 'null', contentType: 'application/json' },
      { payload: '\ufeff{}', contentType: 'application/json' },
      { payload: '{}'.padEnd(300_000, ' '), contentType: 'application/json' },
      { payload: `{"x":"${'y'.repeat(3_000_000)}"}`, contentType: 'application/json' },
    ),
    fc
      .tuple(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(...CONTENT_TYPES))
      .map(([bytes, contentType]) => ({ payload: Buffer.from(bytes), contentType })),
    fc
      .tuple(
        fc.array(
          fc.tuple(
            fc.constantFrom('visibility', 'sharedWith', 'kind', 'title', 'x', ''),
            nastyString,
          ),
          { maxLength: 4 },
        ),
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom('ok', 'missing-file', 'no-end', 'wrong-boundary'),
      )
      .map(([fields, bytes, shape]) => {
        const boundary = 'fz' + randomUUID().slice(0, 8);
        let body = multipartBody(
          fields,
          shape === 'missing-file'
            ? null
            : { name: '../../evil.txt', type: 'text/plain', bytes: Buffer.from(bytes) },
          boundary,
        );
        if (shape === 'no-end') body = body.subarray(0, Math.max(0, body.length - 10));
        return {
          payload: body,
          contentType: `multipart/form-data; boundary=${shape === 'wrong-boundary' ? 'zz' : boundary}`,
        };
      }),
  ];
  const uploads: fc.Arbitrary<BodyChoice>[] = [];
  if (/\/documents$/.test(route.url) && route.method === 'POST')
    uploads.push(
      fc
        .tuple(
          fc.constantFrom('internal', 'shared', 'owner', 'bogus'),
          fc.constantFrom('report.txt', 'a.png', '', '\u0000.txt', '../x'),
        )
        .map(([visibility, name]) => {
          const boundary = 'fz' + randomUUID().slice(0, 8);
          return {
            payload: multipartBody(
              [['visibility', visibility]],
              {
                name,
                type: 'text/plain',
                bytes: Buffer.from('fuzz upload'),
              },
              boundary,
            ),
            contentType: `multipart/form-data; boundary=${boundary}`,
          };
        }),
    );
  if (route.url.endsWith('/content') && route.method === 'PUT')
    uploads.push(
      fc
        .tuple(
          fc.uint8Array({ maxLength: 200 }),
          fc.constantFrom('text/plain', 'image/png', 'application/pdf'),
        )
        .map(([bytes, contentType]) => ({ payload: Buffer.from(bytes), contentType })),
    );
  if (route.url.endsWith('/hl7v2'))
    uploads.push(
      fc
        .tuple(fc.constantFrom('900000000000042', '985141592653', ''), nastyString)
        .map(([chip, junk]) => ({
          payload: [
            `MSH|^~\\&|ANALYZER|LAB|CARETRAIL||20261123101500||ORU^R01|M-${randomUUID()}|P|2.5.1`,
            `PID|1||${chip}^^^MICROCHIP^MC`,
            `OBX|1|NM|HCT^Hematocrit||${junk.replace(/[\r\n]/g, '')}|%|37-55|N|||F`,
          ].join('\r'),
          contentType: 'x-application/hl7-v2+er7',
        })),
    );
  if (route.url.endsWith('/dicom'))
    uploads.push(
      fc.tuple(fc.integer({ min: 0, max: 400 }), fc.boolean()).map(([cut, truncate]) => {
        const bytes = buildDicom({
          patientId: '900000000000042',
          sopInstanceUid: `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`,
        });
        return {
          payload: truncate ? bytes.subarray(0, cut) : bytes,
          contentType: 'application/dicom',
        };
      }),
    );
  return fc.oneof(
    { weight: route.schema.body ? 6 : 1, arbitrary: json },
    { weight: 2, arbitrary: fc.oneof(...raw) },
    ...uploads.map((arbitrary) => ({ weight: 5, arbitrary })),
  );
}

function queryArb(route: Route, pools: Pools): fc.Arbitrary<string> {
  const structured = objectArb(route.schema.querystring, pools).map((v) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return '';
    const search = new URLSearchParams();
    for (const [k, x] of Object.entries(v as Record<string, unknown>))
      search.append(k, typeof x === 'string' ? x : JSON.stringify(x));
    const text = search.toString();
    return text ? `?${text}` : '';
  });
  return fc.oneof(
    { weight: 8, arbitrary: structured },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '?%zz=1',
        '?limit=1&limit=2',
        '?&&=&',
        '?limit[]=1',
        '?cursor=',
        '?a=%00',
      ),
    },
  );
}

function urlArb(route: Route, pools: Pools): fc.Arbitrary<string> {
  const names = [...route.url.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1] ?? '');
  const values = names.map((name) => {
    const schema = route.schema.params?.properties?.[name];
    const kind = new RegExp(`/([a-z-]+)/:${name}\\b`).exec(route.url)?.[1];
    const base =
      name === 'version'
        ? fc.oneof(fc.integer({ min: 1, max: 3 }).map(String), nastyNumber.map(String), nastyString)
        : route.url.endsWith('/break-glass')
          ? idArb({ ...pools, b: pools.b.filter((id) => !pools.bMarked.includes(id)) }, kind)
          : schema
            ? idArb(pools, kind)
            : nastyString;
    return fc.tuple(base, fc.integer({ min: 0, max: 9 })).map(([v, mode]) =>
      // Mostly encoded as a client would; sometimes raw (traversal, unicode, reserved characters).
      mode < 8 ? encodeURIComponent(wellFormed(v)) : wellFormed(v).replace(/[\s#?]/g, ''),
    );
  });
  return fc.tuple(fc.tuple(...values), queryArb(route, pools)).map(([vals, query]) => {
    let i = 0;
    const path = route.url.replace(/:([A-Za-z]+)/g, () => vals[i++] ?? '');
    return `${path === '' ? '/' : path}${query}`;
  });
}

/** `arb` one time in `n`, null otherwise. */
function oneIn<T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
}

function extraHeadersArb(route: Route): fc.Arbitrary<Record<string, string>> {
  const schemaHeaders = route.schema.headers?.properties ?? {};
  const entries: fc.Arbitrary<[string, string] | null>[] = [
    oneIn(
      2,
      fc.tuple(
        fc.constant('if-match'),
        fc.oneof(
          fc.constantFrom('"1"', '"2"', '*', 'W/"1"', '"-1"', '"99999999999999999999"', '1'),
          headerText,
        ),
      ),
    ),
    oneIn(
      3,
      fc.tuple(
        fc.constant('idempotency-key'),
        fc.oneof(fc.uuid(), headerText, fc.constant('k'.repeat(300))),
      ),
    ),
    oneIn(
      3,
      fc.tuple(
        fc.constant('range'),
        fc.constantFrom(
          'bytes=0-10',
          'bytes=-5',
          'bytes=99999999-',
          'bytes=5-1',
          'bytes=0-1,3-4',
          'items=0-1',
          'bytes=abc',
        ),
      ),
    ),
    oneIn(
      4,
      fc.tuple(
        fc.constant('x-forwarded-for'),
        fc.constantFrom('10.0.0.1', '1.2.3.4, 5.6.7.8', 'garbage'),
      ),
    ),
    oneIn(
      4,
      fc.tuple(fc.constant('accept'), fc.constantFrom('text/html', '*/*', 'application/xml')),
    ),
  ];
  for (const name of Object.keys(schemaHeaders))
    entries.push(
      oneIn(
        2,
        fc.tuple(
          fc.constant(name),
          name === 'x-caretrail-signature'
            ? fc.oneof(fc.stringMatching(/^sha256=[0-9a-f]{64}$/), headerText)
            : headerText,
        ),
      ),
    );
  return fc.tuple(...entries).map((pairs) => {
    const headers: Record<string, string> = {};
    for (const pair of pairs) if (pair) headers[pair[0]] = pair[1];
    return headers;
  });
}

const ROUTE_WEIGHT: Record<string, number> = {
  // Each of these hashes a password (argon2, tens of milliseconds) or scans the whole audit
  // trail: fewer of them keeps the run inside its time.
  'POST /api/v1/auth/login': 1,
  'POST /api/v1/auth/session': 1,
  'POST /api/v1/setup': 1,
  'POST /api/v1/users': 1,
  'POST /api/v1/invitations/:token/accept': 1,
  'GET /api/v1/audit/verify': 1,
  'GET /api/v1/audit/export.csv': 2,
  // Ends the caller's session: the runner signs the caller in again (argon2).
  'POST /api/v1/auth/logout': 1,
};

function requestArb(routes: Route[], pools: Pools): fc.Arbitrary<FuzzRequest> {
  const perRoute = routes.map((route) => {
    const key = `${route.method} ${route.url}`;
    return {
      weight: ROUTE_WEIGHT[key] ?? 10,
      arbitrary: fc
        .record({
          actor: fc.constantFrom(...ACTORS),
          url: urlArb(route, pools),
          body: bodyArb(route, pools),
          contentType: oneIn(8, fc.constantFrom(...CONTENT_TYPES)),
          headers: extraHeadersArb(route),
          method: oneIn(30, fc.constantFrom<Method>('GET', 'POST', 'PATCH', 'PUT', 'DELETE')),
        })
        .map(({ actor, url, body, contentType, headers, method }): FuzzRequest => {
          const h: Record<string, string> = { ...headers };
          const type = contentType ?? body.contentType;
          if (type !== undefined && body.payload !== undefined) h['content-type'] = type;
          return {
            route: key,
            actor,
            method: method ?? route.method,
            url,
            headers: h,
            ...(body.payload !== undefined ? { payload: body.payload } : {}),
          };
        }),
    };
  });
  return fc.oneof(...perRoute);
}

// ---------------------------------------------------------------- checks

const STACK_TRACE =
  /\bat \S+ \(|:\d+:\d+\)|node_modules|\/src\/|\.ts:\d+|\.js:\d+|"stack"|\\n\s+at |Error: /;

function describe(req: FuzzRequest): string {
  const payload =
    req.payload === undefined
      ? ''
      : Buffer.isBuffer(req.payload)
        ? ` <${req.payload.length} bytes>`
        : ` ${req.payload.slice(0, 300)}`;
  return `${req.actor}: ${req.method} ${req.url.slice(0, 300)} ${JSON.stringify(req.headers).slice(0, 300)}${payload}`;
}

/** Why the answer is wrong, or null. */
function problem(req: FuzzRequest, res: LightMyRequestResponse): string | null {
  const body = res.body;
  if (res.statusCode >= 500) return `status ${res.statusCode}: ${body.slice(0, 300)}`;
  const hl7 = String(res.headers['content-type']).startsWith('x-application/hl7-v2');
  if (hl7 && req.route === 'POST /api/v1/integrations/hl7v2') {
    // HL7 v2 senders are answered in HL7: a refusal is an ACK with AR or AE (api-v1.md).
    if (res.statusCode >= 400 && !/^MSH\|[^\r]*\rMSA\|A[RE]\|/.test(body))
      return `a ${res.statusCode} that is not an HL7 ACK AR/AE: ${body.slice(0, 300)}`;
    if (STACK_TRACE.test(body)) return `internals in a ${res.statusCode}: ${body.slice(0, 300)}`;
  } else if (res.statusCode >= 400) {
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return `a ${res.statusCode} whose body is not JSON: ${body.slice(0, 200)}`;
    }
    const error = (json as { error?: Record<string, unknown> } | null)?.error;
    if (
      typeof error !== 'object' ||
      Object.keys(json as object).join() !== 'error' ||
      typeof error.code !== 'string' ||
      typeof error.message !== 'string' ||
      error.message.trim() === '' ||
      error.requestId !== res.headers['x-request-id']
    )
      return `a ${res.statusCode} not in the error shape: ${body.slice(0, 300)}`;
    if (STACK_TRACE.test(body)) return `internals in a ${res.statusCode}: ${body.slice(0, 300)}`;
  }
  for (const marker of B_MARKERS)
    if (body.includes(marker))
      return `organization B's "${marker}" in a ${res.statusCode} answer to ${req.actor}`;
  return null;
}

// ---------------------------------------------------------------- the run

describeEachEngine('schema-driven fuzzing', ({ engine, url }) => {
  const REQUESTS = REQUESTS_OF[engine];
  let h: Harness;
  const tokens = new Map<Actor, string | null>();
  const emails = new Map<Actor, string>();
  const pools: Pools = { kindOf: new Map(), a: [], b: [], bMarked: [], emails: [] };
  let routes: Route[] = [];
  let fingerprintSql = '';

  async function ok<T>(
    token: string | undefined,
    req: { method: Method; url: string; body?: unknown; headers?: Record<string, string> },
    status = 201,
  ): Promise<T> {
    const res = await h.runtime.app.inject({
      method: req.method,
      url: req.url,
      // Not the fuzzer's address, whose failed sign-ins lock it out.
      remoteAddress: '10.99.0.1',
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(req.body !== undefined && !Buffer.isBuffer(req.body)
          ? { 'content-type': 'application/json' }
          : {}),
        ...req.headers,
      },
      ...(req.body !== undefined
        ? { payload: Buffer.isBuffer(req.body) ? req.body : JSON.stringify(req.body) }
        : {}),
    });
    assert.equal(res.statusCode, status, `${req.method} ${req.url}: ${res.body}`);
    return (res.body ? res.json() : null) as T;
  }

  async function login(email: string): Promise<string> {
    const json = await ok<{ token: string }>(
      undefined,
      { method: 'POST', url: '/api/v1/auth/login', body: { email, password: PASSWORD } },
      200,
    );
    return json.token;
  }

  /**
   * An organization with patients (owners, microchips), notes (draft, final, released,
   * internal), documents, consents, shares, results and a subscription. `text` turns organization
   * B's markers into A's plain text. Returns the ids to aim at and the sharees' tokens.
   */
  async function seedOrganization(
    label: 'A' | 'B',
    admin: SignedIn,
    clinician: SignedIn,
    text: (what: string) => string,
  ) {
    const ids: string[] = [];
    const patients: string[] = [];
    let firstOwnerEmail = '';
    let firstOwnerId = '';
    for (let i = 0; i < 3; i++) {
      const chip =
        label === 'B' && i === 0 ? '985141592653589' : `98510000${label === 'A' ? 1 : 2}${i}00000`;
      const ownerEmail =
        label === 'B' && i === 0
          ? 'vexhammerr.orgb@example.test'
          : uniqueEmail(`owner-${label.toLowerCase()}`);
      const patient = await ok<{ id: string; owners: { id: string }[] }>(clinician.token, {
        method: 'POST',
        url: '/api/v1/patients',
        body: {
          name: i === 0 ? text('Quokkaberry Zanzibarr') : `Patient ${label}${i}`,
          species: 'canine',
          identifiers: [{ system: 'microchip', value: chip }],
          owners: [
            {
              name: i === 0 ? text('Ottoline Vexhammerr') : `Owner ${label}${i}`,
              email: ownerEmail,
            },
          ],
        },
      });
      patients.push(patient.id);
      const ownerId = patient.owners[0]?.id ?? '';
      ids.push(patient.id, ownerId);
      pools.kindOf.set(patient.id, 'patients');
      if (i === 0) {
        firstOwnerEmail = ownerEmail;
        firstOwnerId = ownerId;
      } else if (label === 'A') pools.emails.push(ownerEmail);
      for (const [kind, visibility, final, released, body] of [
        ['clinical', 'owner', true, true, text('Borgnote zygomatic tracker 4471')],
        ['clinical', 'internal', false, false, text('Borginternal methadone ledger 5512')],
        ['soap', 'shared', true, false, `Plain note ${label}${i}`],
      ] as const) {
        const note = await ok<{ id: string }>(clinician.token, {
          method: 'POST',
          url: `/api/v1/patients/${patient.id}/notes`,
          body: {
            kind,
            body,
            visibility,
            ...(visibility === 'internal' ? {} : { sharedWith: ['trainer', 'walker', 'carer'] }),
          },
        });
        ids.push(note.id);
        pools.kindOf.set(note.id, 'notes');
        if (final)
          await ok(
            clinician.token,
            { method: 'POST', url: `/api/v1/notes/${note.id}/finalize` },
            200,
          );
        if (released)
          await ok(
            clinician.token,
            { method: 'POST', url: `/api/v1/notes/${note.id}/release` },
            200,
          );
      }
      for (const visibility of ['owner', 'internal']) {
        const boundary = `seed${randomUUID().slice(0, 8)}`;
        const doc = await ok<{ id: string }>(clinician.token, {
          method: 'POST',
          url: `/api/v1/patients/${patient.id}/documents`,
          body: multipartBody(
            [
              ['visibility', visibility],
              ['title', text('Borgdoc title 9917')],
            ],
            {
              name: 'report.txt',
              type: 'text/plain',
              bytes: Buffer.from(text('Borgfile radiograph caption 8832')),
            },
            boundary,
          ),
          headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        });
        ids.push(doc.id);
        pools.kindOf.set(doc.id, 'documents');
      }
    }
    // Shares of the first patient: the owner, a trainer (write), a walker and a carer (read),
    // each with the owner's consent; two more the fuzzer may revoke.
    const first = patients[0] ?? '';
    const share = async (email: string, role: string, access: 'read' | 'write') => {
      let consentId = '';
      if (role !== 'owner')
        consentId = (
          await ok<{ id: string }>(clinician.token, {
            method: 'POST',
            url: `/api/v1/patients/${first}/consents`,
            body: {
              granteeEmail: email,
              purpose: 'care',
              scope: access,
              method: 'in_person',
              ownerId: firstOwnerId,
            },
          })
        ).id;
      const created = await ok<{ id: string }>(clinician.token, {
        method: 'POST',
        url: `/api/v1/patients/${first}/shares`,
        body: { email, role, access },
      });
      pools.kindOf.set(created.id, 'shares');
      pools.kindOf.set(consentId, 'consents');
      return [created.id, consentId];
    };
    const people: Partial<Record<Actor, { token: string; email: string }>> = {};
    for (const [role, access] of [
      ['owner', 'write'],
      ['trainer', 'write'],
      ['walker', 'read'],
      ['carer', 'read'],
    ] as const) {
      const email = role === 'owner' ? firstOwnerEmail : uniqueEmail(role);
      const created = await share(email, role, access);
      // The sharees of A are the fuzzing actors: their shares and consents are not targets.
      if (label === 'B') ids.push(...created);
      const token = await invitationToken(h, email);
      await ok(
        undefined,
        {
          method: 'POST',
          url: `/api/v1/invitations/${token}/accept`,
          body: {
            name: role === 'trainer' ? text('Borgtrainer Wexley') : 'Sam Sharee',
            password: PASSWORD,
          },
        },
        200,
      );
      people[role] = { token: await login(email), email };
    }
    for (const role of ['walker', 'carer'])
      ids.push(...(await share(uniqueEmail(`victim-${role}`), role, 'read')));
    // Results: a key, one result matched by microchip, one unmatched.
    const key = await ok<{ id: string; key: string }>(admin.token, {
      method: 'POST',
      url: '/api/v1/integrations/keys',
      body: { name: `Analyzer ${label}` },
    });
    const victimKey = await ok<{ id: string }>(admin.token, {
      method: 'POST',
      url: '/api/v1/integrations/keys',
      body: { name: 'Old analyzer' },
    });
    ids.push(victimKey.id);
    pools.kindOf.set(victimKey.id, 'keys');
    pools.kindOf.set(key.id, 'keys');
    if (label === 'B') ids.push(key.id);
    for (const chip of [
      label === 'B' ? '985141592653589' : '985100001000000',
      `90000${label === 'A' ? 1 : 2}000000042`,
    ]) {
      const result = await ok<{ id: string }>(key.key, {
        method: 'POST',
        url: '/api/v1/integrations/results',
        body: {
          patient: { identifier: { system: 'microchip', value: chip } },
          source: 'analyzer',
          kind: 'lab',
          observations: [{ code: 'HCT', value: 38.2, unit: '%' }],
        },
      });
      ids.push(result.id);
      pools.kindOf.set(result.id, 'results');
    }
    const subscription = await ok<{ id: string }>(admin.token, {
      method: 'POST',
      url: '/api/v1/subscriptions',
      body: { events: ['note.finalized'], patientId: first, email: uniqueEmail('follow') },
    });
    ids.push(subscription.id);
    pools.kindOf.set(subscription.id, 'subscriptions');
    // Staff the fuzzer may rename, disable or sign out.
    for (const role of ['nurse', 'reception'] as const) {
      const victim = await h.newUser(admin, role);
      ids.push(victim.userId);
      pools.kindOf.set(victim.userId, 'users');
      if (label === 'A') pools.emails.push(victim.email);
    }
    // A patient with nothing on it: the one of B that break-glass may open.
    const stray = await ok<{ id: string }>(clinician.token, {
      method: 'POST',
      url: '/api/v1/patients',
      body: { name: `Stray ${label}`, species: 'feline' },
    });
    ids.push(stray.id);
    pools.kindOf.set(stray.id, 'patients');
    return { ids: ids.filter((id) => id !== ''), patients, people, key: key.key, stray: stray.id };
  }

  before(async () => {
    h = await startHarness(url(), {
      CARETRAIL_SESSION_IDLE_MINUTES: '43200',
      CARETRAIL_SESSION_TTL_MINUTES: '43200',
      CARETRAIL_LOGIN_IP_MAX_FAILURES: '1000',
      CARETRAIL_LOGIN_MAX_FAILURES: '1000',
      CARETRAIL_LOG_LEVEL: 'warn',
      // The unusual-access alert (a user reading more than N patients) mails the admins after a
      // read was answered: its outbox row would land in a later batch, changing the fingerprint
      // of refusals that did nothing. Out of the way here; test/services covers the alert.
      CARETRAIL_ALERT_DISTINCT_PATIENTS: '100000',
    });
    routes = h.runtime.app.routes.map((r) => ({
      method: r.method as Method,
      url: r.url,
      schema: (r.schema ?? {}) as RouteSchema,
    }));
    const adminB = await h.newOrganization();
    const clinicianB = await h.newUser(adminB, 'clinician');
    const adminA = await h.newOrganization();
    const staffA: Partial<Record<Actor, SignedIn>> = { 'A.admin': adminA };
    for (const role of ['clinician', 'nurse', 'reception', 'auditor'] as const)
      staffA[`A.${role}`] = await h.newUser(adminA, role);
    for (const [actor, person] of Object.entries(staffA)) {
      tokens.set(actor as Actor, person.token);
      emails.set(actor as Actor, person.email);
    }
    const clinicianA = staffA['A.clinician'] as SignedIn;

    // Organization B first, with the markers; then A with the same shapes and none of them.
    const b = await seedOrganization('B', adminB, clinicianB, (t) => t);
    pools.b.push(...b.ids, adminB.userId, clinicianB.userId);
    // Break-glass into any other patient of B would rightly show its markers.
    pools.bMarked.push(...b.patients);
    const a = await seedOrganization('A', adminA, clinicianA, (t) => `A-side ${t.length}`);
    pools.a.push(...a.ids);
    for (const role of ['owner', 'trainer', 'walker', 'carer'] as const) {
      const person = a.people[role];
      tokens.set(role, person?.token ?? null);
      if (person) emails.set(role, person.email);
    }
    tokens.set('key', a.key);
    tokens.set('anonymous', null);
    tokens.set('garbage', null);
    await h.runtime.relay.runUntilIdle();

    // The fingerprint: row counts and highest versions of every table but the audit trail,
    // sessions and sign-in failures (which refused requests do write, by design).
    const tables =
      engine === 'sqlite'
        ? (
            await sql<{ name: string; hasVersion: number }>`
              select m.name as name,
                (select count(*) from pragma_table_info(m.name) where name = 'version') as "hasVersion"
              from sqlite_master m
              where m.type = 'table' and m.name not like 'sqlite_%'`.execute(h.runtime.db.read)
          ).rows
        : (
            await sql<{ name: string; hasVersion: number }>`
              select t.table_name as name,
                (select count(*) from information_schema.columns c
                  where c.table_schema = t.table_schema and c.table_name = t.table_name
                    and c.column_name = 'version')::int as "hasVersion"
              from information_schema.tables t
              where t.table_schema = current_schema() and t.table_type = 'BASE TABLE'`.execute(
              h.runtime.db.read,
            )
          ).rows;
    const counted = tables
      .filter((t) => !/^(audit_|sessions$|login_failures$|kysely_)/.test(t.name))
      .sort((x, y) => x.name.localeCompare(y.name));
    assert.ok(
      counted.length >= 20,
      `tables fingerprinted: ${counted.map((t) => t.name).join(', ')}`,
    );
    fingerprintSql = counted
      .map(
        (t) =>
          `select '${t.name}' as t, count(*) as n, ${t.hasVersion > 0 ? 'max(version)' : '0'} as v from "${t.name}"`,
      )
      .join(' union all ');
  });
  after(async () => {
    await h.close();
  });

  let fingerprintMs = 0;
  async function fingerprint(): Promise<string> {
    const t0 = performance.now();
    const { rows } = await sql
      .raw<{ t: string; n: unknown; v: unknown }>(fingerprintSql)
      .execute(h.runtime.db.read);
    fingerprintMs += performance.now() - t0;
    return rows.map((r) => `${r.t}:${String(r.n)}/${String(r.v)}`).join(' ');
  }

  function diff(before: string, after: string): string {
    const a = before.split(' ');
    const b = after.split(' ');
    return a
      .filter((x, i) => x !== b[i])
      .map((x) => `${x} → ${b[a.indexOf(x)] ?? '?'}`)
      .join(', ');
  }

  /** The server's log lines about the request (an unhandled error's message and stack). */
  function logOf(res: LightMyRequestResponse): string {
    const id = String(res.headers['x-request-id']);
    const lines = h.logs.filter((line) => line.includes(id) && !line.includes('"msg":"request"'));
    return lines.length > 0 ? `\n  server log: ${lines.join('\n  ').slice(0, 3000)}` : '';
  }

  function headersFor(req: FuzzRequest): Record<string, string> {
    const headers = { ...req.headers };
    const token = tokens.get(req.actor);
    if (req.actor === 'garbage')
      headers.authorization =
        fc.sample(
          fc.constantFrom(
            'Bearer x',
            `Bearer ${'a'.repeat(300)}`,
            'Basic YWRtaW46YWRtaW4=',
            'Bearer ck_garbage_garbage_garbage',
            `Bearer ${randomUUID()}`,
            'Bearer ',
          ),
          1,
        )[0] ?? 'Bearer x';
    else if (token) headers.authorization = `Bearer ${token}`;
    return headers;
  }

  /** Sends one request; one left unanswered for 30 s fails the run (it would hang a client). */
  async function send(req: FuzzRequest): Promise<LightMyRequestResponse> {
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`no answer within 30 s\n  request: ${describe(req)}`));
      }, 30_000);
    });
    try {
      return await Promise.race([
        h.runtime.app.inject({
          method: req.method,
          url: req.url,
          headers: headersFor(req),
          ...(req.payload !== undefined ? { payload: req.payload } : {}),
        }),
        hung,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  test(
    `${REQUESTS} generated requests (seed ${SEED})`,
    { timeout: LONG ? 3_600_000 : 900_000 },
    async () => {
      const histogram = new Map<number, number>();
      const perRoute = new Map<string, number>();
      const perRouteStatus = new Map<string, number>();
      const succeeded = new Set<string>();
      let sent = 0;
      let batchesChecked = 0;
      let singlesChecked = 0;
      let batchMs = 0;
      const started = Date.now();

      async function resignIn(actor: Actor) {
        const email = emails.get(actor);
        if (email) tokens.set(actor, await login(email));
      }

      const property = fc.asyncProperty(
        fc.array(requestArb(routes, pools), { minLength: BATCH, maxLength: BATCH }),
        async (batch) => {
          // One request alone, with the fingerprint around it: a refusal changes nothing.
          const [single, ...rest] = batch;
          if (single) {
            const before = await fingerprint();
            const res = await send(single);
            sent++;
            const why = problem(single, res);
            if (why) throw new Error(`${why}\n  request: ${describe(single)}${logOf(res)}`);
            histogram.set(res.statusCode, (histogram.get(res.statusCode) ?? 0) + 1);
            if (res.statusCode >= 400) {
              const afterPrint = await fingerprint();
              if (afterPrint !== before)
                throw new Error(
                  `a ${res.statusCode} changed ${diff(before, afterPrint)}\n  request: ${describe(single)}`,
                );
              singlesChecked++;
            }
            if (single.route === 'POST /api/v1/auth/logout' && res.statusCode < 300)
              await resignIn(single.actor);
          }
          // The rest together; when no write among them succeeded, nothing may have changed.
          const before = await fingerprint();
          const t0 = performance.now();
          const answers = await Promise.all(rest.map((req) => send(req)));
          batchMs += performance.now() - t0;
          sent += rest.length;
          let wrote = false;
          for (const [i, res] of answers.entries()) {
            const req = rest[i] as FuzzRequest;
            const why = problem(req, res);
            if (why) throw new Error(`${why}\n  request: ${describe(req)}${logOf(res)}`);
            histogram.set(res.statusCode, (histogram.get(res.statusCode) ?? 0) + 1);
            perRoute.set(req.route, (perRoute.get(req.route) ?? 0) + 1);
            if (res.statusCode < 300) succeeded.add(req.route);
            const key = `${req.route} ${res.statusCode}`;
            perRouteStatus.set(key, (perRouteStatus.get(key) ?? 0) + 1);
            if (req.method !== 'GET' && res.statusCode < 400) wrote = true;
            if (req.route === 'POST /api/v1/auth/logout' && res.statusCode < 300)
              await resignIn(req.actor);
          }
          if (!wrote) {
            const afterPrint = await fingerprint();
            if (afterPrint !== before)
              throw new Error(
                `refused requests changed ${diff(before, afterPrint)}\n  requests:\n  ${rest.map(describe).join('\n  ')}`,
              );
            batchesChecked++;
          }
        },
      );
      const details = await fc.check(property, {
        seed: SEED,
        numRuns: Math.ceil(REQUESTS / BATCH),
        endOnFailure: true,
        ...(PATH ? { path: PATH } : {}),
      });
      const seconds = (Date.now() - started) / 1000;
      const statuses = [...histogram.entries()]
        .sort((x, y) => x[0] - y[0])
        .map(([s, n]) => `${s}: ${n}`)
        .join(', ');
      console.log(
        `fuzz ${engine}: ${sent} requests in ${seconds.toFixed(1)} s (${Math.round(sent / seconds)}/s), seed ${SEED}; ` +
          `statuses ${statuses}; ${singlesChecked} single refusals and ${batchesChecked} batches of ${BATCH - 1} checked unchanged; ` +
          `${perRoute.size} of ${routes.length} routes hit; ${Math.round(batchMs)} ms in batches, ${Math.round(fingerprintMs)} ms in fingerprints`,
      );
      console.log(
        `fuzz ${engine}: ${succeeded.size} routes answered a 2xx at least once; never: ${routes
          .map((r) => `${r.method} ${r.url}`)
          .filter((r) => !succeeded.has(r))
          .join(', ')}`,
      );
      if (process.env.CARETRAIL_FUZZ_DEBUG)
        console.log(
          [...perRouteStatus]
            .sort()
            .map(([k, n]) => `${k}: ${n}`)
            .join('\n'),
        );
      if (details.failed) {
        const error =
          details.errorInstance instanceof Error
            ? details.errorInstance.message
            : String(details.errorInstance);
        assert.fail(
          `${error}\nReproduce: CARETRAIL_FUZZ_SEED=${details.seed} CARETRAIL_FUZZ_PATH=${details.counterexamplePath ?? ''} npm run test:faults (${engine})`,
        );
      }
      assert.ok(sent >= REQUESTS, `${sent} requests sent`);
      assert.equal(perRoute.size, routes.length, 'every route was fuzzed');
    },
  );
});
