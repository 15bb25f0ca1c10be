// Slow clients and floods against a real `caretrail serve`: slowloris headers, 10,000 idle
// connections, sign-in floods with spoofed X-Forwarded-For, bodies sent a byte at a time. While
// each runs, /healthz and a signed-in user's patient read must answer within a second.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, runCli, type ServerProcess } from '../helpers/process.js';

const LONG = process.env.CARETRAIL_FAULTS_LONG === '1';
const PASSWORD = 'correct horse battery staple';
const ADMIN = 'flood-admin@example.test';
/** The longest a probe may take, and each attack's length (longer in the long variant). */
const PROBE_LIMIT_MS = 1000;
const IDLE_CONNECTIONS = LONG ? 15_000 : 10_000;
const SLOWLORIS_CONNECTIONS = LONG ? 2_000 : 500;
const SLOW_BODIES = LONG ? 1_000 : 300;
/** CARETRAIL_REQUEST_TIMEOUT_SECONDS of this server (the least allowed: the test waits for it). */
const REQUEST_TIMEOUT_S = 15;
/** Node's headersTimeout as set in src/http/app.ts. */
const HEADERS_TIMEOUT_S = 10;

const MAIN = path.resolve('src/cli/main.ts');

/** The soft open-file limit of this process (the attacker needs one descriptor per connection). */
function openFileLimit(): number {
  const limits = fs.readFileSync('/proc/self/limits', 'utf8');
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1] ?? '1024';
  return soft === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(soft);
}

/**
 * `caretrail serve` with its open-file limit raised to the hard limit (a shell runs `ulimit`
 * first, then becomes the server).
 */
function startServer(env: Record<string, string>): Promise<ServerProcess> {
  // SERVER_NODE_OPTIONS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the server.
  const nodeOptions = process.env.SERVER_NODE_OPTIONS ?? '';
  const command = `ulimit -n "$(ulimit -Hn)"; exec "${process.execPath}" ${nodeOptions} --import tsx "${MAIN}" serve --port 0`;
  const child = spawn('bash', ['-c', command], {
    env: { ...process.env, CARETRAIL_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start:\n${out}`));
    }, 30_000);
    child.stdout.on('data', (d: Buffer) => {
      // Only the start-up lines are kept: the floods log a line per request.
      if (out.length < 20_000) out += d.toString();
      const match = /"address":"(http:\/\/[^"]+)".*Caretrail is listening/.exec(out);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ child, baseUrl: match[1], output: () => out, exited });
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`server exited before listening:\n${out}`));
    });
  });
}

/** One request on a connection of its own (as a newcomer would open), its status and time. */
function timedGet(
  baseUrl: string,
  url: string,
  token?: string,
): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.get(
      `${baseUrl}${url}`,
      {
        agent: false,
        headers: token ? { authorization: `Bearer ${token}` } : {},
        timeout: 5000,
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, ms: performance.now() - started });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      resolve({ status: 0, ms: performance.now() - started });
    });
  });
}

interface Probes {
  health: number[];
  read: number[];
  failures: string[];
}

/** Probes /healthz and the patient read every 200 ms until `stop` resolves. */
async function probeWhile(
  baseUrl: string,
  token: string,
  patientUrl: string,
  stop: Promise<unknown>,
): Promise<Probes> {
  const probes: Probes = { health: [], read: [], failures: [] };
  const state = { done: false };
  void stop.finally(() => {
    state.done = true;
  });
  while (!state.done) {
    const [health, read] = await Promise.all([
      timedGet(baseUrl, '/healthz'),
      timedGet(baseUrl, patientUrl, token),
    ]);
    probes.health.push(health.ms);
    probes.read.push(read.ms);
    if (health.status !== 200 || health.ms > PROBE_LIMIT_MS)
      probes.failures.push(`/healthz: ${health.status} in ${Math.round(health.ms)} ms`);
    if (read.status !== 200 || read.ms > PROBE_LIMIT_MS)
      probes.failures.push(`patient read: ${read.status} in ${Math.round(read.ms)} ms`);
    await sleep(200);
  }
  return probes;
}

const worst = (ms: number[]): number => Math.round(Math.max(0, ...ms));
const median = (ms: number[]): number => {
  const sorted = [...ms].sort((x, y) => x - y);
  return Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0);
};

function report(name: string, probes: Probes, extra: string): void {
  console.log(
    `${name}: ${probes.health.length} probes; /healthz worst ${worst(probes.health)} ms (median ${median(probes.health)}), ` +
      `patient read worst ${worst(probes.read)} ms (median ${median(probes.read)}); ${extra}`,
  );
  assert.ok(probes.health.length >= 3, 'probes ran during the attack');
  assert.deepEqual(
    probes.failures,
    [],
    `${name}: every probe answered 200 within ${PROBE_LIMIT_MS} ms`,
  );
}

/** Opens a TCP connection; resolves once connected (or with null when refused or dropped). */
function connect(port: number): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    socket.once('connect', () => {
      resolve(socket);
    });
    socket.once('error', () => {
      resolve(null);
    });
  });
}

/** Resolves when the server has closed `socket` (end or reset), with the time it took. */
function closedBy(socket: net.Socket, started: number): Promise<number> {
  return new Promise((resolve) => {
    const done = () => {
      resolve(performance.now() - started);
    };
    if (socket.destroyed) done();
    socket.once('close', done);
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
  });
}

let server: ServerProcess;
let baseUrl: string;
let port: number;
let token: string;
let patientUrl: string;
let dataDir: string;

before(async () => {
  const needed = IDLE_CONNECTIONS + 500;
  assert.ok(
    openFileLimit() >= needed,
    `the test opens ${IDLE_CONNECTIONS} connections: raise "ulimit -n" to at least ${needed} (it is ${openFileLimit()})`,
  );
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-floods-'));
  const env = {
    CARETRAIL_DATA_DIR: dataDir,
    CARETRAIL_REQUEST_TIMEOUT_SECONDS: String(REQUEST_TIMEOUT_S),
  };
  const passwordFile = path.join(dataDir, 'password');
  fs.writeFileSync(passwordFile, PASSWORD);
  const created = await runCli(
    ['admin', 'create', '--org', 'Flood Clinic', '--email', ADMIN, '--password-file', passwordFile],
    env,
  );
  assert.equal(created.code, 0, created.stderr);
  server = await startServer(env);
  baseUrl = server.baseUrl;
  port = Number(new URL(baseUrl).port);
  const login = await api<{ token: string }>(baseUrl, 'POST', '/api/v1/auth/login', {
    body: { email: ADMIN, password: PASSWORD },
  });
  assert.equal(login.status, 200);
  token = login.json.token;
  const patient = await api<{ id: string }>(baseUrl, 'POST', '/api/v1/patients', {
    token,
    body: { name: 'Rex', species: 'canine' },
  });
  assert.equal(patient.status, 201);
  patientUrl = `/api/v1/patients/${patient.json.id}`;
});

after(async () => {
  server.child.kill('SIGTERM');
  await server.exited;
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test(`slowloris: ${SLOWLORIS_CONNECTIONS} connections sending a header byte every 2 s are cut after the headers timeout`, async () => {
  const started = performance.now();
  const sockets = (
    await Promise.all(Array.from({ length: SLOWLORIS_CONNECTIONS }, () => connect(port)))
  ).filter((s): s is net.Socket => s !== null);
  assert.equal(sockets.length, SLOWLORIS_CONNECTIONS, 'every connection was accepted');
  const closings = sockets.map((s) => closedBy(s, started));
  for (const s of sockets) s.write(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: `);
  const drip = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write('a');
  }, 2000);
  const allClosed = Promise.all(closings);
  try {
    const probes = await probeWhile(baseUrl, token, patientUrl, allClosed);
    const times = await allClosed;
    report(
      'slowloris',
      probes,
      `${sockets.length} connections closed by the server after ${(Math.min(...times) / 1000).toFixed(1)}–${(Math.max(...times) / 1000).toFixed(1)} s`,
    );
    assert.ok(
      Math.max(...times) < (HEADERS_TIMEOUT_S + 5) * 1000,
      'the headers timeout closed every slow connection',
    );
  } finally {
    clearInterval(drip);
    for (const s of sockets) s.destroy();
  }
});

/**
 * Holds `count` idle connections from a process of its own (so that the probes, timed here, do
 * not wait behind thousands of socket events of the attacker), opened 250 at a time (the listen
 * backlog is 511). Prints "open N" once all are connected and "closed N MS" once the server has
 * closed them all, MS after the first was opened.
 */
const IDLE_ATTACKER = `
const net = require('node:net');
const [port, count] = process.argv.slice(1).map(Number);
let open = 0, closed = 0;
const started = Date.now();
function connect() {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    s.once('connect', () => { open++; resolve(); });
    s.once('close', () => { closed++; if (closed === count) console.log('closed ' + closed + ' ' + (Date.now() - started)); });
  });
}
(async () => {
  for (let i = 0; i < count; i += 250)
    await Promise.all(Array.from({ length: Math.min(250, count - i) }, connect));
  console.log('open ' + open + ' ' + (Date.now() - started));
})();
setInterval(() => undefined, 1000);
`;

test(`${IDLE_CONNECTIONS} idle TCP connections`, async () => {
  const attacker = spawn(
    'bash',
    [
      '-c',
      `ulimit -n "$(ulimit -Hn)"; exec "${process.execPath}" -e "$0" ${port} ${IDLE_CONNECTIONS}`,
      IDLE_ATTACKER,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const lines = new Promise<void>((resolve) => {
    attacker.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (/closed \d+ \d+/.test(out)) resolve();
    });
  });
  const allOpen = new Promise<void>((resolve) => {
    attacker.stdout.on('data', () => {
      if (/open \d+/.test(out)) resolve();
    });
  });
  try {
    // Probe while they are opened, and for 3 s while all of them sit there.
    const probes = await probeWhile(
      baseUrl,
      token,
      patientUrl,
      allOpen.then(() => sleep(3000)),
    );
    const opened = /open (\d+) (\d+)/.exec(out);
    report(
      'idle connections',
      probes,
      `${opened?.[1] ?? '?'} connected in ${(Number(opened?.[2]) / 1000).toFixed(1)} s and held`,
    );
    assert.equal(Number(opened?.[1]), IDLE_CONNECTIONS, 'every connection was accepted');
    // Connections that never send a request are closed by the headers timeout too.
    const closedAll = await Promise.race([lines.then(() => true), sleep(30_000).then(() => false)]);
    assert.ok(closedAll, `the server closed the idle connections within 30 s (${out.trim()})`);
    const closed = /closed (\d+) (\d+)/.exec(out);
    console.log(
      `idle connections: all ${closed?.[1] ?? '?'} closed by the server ${(Number(closed?.[2]) / 1000).toFixed(1)} s after the first was opened`,
    );
  } finally {
    attacker.kill('SIGKILL');
  }
});

/**
 * Sends `attempts` sign-ins, 50 at a time, from a process of its own, each with a new spoofed
 * X-Forwarded-For, half against `email`, half against unknown accounts; prints the status counts.
 */
const SIGN_IN_ATTACKER = `
const [baseUrl, email, attempts] = process.argv.slice(1);
const statuses = {};
let next = 0;
async function worker() {
  while (next < Number(attempts)) {
    const i = next++;
    const res = await fetch(baseUrl + '/api/v1/auth/login', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-forwarded-for': '203.0.' + ((i >> 8) & 255) + '.' + (i & 255),
      },
      body: JSON.stringify({ email: i % 2 === 0 ? email : 'nobody' + i + '@example.test', password: 'guess ' + i }),
    });
    await res.arrayBuffer();
    statuses[res.status] = (statuses[res.status] || 0) + 1;
  }
}
Promise.all(Array.from({ length: 50 }, worker)).then(() => console.log(JSON.stringify(statuses)));
`;

test('sign-in flood with spoofed X-Forwarded-For: the lockouts hold', async () => {
  const attempts = LONG ? 5000 : 1000;
  const attacker = spawn(
    process.execPath,
    ['-e', SIGN_IN_ATTACKER, baseUrl, ADMIN, String(attempts)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  attacker.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const flood = new Promise<void>((resolve) => {
    attacker.once('exit', () => {
      resolve();
    });
  });
  const probes = await probeWhile(baseUrl, token, patientUrl, flood);
  await flood;
  const statuses = new Map(
    Object.entries(JSON.parse(out) as Record<string, number>).map(([k, n]) => [Number(k), n]),
  );
  const histogram = [...statuses.entries()]
    .sort((x, y) => x[0] - y[0])
    .map(([s, n]) => `${s}: ${n}`)
    .join(', ');
  report('sign-in flood', probes, `${attempts} attempts: ${histogram}`);
  // Every attempt came from one address (trust proxy is off): at most the per-address limit
  // (20) was checked at all, the rest refused with 429 without looking at the password.
  assert.ok((statuses.get(401) ?? 0) <= 20, `at most 20 passwords were tried (${histogram})`);
  assert.equal((statuses.get(429) ?? 0) + (statuses.get(401) ?? 0), attempts, histogram);
  // The attacked account is locked, whatever address the next attempt claims.
  const locked = await fetch(`${baseUrl}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.7' },
    body: JSON.stringify({ email: ADMIN, password: PASSWORD }),
  });
  assert.equal(locked.status, 429, 'the right password during the lockout is refused too');
  assert.match(String(locked.headers.get('retry-after')), /^\d+$/);
});

test(`${SLOW_BODIES} bodies sent a byte every 2 s are cut after the request timeout`, async () => {
  const started = performance.now();
  const sockets = (
    await Promise.all(Array.from({ length: SLOW_BODIES }, () => connect(port)))
  ).filter((s): s is net.Socket => s !== null);
  assert.equal(sockets.length, SLOW_BODIES);
  const answers = sockets.map(
    (s) =>
      new Promise<string>((resolve) => {
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString('latin1')));
        s.once('close', () => {
          resolve(text.split('\r\n')[0] ?? '');
        });
      }),
  );
  const closings = sockets.map((s) => closedBy(s, started));
  // Half signed in (the body is read), half not (refused at once, the rest of the body unread).
  sockets.forEach((s, i) => {
    s.write(
      `POST /api/v1/patients HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
        `Content-Length: 100000\r\n${i % 2 === 0 ? `Authorization: Bearer ${token}\r\n` : ''}\r\n{"name":"`,
    );
  });
  const drip = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write('a');
  }, 2000);
  const allClosed = Promise.all(closings);
  try {
    const probes = await probeWhile(baseUrl, token, patientUrl, allClosed);
    const times = await allClosed;
    const firstLines = new Map<string, number>();
    for (const line of await Promise.all(answers))
      firstLines.set(line, (firstLines.get(line) ?? 0) + 1);
    report(
      'slow bodies',
      probes,
      `closed after ${(Math.min(...times) / 1000).toFixed(1)}–${(Math.max(...times) / 1000).toFixed(1)} s; answers ${JSON.stringify(Object.fromEntries(firstLines))}`,
    );
    assert.ok(
      Math.max(...times) < (REQUEST_TIMEOUT_S + 5) * 1000,
      'the request timeout closed every slow body',
    );
  } finally {
    clearInterval(drip);
    for (const s of sockets) s.destroy();
  }
  // Nothing half-received was stored.
  const list = await api<{ items: unknown[] }>(baseUrl, 'GET', '/api/v1/patients', { token });
  assert.equal(list.json.items.length, 1);
});

test('at the connection cap a newcomer is turned away at once, and served again once idle connections are shed', async () => {
  const capDir = fs.mkdtempSync(path.join(os.tmpdir(), 'caretrail-cap-'));
  const capped = await startServer({ CARETRAIL_DATA_DIR: capDir, CARETRAIL_MAX_CONNECTIONS: '64' });
  const capPort = Number(new URL(capped.baseUrl).port);
  const sockets: net.Socket[] = [];
  try {
    const started = performance.now();
    for (let i = 0; i < 64; i++) {
      const s = await connect(capPort);
      assert.ok(s, `connection ${i + 1} of 64 accepted`);
      sockets.push(s);
    }
    // The 65th is closed by the server straight away (no EMFILE, no waiting in a queue).
    const turnedAway = await timedGet(capped.baseUrl, '/healthz');
    assert.equal(turnedAway.status, 0, 'no answer beyond the cap');
    assert.ok(turnedAway.ms < PROBE_LIMIT_MS, `turned away in ${Math.round(turnedAway.ms)} ms`);
    // The idle ones are shed by the headers timeout; then newcomers are served.
    await Promise.all(sockets.map((s) => closedBy(s, started)));
    const served = await timedGet(capped.baseUrl, '/healthz');
    assert.equal(served.status, 200);
    console.log(
      `connection cap 64: the 65th turned away in ${Math.round(turnedAway.ms)} ms; served again after ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  } finally {
    for (const s of sockets) s.destroy();
    capped.child.kill('SIGTERM');
    await capped.exited;
    fs.rmSync(capDir, { recursive: true, force: true });
  }
});

test(
  'an idle keep-alive connection is closed after 72 s',
  { skip: LONG ? false : 'long variant only (CARETRAIL_FAULTS_LONG=1)' },
  async () => {
    const socket = await connect(port);
    assert.ok(socket);
    const started = performance.now();
    const closing = closedBy(socket, started);
    socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const ms = await closing;
    console.log(
      `keep-alive: the idle connection was closed ${(ms / 1000).toFixed(1)} s after its answer`,
    );
    assert.ok(ms > 70_000 && ms < 80_000, `closed after ${Math.round(ms)} ms`);
  },
);
