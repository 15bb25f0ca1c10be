// The audit trail as auditors, staff and operators use it: search, CSV and FHIR export, the
// patient's access report, unusual-access alerts, and one audit event for every API request.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CSV_COLUMNS } from '../../src/domain/audit-export.js';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';
import { runCli } from '../helpers/process.js';

interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
interface EventView {
  seq: number;
  type: string;
  action: string;
  outcome: string;
  patientId: string | null;
  actor: { userId: string | null };
  occurredAt: string;
}

describeEachEngine('audit API', ({ url }) => {
  let h: Harness;
  let admin: SignedIn;
  let vet: SignedIn;
  let auditor: SignedIn;
  let outsider: SignedIn;
  let patientId: string;

  before(async () => {
    h = await startHarness(url(), {
      CARETRAIL_ALERT_DISTINCT_PATIENTS: '3',
      CARETRAIL_ALERT_WINDOW_MINUTES: '10',
    });
    admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
    auditor = await h.newUser(admin, 'auditor');
    outsider = await h.newUser(await h.newOrganization(), 'clinician');
    const created = await h.request({
      method: 'POST',
      url: '/api/v1/patients',
      token: vet.token,
      headers: { 'user-agent': "=cmd|' /C calc'!A0" },
      body: { name: 'Report Rover', species: 'canine' },
    });
    patientId = created.json<{ id: string }>().id;
    await h.request({ method: 'GET', url: `/api/v1/patients/${patientId}`, token: vet.token });
    await h.request({ method: 'GET', url: `/api/v1/patients/${patientId}`, token: outsider.token });
  });
  after(async () => {
    await h.close();
  });

  const search = (query: string, token = auditor.token) =>
    h.request({ method: 'GET', url: `/api/v1/audit${query}`, token });

  test('auditors search by patient, actor, action, outcome and time; newest first, paged', async () => {
    const byPatient = await search(`?patientId=${patientId}`);
    assert.equal(byPatient.statusCode, 200);
    const events = byPatient.json<Page<EventView>>().items;
    assert.deepEqual(
      events.map((e) => e.type),
      ['patient.read', 'patient.read', 'patient.create'],
    );
    assert.deepEqual(
      events.map((e) => e.outcome),
      ['denied', 'success', 'success'],
    );
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(
      [...seqs].sort((a, b) => b - a),
      seqs,
    );

    const denied = await search(`?patientId=${patientId}&outcome=denied`);
    assert.deepEqual(
      denied.json<Page<EventView>>().items.map((e) => e.actor.userId),
      [outsider.userId],
    );
    const creates = await search(`?actorId=${vet.userId}&action=C`);
    assert.ok(
      creates
        .json<Page<EventView>>()
        .items.every((e) => e.action === 'C' && e.actor.userId === vet.userId),
    );
    const from = events.at(-1)?.occurredAt ?? '';
    const to = new Date(Date.parse(events[0]?.occurredAt ?? '') + 1).toISOString();
    const window = await search(
      `?patientId=${patientId}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
    );
    assert.equal(window.json<Page<EventView>>().items.length, 3);
    const empty = await search(`?patientId=${patientId}&to=${encodeURIComponent(from)}`);
    assert.equal(empty.json<Page<EventView>>().items.length, 0, '"to" is exclusive');

    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const res = await search(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      const page: Page<EventView> = res.json();
      seen.push(...page.items.map((e) => e.seq));
      cursor = page.nextCursor;
    } while (cursor);
    assert.equal(new Set(seen).size, seen.length, 'no event twice');
    assert.deepEqual(
      [...seen].sort((a, b) => b - a),
      seen,
    );
  });

  test('search is scoped to the organization and closed to other roles (404), and is itself audited', async () => {
    const mine = await search('?limit=500');
    const types = mine.json<Page<EventView>>().items;
    assert.ok(types.length > 0);
    const otherAuditor = await h.newUser(await h.newOrganization(), 'auditor');
    const theirs = await search(`?patientId=${patientId}`, otherAuditor.token);
    assert.equal(
      theirs.json<Page<EventView>>().items.length,
      0,
      'another organization sees none of our patient',
    );
    for (const token of [vet.token, outsider.token]) {
      const res = await search('', token);
      assert.equal(res.statusCode, 404);
    }
    const own = await listAuditEvents(h.runtime.db.read, { actorUserId: auditor.userId });
    assert.ok(own.some((e) => e.event.type === 'audit.search' && e.event.outcome === 'success'));
  });

  test('bad filters and cursors are 400 and change nothing', async () => {
    for (const query of [
      '?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z',
      '?from=not-a-date',
      '?to=99999-99-99',
      '?action=X',
      '?outcome=maybe',
      '?cursor=AAAA',
      `?cursor=${Buffer.from(JSON.stringify(['-5'])).toString('base64url')}`,
      `?cursor=${Buffer.from(JSON.stringify(['x', 'y'])).toString('base64url')}`,
      '?limit=0',
      '?limit=100000',
      '?unknown=1',
    ]) {
      const res = await search(query);
      assert.equal(res.statusCode, 400, `${query}: ${res.body}`);
      assert.equal(res.json<{ error: { code: string } }>().error.code, 'invalid');
    }
  });

  test('CSV export streams the documented columns and neutralises formulas; non-auditors get 404', async () => {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/audit/export.csv?patientId=${patientId}`,
      token: auditor.token,
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/csv/);
    const lines = res.body.trimEnd().split('\r\n');
    assert.equal(lines[0], CSV_COLUMNS.join(','));
    assert.equal(lines.length, 1 + 3);
    const createLine = lines.find((l) => l.includes('patient.create'));
    assert.ok(
      createLine?.includes(`,'=cmd|' /C calc'!A0,`),
      `formula not neutralised: ${createLine ?? ''}`,
    );
    assert.ok(!/,=cmd/.test(res.body));
    const refused = await h.request({
      method: 'GET',
      url: '/api/v1/audit/export.csv',
      token: vet.token,
    });
    assert.equal(refused.statusCode, 404);
    const exports = (
      await listAuditEvents(h.runtime.db.read, { actorUserId: auditor.userId })
    ).filter((e) => e.event.type === 'audit.export');
    assert.ok(exports.length >= 1);
  });

  test(
    'caretrail audit export writes CSV and FHIR AuditEvent NDJSON',
    { timeout: 60_000 },
    async () => {
      const env = { CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: h.config.dataDir };
      const fhir = await runCli(
        ['audit', 'export', '--format', 'fhir', '--patient', patientId],
        env,
      );
      assert.equal(fhir.code, 0, fhir.stderr);
      const resources = fhir.stdout
        .trim()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as {
              resourceType: string;
              action: string;
              outcome: string;
              entity?: { what: { reference: string } }[];
            },
        );
      assert.equal(resources.length, 3);
      assert.ok(resources.every((r) => r.resourceType === 'AuditEvent'));
      assert.deepEqual(
        resources.map((r) => r.outcome),
        ['0', '0', '4'],
      );
      assert.ok(
        resources.every((r) => r.entity?.some((e) => e.what.reference === `Patient/${patientId}`)),
      );
      const csv = await runCli(['audit', 'export', '--format', 'csv', '--patient', patientId], env);
      assert.equal(csv.code, 0);
      assert.equal(csv.stdout.trimEnd().split('\r\n').length, 4);
      const bad = await runCli(['audit', 'export', '--format', 'xml'], env);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--format must be csv or fhir/);
    },
  );

  test('the access report shows staff who accessed the record, with name, role and organization', async () => {
    const res = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/access-report`,
      token: vet.token,
    });
    assert.equal(res.statusCode, 200);
    const items = res.json<
      Page<{
        type: string;
        outcome: string;
        actor: { name: string | null; role: string | null; organization: string | null };
      }>
    >().items;
    const read = items.find((i) => i.type === 'patient.read' && i.outcome === 'success');
    assert.equal(read?.actor.name, 'clinician user');
    assert.equal(read.actor.role, 'clinician');
    assert.match(read.actor.organization ?? '', /^Clinic /);
    const other = await h.request({
      method: 'GET',
      url: `/api/v1/patients/${patientId}/access-report`,
      token: outsider.token,
    });
    assert.equal(other.statusCode, 404);
  });

  test('reading more distinct patients than the rule allows raises one alert and tells the admins', async () => {
    const nurse = await h.newUser(admin, 'nurse');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: vet.token,
        body: { name: `Alert ${i}`, species: 'feline' },
      });
      ids.push(res.json<{ id: string }>().id);
    }
    for (const id of ids)
      await h.request({ method: 'GET', url: `/api/v1/patients/${id}`, token: nurse.token });
    const deadline = Date.now() + 5000;
    let alerts: { userId: string; rule: string; detail: { distinctPatients: number } }[] = [];
    while (Date.now() < deadline) {
      const res = await h.request({
        method: 'GET',
        url: '/api/v1/audit/alerts',
        token: auditor.token,
      });
      alerts = res
        .json<Page<{ userId: string; rule: string; detail: { distinctPatients: number } }>>()
        .items.filter((a) => a.userId === nurse.userId);
      if (alerts.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(alerts.length, 1, 'one alert per window, however many reads');
    const [alert] = alerts;
    assert.ok(alert);
    assert.equal(alert.rule, 'many_patients');
    assert.ok(alert.detail.distinctPatients > 3);
    const line = h.logs.find((l) => l.includes('unusual access') && l.includes(nurse.userId));
    assert.ok(line, 'operators see the alert in the log');
    assert.ok(!line.includes('Alert 0'), 'no patient data in the alert');
    // The admins get a mail (queued with the alert, sent by the relay).
    const mails = await h.runtime.db.read
      .selectFrom('outbox')
      .select('payload')
      .where('topic', '=', 'mail')
      .execute();
    const toAdmin = mails
      .map((m) => JSON.parse(m.payload) as { to: string; subject: string; text: string })
      .filter((m) => m.to === admin.email && m.text.includes(nurse.userId));
    assert.equal(toAdmin.length, 1, 'one mail to the admin for the alert');
    assert.ok(!toAdmin[0]?.text.includes('Alert 0'), 'no patient data in the mail');
  });

  test('a search that lists more distinct patients than the rule allows raises an alert too', async () => {
    const reception = await h.newUser(admin, 'reception');
    for (let i = 0; i < 5; i++) {
      await h.request({
        method: 'POST',
        url: '/api/v1/patients',
        token: vet.token,
        body: { name: `Listed ${i}`, species: 'canine' },
      });
    }
    const listed = await h.request({
      method: 'GET',
      url: '/api/v1/patients?q=listed',
      token: reception.token,
    });
    assert.equal(listed.json<Page<unknown>>().items.length, 5);
    const deadline = Date.now() + 5000;
    let found = false;
    while (!found && Date.now() < deadline) {
      const res = await h.request({
        method: 'GET',
        url: '/api/v1/audit/alerts',
        token: auditor.token,
      });
      found = res.json<Page<{ userId: string }>>().items.some((a) => a.userId === reception.userId);
      if (!found) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(found, 'no alert for a user who listed 5 patients in one search');
  });

  test('every API route writes exactly one audit event per request, refused ones included', async () => {
    const routes = h.runtime.app.routes.filter((r) => r.url.startsWith('/api/'));
    assert.ok(routes.length >= 25, `only ${routes.length} routes registered`);
    const missing: string[] = [];
    for (const route of routes) {
      const path = route.url.replace(':id', patientId).replace(':token', 'x');
      for (const token of [vet.token, undefined]) {
        const res = await h.request({
          method: route.method as 'GET',
          url: path,
          ...(token ? { token } : {}),
          ...(['POST', 'PATCH', 'PUT'].includes(route.method) ? { body: {} } : {}),
        });
        const requestId = String(res.headers['x-request-id']);
        const rows = await h.runtime.db.read
          .selectFrom('audit_events')
          .select('seq')
          .where('request_id', '=', requestId)
          .execute();
        if (rows.length !== 1)
          missing.push(
            `${route.method} ${route.url} (${token ? 'signed in' : 'anonymous'}, ${res.statusCode}): ${rows.length} events`,
          );
      }
    }
    assert.deepEqual(missing, []);
  });
});
