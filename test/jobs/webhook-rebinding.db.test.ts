// Webhook deliveries against a hostile DNS and a redirecting receiver, on both engines: a real
// DNS server on 127.0.0.1 answers each question as the test says, and real receivers listen on
// loopback addresses. A name is resolved once per delivery, any private answer refuses it, the
// connection goes to exactly the address checked, and redirects are never followed.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

interface DeliveryJson {
  status: 'pending' | 'delivered' | 'dead';
  attempts: number;
  lastError: string | null;
}

/** A receiver on one loopback address: records what reached it, answers as told. */
interface Receiver {
  port: number;
  requests: { host: string | undefined; url: string | undefined }[];
  close(): Promise<void>;
}

async function startReceiver(
  host: string,
  port: number,
  answer: (res: http.ServerResponse) => void,
): Promise<Receiver> {
  const requests: Receiver['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ host: req.headers.host, url: req.url });
    req.resume();
    req.on('end', () => {
      answer(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

const ok = (res: http.ServerResponse) => res.writeHead(200).end('ok');

/** What the test's DNS server answers for each name: a list per question, the last repeated. */
const answers = new Map<string, string[][]>();

describeEachEngine('webhook delivery against DNS rebinding and redirects', ({ url }) => {
  let dnsServer: DnsServer;
  let strict: Harness;
  let lenient: Harness;

  before(async () => {
    dnsServer = await startDnsServer((name) => {
      const list = answers.get(name);
      if (!list) return null;
      const asked = dnsServer.queries.filter((q) => q === name).length;
      return list[Math.min(asked, list.length) - 1] ?? null;
    });
    const env = {
      CARETRAIL_DELIVERY_BACKOFF_MS: '20',
      CARETRAIL_DELIVERY_MAX_ATTEMPTS: '2',
      CARETRAIL_WEBHOOK_TIMEOUT_MS: '2000',
    };
    const options = { resolveHost: dnsServer.resolver };
    strict = await startHarness(url(), env, options);
    lenient = await startHarness(
      url(),
      { ...env, CARETRAIL_WEBHOOK_ALLOW_PRIVATE: 'true' },
      options,
    );
  });
  after(async () => {
    await strict.close();
    await lenient.close();
    await dnsServer.close();
  });

  /** Subscribes `webhookUrl` to finalized notes, finalizes one, and runs the relay to the end. */
  async function deliverTo(h: Harness, webhookUrl: string): Promise<DeliveryJson> {
    const admin: SignedIn = await h.newOrganization();
    const vet = await h.newUser(admin, 'clinician');
    const sub = await h.request({
      method: 'POST',
      url: '/api/v1/subscriptions',
      token: admin.token,
      body: { events: ['note.finalized'], webhookUrl },
    });
    assert.equal(sub.statusCode, 201, sub.body);
    const patient = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      body: { name: 'Rex', species: 'canine' },
    });
    const note = await h.request({
      method: 'POST',
      url: `/api/v1/patients/${patient.json<{ id: string }>().id}/notes`,
      token: vet.token,
      body: { kind: 'soap', body: 'Bright and alert.' },
    });
    const noteId = note.json<{ id: string }>().id;
    const final = await h.request({
      method: 'POST',
      url: `/api/v1/notes/${noteId}/finalize`,
      token: vet.token,
    });
    assert.equal(final.statusCode, 200, final.body);
    // Every attempt, retries included (the backoff is on the test clock).
    for (let i = 0; i < 4; i += 1) {
      await h.runtime.relay.runUntilIdle();
      h.clock.advance(60_000);
    }
    const list = await h.request({
      method: 'GET',
      url: `/api/v1/subscriptions/${sub.json<{ id: string }>().id}/deliveries`,
      token: admin.token,
    });
    const [delivery, ...more] = list.json<{ items: DeliveryJson[] }>().items;
    assert.ok(delivery, list.body);
    assert.equal(more.length, 0);
    return delivery;
  }

  test('a name with a public and a private address is refused: nothing reaches the private one', async () => {
    const receiver = await startReceiver('127.0.0.1', 0, ok);
    try {
      answers.set('both.partner.test', [['93.184.216.34', '127.0.0.1']]);
      const before = dnsServer.queries.length;
      const delivery = await deliverTo(strict, `http://both.partner.test:${receiver.port}/hook`);
      assert.equal(delivery.status, 'dead');
      assert.equal(delivery.attempts, 1, 'a private answer is final, not retried');
      assert.match(delivery.lastError ?? '', /local or private address/);
      assert.deepEqual(receiver.requests, []);
      assert.equal(dnsServer.queries.length - before, 1, 'resolved once');
    } finally {
      await receiver.close();
    }
  });

  test('the connection goes to the address the delivery resolved, with the name as Host; the name is not resolved again', async () => {
    // The attacker's server answers 127.0.0.1 first and 127.0.0.2 to any later question: a
    // second lookup at connect time would reach the receiver on 127.0.0.2.
    const checked = await startReceiver('127.0.0.1', 0, ok);
    const rebound = await startReceiver('127.0.0.2', checked.port, ok);
    try {
      answers.set('rebind.partner.test', [['127.0.0.1'], ['127.0.0.2']]);
      const before = dnsServer.queries.length;
      const delivery = await deliverTo(lenient, `http://rebind.partner.test:${checked.port}/hook`);
      assert.equal(delivery.status, 'delivered', delivery.lastError ?? '');
      assert.deepEqual(checked.requests, [
        { host: `rebind.partner.test:${checked.port}`, url: '/hook' },
      ]);
      assert.deepEqual(rebound.requests, [], 'nothing reached the second answer');
      assert.equal(dnsServer.queries.length - before, 1, 'resolved once');
    } finally {
      await checked.close();
      await rebound.close();
    }
  });

  test('a redirect to 127.0.0.1 is not followed: a failed delivery, retried, then dead-lettered', async () => {
    const inside = await startReceiver('127.0.0.1', 0, ok);
    const redirecting = await startReceiver('127.0.0.1', 0, (res) =>
      res.writeHead(307, { location: `http://127.0.0.1:${inside.port}/admin` }).end(),
    );
    try {
      answers.set('moved.partner.test', [['127.0.0.1']]);
      const delivery = await deliverTo(
        lenient,
        `http://moved.partner.test:${redirecting.port}/hook`,
      );
      assert.equal(delivery.status, 'dead');
      assert.equal(delivery.attempts, 2);
      assert.match(delivery.lastError ?? '', /HTTP 307/);
      assert.equal(redirecting.requests.length, 2);
      assert.deepEqual(inside.requests, [], 'nothing reached the redirect target');
    } finally {
      await inside.close();
      await redirecting.close();
    }
  });

  test('an IPv4-mapped IPv6 loopback address is refused when the subscription is created', async () => {
    const admin = await strict.newOrganization();
    for (const webhookUrl of [
      'http://[::ffff:127.0.0.1]:8080/hook',
      'http://[::ffff:7f00:1]/hook',
      'http://[64:ff9b::a9fe:a9fe]/latest/meta-data',
    ]) {
      const res = await strict.request({
        method: 'POST',
        url: '/api/v1/subscriptions',
        token: admin.token,
        body: { events: ['note.finalized'], webhookUrl },
      });
      assert.equal(res.statusCode, 400, `${webhookUrl}: ${res.body}`);
    }
  });
});
