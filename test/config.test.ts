// Configuration: defaults, environment, flags (which win), and one clear line for a bad value.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CONFIG_SETTINGS, ConfigError, loadConfig } from '../src/config.js';

test('defaults: SQLite in ./data, 127.0.0.1:8080', () => {
  const config = loadConfig({});
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.port, 8080);
  assert.equal(config.dataDir, path.resolve('data'));
  assert.equal(config.databaseUrl, `sqlite:${path.resolve('data', 'caretrail.db')}`);
  assert.equal(config.publicUrl, 'http://127.0.0.1:8080');
  assert.ok(Object.isFrozen(config));
});

test('environment variables are read and flags override them', () => {
  const config = loadConfig(
    { CARETRAIL_PORT: '9000', CARETRAIL_DATA_DIR: '/srv/caretrail', CARETRAIL_LOG_LEVEL: 'WARN' },
    { port: '9100' },
  );
  assert.equal(config.port, 9100);
  assert.equal(config.dataDir, '/srv/caretrail');
  assert.equal(config.databaseUrl, 'sqlite:/srv/caretrail/caretrail.db');
  assert.equal(config.logLevel, 'warn');
  assert.equal(config.publicUrl, 'http://127.0.0.1:9100');
});

test('a bad value stops with one line naming the setting and what it expects', () => {
  const cases: [Record<string, string>, Record<string, string>, RegExp][] = [
    [
      { CARETRAIL_PORT: 'eighty' },
      {},
      /^Invalid configuration: CARETRAIL_PORT must be an integer between 0 and 65535 \(got "eighty"\)\.$/,
    ],
    [{ CARETRAIL_PORT: '70000' }, {}, /CARETRAIL_PORT must be an integer between 0 and 65535/],
    [{}, { port: '-1' }, /^Invalid configuration: --port must be an integer/],
    [
      { CARETRAIL_DATABASE_URL: 'mysql://root:hunter2@db/x' },
      {},
      /^Invalid configuration: CARETRAIL_DATABASE_URL must be sqlite:PATH or postgres:\/\/USER@HOST:PORT\/DATABASE\.$/,
    ],
    [{ CARETRAIL_TRUST_PROXY: 'maybe' }, {}, /CARETRAIL_TRUST_PROXY must be true or false/],
    [
      { CARETRAIL_LOG_LEVEL: 'loud' },
      {},
      /CARETRAIL_LOG_LEVEL must be fatal, error, warn, info, debug, trace, silent/,
    ],
    [
      { CARETRAIL_PUBLIC_URL: 'ftp://x' },
      {},
      /CARETRAIL_PUBLIC_URL must be an http:\/\/ or https:\/\/ URL/,
    ],
    [
      { CARETRAIL_SESSION_TTL_MINUTES: '0' },
      {},
      /CARETRAIL_SESSION_TTL_MINUTES must be an integer number of minutes between 1 and 43200/,
    ],
    [{}, { 'no-such-flag': 'x' }, /^Unknown option --no-such-flag\.$/],
  ];
  for (const [env, flags, expected] of cases) {
    assert.throws(
      () => loadConfig(env, flags),
      (err: unknown) =>
        err instanceof ConfigError && expected.test(err.message) && !err.message.includes('\n'),
      JSON.stringify({ env, flags }),
    );
  }
});

test('a database URL is never echoed back (it may hold a password)', () => {
  assert.throws(
    () => loadConfig({ CARETRAIL_DATABASE_URL: 'mysql://root:hunter2@db/x' }),
    (err: unknown) => err instanceof Error && !err.message.includes('hunter2'),
  );
});

test('the README documents every setting', () => {
  const readme = fs.readFileSync('README.md', 'utf8');
  for (const setting of CONFIG_SETTINGS) {
    assert.ok(readme.includes(`\`${setting.env}\``), `${setting.env} is missing from README.md`);
    assert.ok(
      readme.includes(`\`--${setting.flag}\``),
      `--${setting.flag} is missing from README.md`,
    );
  }
});

test('TLS: certificate and key go together, and the default public URL becomes https', () => {
  const tls = loadConfig({ CARETRAIL_TLS_CERT: 'tls/cert.pem', CARETRAIL_TLS_KEY: 'tls/key.pem' });
  assert.equal(tls.tlsCert, path.resolve('tls/cert.pem'));
  assert.equal(tls.tlsKey, path.resolve('tls/key.pem'));
  assert.equal(tls.publicUrl, 'https://127.0.0.1:8080');
  assert.equal(tls.mllpIdleSeconds, 300);
  assert.equal(tls.mllpTls, false);
  const proxied = loadConfig({ CARETRAIL_PUBLIC_URL: 'https://records.example.test' });
  assert.equal(proxied.tlsCert, '', 'behind a proxy the server itself may speak HTTP');
  const cases: [Record<string, string>, RegExp][] = [
    [{ CARETRAIL_TLS_CERT: 'c.pem' }, /CARETRAIL_TLS_CERT and CARETRAIL_TLS_KEY go together/],
    [{ CARETRAIL_TLS_KEY: 'k.pem' }, /CARETRAIL_TLS_CERT and CARETRAIL_TLS_KEY go together/],
    [
      { CARETRAIL_HTTP_REDIRECT_PORT: '8081' },
      /CARETRAIL_HTTP_REDIRECT_PORT redirects to an https/,
    ],
    [{ CARETRAIL_MLLP_TLS: 'true' }, /CARETRAIL_MLLP_TLS needs CARETRAIL_TLS_CERT/],
    [
      { CARETRAIL_TLS_CERT: 'c', CARETRAIL_TLS_KEY: 'k', CARETRAIL_MLLP_TLS_CA: 'ca.pem' },
      /CARETRAIL_MLLP_TLS_CA needs CARETRAIL_MLLP_TLS=true/,
    ],
    [{ CARETRAIL_MLLP_IDLE_SECONDS: '0' }, /CARETRAIL_MLLP_IDLE_SECONDS must be an integer/],
  ];
  for (const [env, expected] of cases) {
    assert.throws(
      () => loadConfig(env),
      (err: unknown) => err instanceof ConfigError && expected.test(err.message),
      JSON.stringify(env),
    );
  }
  const redirect = loadConfig({
    CARETRAIL_TLS_CERT: 'c',
    CARETRAIL_TLS_KEY: 'k',
    CARETRAIL_HTTP_REDIRECT_PORT: '8081',
    CARETRAIL_MLLP_TLS: 'yes',
  });
  assert.equal(redirect.httpRedirectPort, 8081);
  assert.equal(redirect.mllpTls, true);
});
