// Notifications end to end on every engine: documents uploaded over real HTTP and finalized notes
// reach a real SMTP server and a webhook receiver that fails on purpose (500, no answer, reset
// socket), signed, after their transaction committed, retried until delivered or dead-lettered;
// per-patient and per-type filters, deleted subscriptions, and bad input that creates nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { systemClock } from '../../src/domain/clock.js';
import { errorOf } from '../helpers/api.js';
import { seededRandom } from '../helpers/random.js';
import { createTestDatabase, describeEachEngine } from '../helpers/engines.js';
import { startHarness, uniqueEmail, type Harness, type SignedIn } from '../helpers/harness.js';
import {
  startMailServer,
  type MailOutcome,
  type MailServer,
  type ReceivedMail,
} from '../helpers/mail.js';
import {
  startWebhookReceiver,
  type Answer,
  type Endpoint,
  type Policy,
  type ReceivedEvent,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';

interface SubscriptionJson {
  id: string;
  events: string[];
  patientId: string | null;
  channel: 'email' | 'webhook';
  target: string;
  createdAt: string;
  createdBy: string;
  secret?: string | null;
}

interface DeliveryJson {
  id: string;
  eventId: string | null;
  eventType: string | null;
  status: 'pending' | 'delivered' | 'dead';
  attempts: number;
  lastError: string | null;
  nextAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

const ALL_EVENTS = ['document.created', 'note.finalized'];
const MAX_ATTEMPTS = 30;
const WEBHOOK_TIMEOUT_MS = 300;
/** How long any wait for the relay may take before the test fails. */
const PATIENCE_MS = 30_000;

/** Fails the first three attempts of an event at random (500, hang, reset), then accepts. */
function flakyPolicy(seed: number): Policy {
  const random = seededRandom(seed);
  return (_event, attempt) => {
    if (attempt > 3) return 'ok';
    const r = random();
    return r < 0.4 ? 'ok' : r < 0.6 ? 'error' : r < 0.8 ? 'reset' : 'hang';
  };
}

const always =
  (answer: Answer): Policy =>
  () =>
    answer;

/** Polls `done`; a request the receiver refused fails the test at once instead of timing out. */
async function waitFor(
  what: string,
  done: () => boolean | Promise<boolean>,
  problems: readonly string[] = [],
  timeoutMs = PATIENCE_MS,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    assert.deepEqual(problems, [], `the receiver refused a request while waiting for ${what}`);
    if (await done()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

const envFor = (smtpUrl: string, maxAttempts: number): Record<string, string> => ({
  CARETRAIL_SMTP_URL: smtpUrl,
  CARETRAIL_DELIVERY_BACKOFF_MS: '20',
  CARETRAIL_DELIVERY_MAX_ATTEMPTS: String(maxAttempts),
  CARETRAIL_WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
  // The receivers run on 127.0.0.1.
  CARETRAIL_WEBHOOK_ALLOW_PRIVATE: 'true',
});

async function newPatient(h: Harness, user: SignedIn, name: string): Promise<string> {
  const res = await h.request({
    method: 'POST',
    url: '/api/v1/patients',
    token: user.token,
    body: { name, species: 'canine' },
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json<{ id: string }>().id;
}

/** Creates a SOAP note and finalizes it; returns the note id. */
async function finalizedNote(
  h: Harness,
  user: SignedIn,
  patientId: string,
  body: string,
): Promise<string> {
  const created = await h.request({
    method: 'POST',
    url: `/api/v1/patients/${patientId}/notes`,
    token: user.token,
    body: { kind: 'soap', body },
  });
  assert.equal(created.statusCode, 201, created.body);
  const id = created.json<{ id: string }>().id;
  const res = await h.request({
    method: 'POST',
    url: `/api/v1/notes/${id}/finalize`,
    token: user.token,
  });
  assert.equal(res.statusCode, 200, res.body);
  return id;
}

async function subscribe(h: Harness, user: SignedIn, body: unknown): Promise<SubscriptionJson> {
  const res = await h.request({
    method: 'POST',
    url: '/api/v1/subscriptions',
    token: user.token,
    body,
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json<SubscriptionJson>();
}

/** A webhook subscription whose endpoint learns the signing secret from the answer. */
async function subscribeWebhook(
  h: Harness,
  user: SignedIn,
  endpoint: Endpoint,
  extra: { events?: string[]; patientId?: string } = {},
): Promise<SubscriptionJson> {
  const sub = await subscribe(h, user, {
    events: extra.events ?? ALL_EVENTS,
    webhookUrl: endpoint.url,
    ...(extra.patientId !== undefined ? { patientId: extra.patientId } : {}),
  });
  assert.equal(sub.channel, 'webhook');
  assert.match(sub.secret ?? '', /^whsec_.{20,}$/);
  endpoint.secret = sub.secret ?? null;
  return sub;
}

async function unsubscribe(h: Harness, user: SignedIn, id: string): Promise<void> {
  const res = await h.request({
    method: 'DELETE',
    url: `/api/v1/subscriptions/${id}`,
    token: user.token,
  });
  assert.equal(res.statusCode, 204, res.body);
}

/** Every delivery of a subscription, through the API, following the cursor. */
async function deliveries(h: Harness, user: SignedIn, id: string): Promise<DeliveryJson[]> {
  const all: DeliveryJson[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/subscriptions/${id}/deliveries?limit=50${query}`,
      token: user.token,
    });
    assert.equal(res.statusCode, 200, res.body);
    const page = res.json<{ items: DeliveryJson[]; nextCursor: string | null }>();
    all.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return all;
}

/** The events an organization's changes queued, read from the outbox. */
async function eventsOf(h: Harness, organizationId: string): Promise<ReceivedEvent[]> {
  const rows = await h.runtime.db.read
    .selectFrom('outbox')
    .select('payload')
    .where('topic', '=', 'event')
    .where('organization_id', '=', organizationId)
    .execute();
  return rows.map((r) => JSON.parse(r.payload) as ReceivedEvent);
}

/** The id of the event announcing a document or note. */
async function eventIdFor(h: Harness, organizationId: string, subjectId: string): Promise<string> {
  const event = (await eventsOf(h, organizationId)).find(
    (e) => e.data.documentId === subjectId || e.data.noteId === subjectId,
  );
  assert.ok(event, `an event was queued for ${subjectId}`);
  return event.id;
}

async function pendingOutboxItems(h: Harness): Promise<number> {
  const row = await h.runtime.db.read
    .selectFrom('outbox')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow();
  return row.n;
}

/** Waits until the relay has nothing left to do (every item delivered or dead). */
async function outboxIdle(h: Harness, problems: readonly string[]): Promise<void> {
  await waitFor('an idle outbox', async () => (await pendingOutboxItems(h)) === 0, problems);
}

const acceptedIds = (endpoint: Endpoint): Set<string> =>
  new Set(endpoint.accepted.map((e) => e.id));

const mailTo = (mail: MailServer, address: string): ReceivedMail[] =>
  mail.messages.filter((m) => m.envelopeTo.includes(address));

const mailedIds = (mail: MailServer, address: string): Set<string> =>
  new Set(mailTo(mail, address).map((m) => m.eventId));

const sorted = (ids: Iterable<string>): string[] => [...ids].sort();

describeEachEngine('notifications', ({ engine, url }) => {
  let mail: MailServer;
  let receiver: WebhookReceiver;
  let h: Harness;
  let base: string;
  let admin: SignedIn;
  let vet: SignedIn;
  let nurse: SignedIn;
  let patientId: string;
  /** Mailboxes whose first two messages may be refused or cut off after arriving. */
  const flakyMailboxes = new Set<string>();
  const mailRandom = seededRandom(42);
  function mailPolicy(mail: ReceivedMail, attempt: number): MailOutcome {
    if (attempt > 2 || !mail.envelopeTo.some((a) => flakyMailboxes.has(a))) return 'accept';
    const r = mailRandom();
    return r < 0.5 ? 'accept' : r < 0.75 ? 'refuse' : 'drop';
  }
  /** Which running Caretrail an organization lives in, for the receiver's database check. */
  const harnessOf = new Map<string, Harness>();

  const settle = (what: string, done: () => boolean | Promise<boolean>) =>
    waitFor(what, done, receiver.problems);

  /** The receiver's proof that nothing is announced before it committed. */
  async function subjectVisible(event: ReceivedEvent): Promise<string | null> {
    const owner = harnessOf.get(event.organizationId);
    if (!owner) return `event ${event.id} of an unknown organization`;
    const db = owner.runtime.db.read;
    switch (event.type) {
      case 'document.created': {
        const doc = await db
          .selectFrom('documents')
          .select(['id', 'patient_id'])
          .where('id', '=', String(event.data.documentId))
          .where('organization_id', '=', event.organizationId)
          .executeTakeFirst();
        if (doc?.patient_id !== event.patientId)
          return `document ${String(event.data.documentId)} not visible when ${event.id} arrived`;
        return null;
      }
      case 'note.finalized': {
        const note = await db
          .selectFrom('notes')
          .select(['status', 'patient_id'])
          .where('id', '=', String(event.data.noteId))
          .where('organization_id', '=', event.organizationId)
          .executeTakeFirst();
        if (note?.status !== 'final' || note.patient_id !== event.patientId)
          return `note ${String(event.data.noteId)} not final when ${event.id} arrived`;
        return null;
      }
      default:
        return `unexpected event type ${event.type}`;
    }
  }

  before(async () => {
    mail = await startMailServer(mailPolicy);
    receiver = await startWebhookReceiver({ check: subjectVisible });
    h = await startHarness(
      url(),
      envFor(mail.url, MAX_ATTEMPTS),
      // Real time (retries are due in real milliseconds), seeded jitter.
      { clock: systemClock, random: seededRandom(11) },
    );
    await h.runtime.app.listen({ host: '127.0.0.1', port: 0 });
    const address = h.runtime.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    base = `http://127.0.0.1:${address.port}`;
    admin = await h.newOrganization();
    harnessOf.set(admin.organizationId, h);
    vet = await h.newUser(admin, 'clinician');
    nurse = await h.newUser(admin, 'nurse');
    patientId = await newPatient(h, vet, 'Rex');
    h.runtime.relay.start();
  });

  after(async () => {
    await h.close();
    await receiver.close();
    await mail.close();
  });

  /** Uploads a small text file over real HTTP; returns the document id. */
  async function upload(user: SignedIn, patient: string, text: string): Promise<string> {
    const form = new FormData();
    form.append('file', new Blob([text], { type: 'text/plain' }), 'note.txt');
    const res = await fetch(`${base}/api/v1/patients/${patient}/documents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token}` },
      body: form,
    });
    assert.equal(res.status, 201, await res.clone().text());
    return ((await res.json()) as { id: string }).id;
  }

  test('every event reaches a failing webhook and a mailbox: signed, after commit, once per mailbox', async () => {
    const flaky = receiver.endpoint(`flaky-${engine}`, flakyPolicy(20240611));
    const hook = await subscribeWebhook(h, admin, flaky);
    const mailbox = uniqueEmail('front-desk');
    flakyMailboxes.add(mailbox);
    const email = await subscribe(h, nurse, { events: ALL_EVENTS, email: mailbox.toUpperCase() });
    assert.equal(email.channel, 'email');
    assert.equal(email.target, mailbox, 'the address is stored normalized');
    assert.equal(email.secret, null, 'email subscriptions have no secret');

    // The secret is shown once: neither the list nor the database holds it in the clear.
    const listed = await h.request({
      method: 'GET',
      url: '/api/v1/subscriptions',
      token: vet.token,
    });
    assert.equal(listed.statusCode, 200);
    assert.deepEqual(
      sorted(listed.json<{ items: SubscriptionJson[] }>().items.map((s) => s.id)),
      sorted([hook.id, email.id]),
    );
    assert.ok(!listed.body.includes(hook.secret ?? '-'), 'no secret in the list');
    assert.ok(!listed.body.includes('"secret"'));
    const stored = await h.runtime.db.read
      .selectFrom('subscriptions')
      .selectAll()
      .where('id', '=', hook.id)
      .executeTakeFirstOrThrow();
    assert.ok(!JSON.stringify(stored).includes(hook.secret ?? '-'), 'the secret is stored wrapped');

    // 15 uploads and 5 finalized notes at once, while the relay runs.
    const [documentIds, noteIds] = await Promise.all([
      Promise.all(
        Array.from({ length: 15 }, (_, i) => upload(vet, patientId, `lab result ${i}\n`)),
      ),
      Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          finalizedNote(h, vet, patientId, `S: bright, alert. O: T 38.${i}. A: ok. P: recheck.`),
        ),
      ),
    ]);
    const events = await eventsOf(h, admin.organizationId);
    assert.equal(events.length, 20, 'one event per upload and per finalized note');
    assert.deepEqual(
      sorted(events.map((e) => String(e.data.documentId ?? e.data.noteId))),
      sorted([...documentIds, ...noteIds]),
    );
    const expected = sorted(events.map((e) => e.id));

    await settle('every event at the webhook and in the mailbox', () => {
      const accepted = acceptedIds(flaky);
      const mailed = mailedIds(mail, mailbox);
      return expected.every((id) => accepted.has(id) && mailed.has(id));
    });
    await settle('every delivery recorded as delivered', async () => {
      const all = [...(await deliveries(h, vet, hook.id)), ...(await deliveries(h, vet, email.id))];
      return all.length === 40 && all.every((d) => d.status === 'delivered');
    });

    assert.deepEqual(receiver.problems, [], 'every request was signed, fresh and after commit');
    assert.deepEqual(sorted(acceptedIds(flaky)), expected, 'nothing but these events arrived');

    // The receiver failed on purpose, in every way, and each failure was retried.
    const answers = new Set(flaky.requests.map((r) => r.answer));
    for (const answer of ['error', 'hang', 'reset'] as const)
      assert.ok(answers.has(answer), `the receiver answered "${answer}" at least once`);
    const webhookDeliveries = await deliveries(h, vet, hook.id);
    assert.deepEqual(sorted(webhookDeliveries.map((d) => d.eventId ?? '')), expected);
    for (const d of webhookDeliveries) {
      const tries = flaky.requests.filter((r) => r.eventId === d.eventId);
      assert.equal(d.attempts, tries.length, `attempts of ${d.eventId ?? '?'} = requests seen`);
      assert.equal(tries.at(-1)?.answer, 'ok');
      assert.equal(d.lastError, null);
      assert.ok(d.deliveredAt !== null);
      assert.equal(d.nextAttemptAt, null);
    }
    assert.ok(
      webhookDeliveries.some((d) => d.attempts > 1),
      'some deliveries needed more than one attempt',
    );

    // The mail server refused some messages, and took some without saying so: those came twice.
    const outcomes = new Set(mail.transactions.map((t) => t.outcome));
    assert.ok(outcomes.has('refuse') && outcomes.has('drop'), 'the mail server failed both ways');
    assert.ok(
      mailTo(mail, mailbox).length > expected.length,
      'some messages were sent again after a cut connection',
    );
    // Exactly one distinct message per event, whatever the retries, addressed as expected.
    const messages = mailTo(mail, mailbox);
    const messageIds = new Map<string, Set<string>>();
    for (const m of messages) {
      assert.equal(m.to, mailbox);
      assert.match(
        m.subject,
        /^\[Caretrail\] (New document|Note finalized) on a patient record you follow$/,
      );
      assert.doesNotMatch(m.subject, /Rex/, 'no patient name in mail');
      assert.ok(m.messageId.includes(m.eventId), 'the Message-ID names the event');
      const ids = messageIds.get(m.eventId) ?? new Set<string>();
      ids.add(m.messageId);
      messageIds.set(m.eventId, ids);
    }
    assert.deepEqual(sorted(messageIds.keys()), expected);
    for (const [eventId, ids] of messageIds)
      assert.equal(ids.size, 1, `one distinct message for ${eventId}`);
    const emailDeliveries = await deliveries(h, vet, email.id);
    assert.deepEqual(sorted(emailDeliveries.map((d) => d.eventId ?? '')), expected);
    for (const d of emailDeliveries) {
      const tries = mail.transactions.filter((t) => t.messageId.includes(d.eventId ?? '-'));
      assert.equal(d.attempts, tries.length, `attempts of ${d.eventId ?? '?'} = transactions`);
      assert.equal(tries.at(-1)?.outcome, 'accept');
    }
    assert.ok(emailDeliveries.some((d) => d.attempts > 1));
    const types = emailDeliveries.map((d) => d.eventType);
    assert.equal(types.filter((t) => t === 'document.created').length, 15);
    assert.equal(types.filter((t) => t === 'note.finalized').length, 5);

    await unsubscribe(h, admin, hook.id);
    await unsubscribe(h, nurse, email.id);
  });

  test('a patient subscription hears only of its patient, an event filter only of its types', async () => {
    const alpha = await newPatient(h, vet, 'Alpha');
    const bravo = await newPatient(h, vet, 'Bravo');
    const onlyAlpha = receiver.endpoint(`only-alpha-${engine}`, always('ok'));
    const onlyNotes = receiver.endpoint(`only-notes-${engine}`, always('ok'));
    const alphaSub = await subscribeWebhook(h, vet, onlyAlpha, { patientId: alpha });
    assert.equal(alphaSub.patientId, alpha);
    const notesSub = await subscribeWebhook(h, nurse, onlyNotes, { events: ['note.finalized'] });
    const notesMailbox = uniqueEmail('notes');
    await subscribe(h, vet, { events: ['note.finalized'], email: notesMailbox });

    const docAlpha = await upload(vet, alpha, 'alpha x-ray report');
    const docBravo = await upload(vet, bravo, 'bravo x-ray report');
    const noteAlpha = await finalizedNote(h, vet, alpha, 'Alpha: vaccinated.');
    const noteBravo = await finalizedNote(h, vet, bravo, 'Bravo: vaccinated.');
    const org = admin.organizationId;
    const ev = {
      docAlpha: await eventIdFor(h, org, docAlpha),
      docBravo: await eventIdFor(h, org, docBravo),
      noteAlpha: await eventIdFor(h, org, noteAlpha),
      noteBravo: await eventIdFor(h, org, noteBravo),
    };

    await settle('the expected events to arrive', () => {
      const alphaGot = acceptedIds(onlyAlpha);
      const notesGot = acceptedIds(onlyNotes);
      const mailed = mailedIds(mail, notesMailbox);
      return (
        alphaGot.has(ev.docAlpha) &&
        alphaGot.has(ev.noteAlpha) &&
        notesGot.has(ev.noteAlpha) &&
        notesGot.has(ev.noteBravo) &&
        mailed.has(ev.noteAlpha) &&
        mailed.has(ev.noteBravo)
      );
    });
    await outboxIdle(h, receiver.problems);

    assert.deepEqual(receiver.problems, []);
    assert.deepEqual(sorted(acceptedIds(onlyAlpha)), sorted([ev.docAlpha, ev.noteAlpha]));
    assert.ok(onlyAlpha.accepted.every((e) => e.patientId === alpha));
    assert.deepEqual(sorted(acceptedIds(onlyNotes)), sorted([ev.noteAlpha, ev.noteBravo]));
    assert.ok(onlyNotes.accepted.every((e) => e.type === 'note.finalized'));
    assert.deepEqual(sorted(mailedIds(mail, notesMailbox)), sorted([ev.noteAlpha, ev.noteBravo]));
    assert.equal(mailTo(mail, notesMailbox).length, 2);
    assert.deepEqual(
      sorted((await deliveries(h, vet, alphaSub.id)).map((d) => d.eventId ?? '')),
      sorted([ev.docAlpha, ev.noteAlpha]),
    );
    assert.deepEqual(
      sorted((await deliveries(h, vet, notesSub.id)).map((d) => d.eventId ?? '')),
      sorted([ev.noteAlpha, ev.noteBravo]),
    );
  });

  test('a deleted subscription receives nothing more, not even a retry already scheduled', async () => {
    const doomed = receiver.endpoint(`doomed-${engine}`, always('ok'));
    const stubborn = receiver.endpoint(`stubborn-${engine}`, always('error'));
    const witness = receiver.endpoint(`witness-${engine}`, always('ok'));
    const doomedSub = await subscribeWebhook(h, vet, doomed);
    const stubbornSub = await subscribeWebhook(h, vet, stubborn);
    const witnessSub = await subscribeWebhook(h, vet, witness);
    const doomedMailbox = uniqueEmail('doomed');
    const doomedMail = await subscribe(h, vet, { events: ALL_EVENTS, email: doomedMailbox });

    const first = await eventIdFor(
      h,
      admin.organizationId,
      await upload(vet, patientId, 'before the unsubscribe'),
    );
    await settle('the first event everywhere', () => {
      return (
        acceptedIds(doomed).has(first) &&
        acceptedIds(witness).has(first) &&
        mailedIds(mail, doomedMailbox).has(first)
      );
    });
    // Unsubscribe while the failing delivery waits for a retry (not while one is under way).
    let retryAt = '';
    await settle('a retry scheduled well ahead', async () => {
      const [d] = await deliveries(h, vet, stubbornSub.id);
      retryAt = d?.nextAttemptAt ?? '';
      return d?.status === 'pending' && d.attempts >= 4 && Date.parse(retryAt) - Date.now() > 100;
    });
    const stubbornRequests = stubborn.requests.length;
    for (const id of [doomedSub.id, stubbornSub.id, doomedMail.id]) await unsubscribe(h, vet, id);
    // Given up at once, not when its retry would have come.
    const [givenUp] = await deliveries(h, vet, stubbornSub.id);
    assert.equal(givenUp?.status, 'dead');
    assert.ok(Date.parse(retryAt) > Date.now(), 'checked before the retry was due');
    const again = await h.request({
      method: 'DELETE',
      url: `/api/v1/subscriptions/${doomedSub.id}`,
      token: vet.token,
    });
    assert.equal(again.statusCode, 404);
    const listed = await h.request({
      method: 'GET',
      url: '/api/v1/subscriptions',
      token: vet.token,
    });
    const listedIds = listed.json<{ items: SubscriptionJson[] }>().items.map((s) => s.id);
    assert.ok(listedIds.includes(witnessSub.id));
    for (const id of [doomedSub.id, stubbornSub.id, doomedMail.id])
      assert.ok(!listedIds.includes(id), 'a deleted subscription is not listed');

    const later = [
      await eventIdFor(h, admin.organizationId, await upload(vet, patientId, 'after it')),
      await eventIdFor(
        h,
        admin.organizationId,
        await finalizedNote(h, vet, patientId, 'after the unsubscribe'),
      ),
    ];
    await settle('the later events at the witness', () =>
      later.every((id) => acceptedIds(witness).has(id)),
    );
    await outboxIdle(h, receiver.problems);

    assert.deepEqual(receiver.problems, []);
    assert.deepEqual(sorted(acceptedIds(doomed)), [first], 'nothing after the unsubscribe');
    assert.deepEqual(sorted(mailedIds(mail, doomedMailbox)), [first]);
    assert.equal(stubborn.requests.length, stubbornRequests, 'the scheduled retry was not sent');
    assert.deepEqual(
      (await deliveries(h, vet, doomedSub.id)).map((d) => [d.eventId, d.status]),
      [[first, 'delivered']],
    );
    const [cancelled, ...none] = await deliveries(h, vet, stubbornSub.id);
    assert.deepEqual(none, []);
    assert.equal(cancelled?.status, 'dead', 'an undelivered event is not shown as delivered');
    assert.equal(cancelled.deliveredAt, null);
    assert.match(cancelled.lastError ?? '', /subscription was deleted/);
  });

  test("a disabled or demoted creator's subscriptions fall silent, queued retries included, and speak again when restored", async () => {
    const leaver = await h.newUser(admin, 'clinician');
    const demoted = await h.newUser(admin, 'nurse');
    const leaverHook = receiver.endpoint(`leaver-${engine}`, always('ok'));
    const leaverStuck = receiver.endpoint(`leaver-stuck-${engine}`, always('error'));
    const demotedHook = receiver.endpoint(`demoted-${engine}`, always('ok'));
    const witness = receiver.endpoint(`creator-witness-${engine}`, always('ok'));
    await subscribeWebhook(h, leaver, leaverHook);
    const stuckSub = await subscribeWebhook(h, leaver, leaverStuck);
    await subscribeWebhook(h, demoted, demotedHook);
    await subscribeWebhook(h, vet, witness);
    const leaverMailbox = uniqueEmail('leaver');
    await subscribe(h, leaver, { events: ALL_EVENTS, email: leaverMailbox });
    const org = admin.organizationId;
    const patchUser = async (user: SignedIn, body: unknown) => {
      const res = await h.request({
        method: 'PATCH',
        url: `/api/v1/users/${user.userId}`,
        token: admin.token,
        body,
      });
      assert.equal(res.statusCode, 200, res.body);
    };

    const before = await eventIdFor(h, org, await upload(vet, patientId, 'before the leaving'));
    await settle(
      'the first event at every subscriber',
      () =>
        [leaverHook, demotedHook, witness].every((e) => acceptedIds(e).has(before)) &&
        mailedIds(mail, leaverMailbox).has(before),
    );
    // A delivery already queued: failing, with a retry due while its creator is disabled.
    await settle('a retry scheduled', async () => {
      const [d] = await deliveries(h, admin, stuckSub.id);
      return d?.status === 'pending' && d.attempts >= 2;
    });
    await patchUser(leaver, { disabled: true });
    await patchUser(demoted, { role: 'reception' });

    const during = [
      await eventIdFor(h, org, await upload(vet, patientId, 'while they are away')),
      await eventIdFor(h, org, await finalizedNote(h, vet, patientId, 'while they are away')),
    ];
    await settle('the later events at the witness', () =>
      during.every((id) => acceptedIds(witness).has(id)),
    );
    await settle('the queued retry given up', async () => {
      const [d] = await deliveries(h, admin, stuckSub.id);
      return d?.status === 'dead';
    });
    await outboxIdle(h, receiver.problems);
    for (const id of during) {
      assert.ok(!acceptedIds(leaverHook).has(id), "a disabled user's webhook hears nothing more");
      assert.ok(!acceptedIds(demotedHook).has(id), "a demoted user's webhook hears nothing more");
      assert.ok(!mailedIds(mail, leaverMailbox).has(id), "a disabled user's mailbox hears nothing");
    }
    const stuck = await deliveries(h, admin, stuckSub.id);
    assert.deepEqual(
      stuck.map((d) => d.eventId),
      [before],
      'nothing new queued for the disabled creator',
    );
    const [givenUp] = stuck;
    assert.ok(givenUp);
    assert.equal(givenUp.deliveredAt, null);
    assert.match(givenUp.lastError ?? '', /creator was disabled or lost the right/);

    await patchUser(leaver, { disabled: false });
    await patchUser(demoted, { role: 'nurse' });
    const afterwards = await eventIdFor(h, org, await upload(vet, patientId, 'back again'));
    await settle(
      'the restored subscriptions to hear again',
      () =>
        [leaverHook, demotedHook, witness].every((e) => acceptedIds(e).has(afterwards)) &&
        mailedIds(mail, leaverMailbox).has(afterwards),
    );
    assert.deepEqual(receiver.problems, []);
  });

  test('a receiver that always fails gets a dead letter after the last attempt, without patient data', async () => {
    // Its own database and runtime, with three attempts.
    const database = await createTestDatabase(engine);
    const dh = await startHarness(database.url, envFor(mail.url, 3), {
      clock: systemClock,
      random: seededRandom(5),
    });
    try {
      dh.runtime.relay.start();
      const boss = await dh.newOrganization();
      harnessOf.set(boss.organizationId, dh);
      const doctor = await dh.newUser(boss, 'clinician');
      const name = 'Biscuit Featherstonehaugh';
      const patient = await newPatient(dh, doctor, name);
      const broken = receiver.endpoint(`broken-${engine}`, always('error'));
      const sub = await subscribeWebhook(dh, doctor, broken);
      const body = 'Pyometra suspected, owner declined surgery.';
      await finalizedNote(dh, doctor, patient, body);
      const eventId = (await eventsOf(dh, boss.organizationId))[0]?.id;

      await settle('the delivery to be dead-lettered', async () => {
        const [d] = await deliveries(dh, doctor, sub.id);
        return d?.status === 'dead';
      });
      const [dead, ...rest] = await deliveries(dh, doctor, sub.id);
      assert.deepEqual(rest, []);
      assert.ok(dead);
      assert.equal(dead.eventId, eventId);
      assert.equal(dead.attempts, 3);
      assert.equal(dead.nextAttemptAt, null);
      assert.equal(dead.deliveredAt, null);
      assert.match(dead.lastError ?? '', /HTTP 500/);
      for (const secret of [name, 'Biscuit', patient, body, broken.secret ?? '-'])
        assert.ok(!(dead.lastError ?? '').includes(secret), `lastError holds no ${secret}`);

      // Three requests, then silence.
      assert.equal(broken.requests.length, 3);
      await sleep(400);
      assert.equal(broken.requests.length, 3, 'no attempt after the last one');
      assert.deepEqual(receiver.problems, []);
      const logs = dh.logs.join('');
      assert.match(logs, /outbox item dead-lettered/);
      assert.ok(!logs.includes(name) && !logs.includes(body), 'no patient data in the logs');
    } finally {
      await dh.close();
      await database.drop();
    }
  });

  test('bad subscriptions are refused and create nothing', async () => {
    const count = async () =>
      (
        await h.runtime.db.read
          .selectFrom('subscriptions')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n;
    const before = await count();
    const hook = 'https://hooks.example.test/caretrail';
    const other = await h.newOrganization();
    const foreignPatient = await newPatient(h, await h.newUser(other, 'clinician'), 'Stranger');
    const cases: [string, unknown, number][] = [
      ['no channel', { events: ALL_EVENTS }, 400],
      ['both channels', { events: ALL_EVENTS, email: 'a@example.test', webhookUrl: hook }, 400],
      ['an unknown event type', { events: ['patient.deleted'], webhookUrl: hook }, 400],
      ['no events', { events: [], webhookUrl: hook }, 400],
      ['an ftp URL', { events: ALL_EVENTS, webhookUrl: 'ftp://hooks.example.test/x' }, 400],
      ['a javascript URL', { events: ALL_EVENTS, webhookUrl: 'javascript:alert(1)//' }, 400],
      ['a relative URL', { events: ALL_EVENTS, webhookUrl: '/api/v1/hooks' }, 400],
      ['credentials in the URL', { events: ALL_EVENTS, webhookUrl: 'https://u:p@x.test/' }, 400],
      ['a bad address', { events: ALL_EVENTS, email: 'not an address' }, 400],
      ['an unknown field', { events: ALL_EVENTS, email: 'a@example.test', cc: 'b@x.test' }, 400],
      [
        'a patient of another clinic',
        { events: ALL_EVENTS, webhookUrl: hook, patientId: foreignPatient },
        404,
      ],
      ['a missing patient', { events: ALL_EVENTS, webhookUrl: hook, patientId: 'nope' }, 404],
    ];
    for (const [label, body, status] of cases) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/subscriptions',
        token: vet.token,
        body,
      });
      assert.equal(res.statusCode, status, `${label}: ${res.body}`);
      assert.ok(!res.body.includes('whsec_'), `${label}: no secret in the answer`);
    }
    const reception = await h.newUser(admin, 'reception');
    const denied = await h.request({
      method: 'POST',
      url: '/api/v1/subscriptions',
      token: reception.token,
      body: { events: ALL_EVENTS, webhookUrl: hook },
    });
    assert.equal(denied.statusCode, 403, denied.body);
    assert.equal(errorOf(denied).code, 'forbidden');
    assert.equal(
      (await h.request({ method: 'GET', url: '/api/v1/subscriptions', token: reception.token }))
        .statusCode,
      403,
    );
    const anonymous = await h.request({
      method: 'POST',
      url: '/api/v1/subscriptions',
      body: { events: ALL_EVENTS, webhookUrl: hook },
    });
    assert.equal(anonymous.statusCode, 401);
    assert.equal(await count(), before, 'no subscription was created');

    // Another clinic's subscription does not exist here.
    const theirs = await subscribe(h, other, { events: ALL_EVENTS, email: 'other@example.test' });
    for (const [method, path] of [
      ['GET', `/api/v1/subscriptions/${theirs.id}/deliveries`],
      ['DELETE', `/api/v1/subscriptions/${theirs.id}`],
    ] as const) {
      const res = await h.request({ method, url: path, token: vet.token });
      assert.equal(res.statusCode, 404, `${method} ${path}`);
    }
    const list = await h.request({ method: 'GET', url: '/api/v1/subscriptions', token: vet.token });
    assert.ok(!list.body.includes(theirs.id));
  });
});
