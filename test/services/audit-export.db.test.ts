// The CSV export (rows read as arrays on a snapshot connection) is byte for byte the plain
// rendering of every stored event, awkward values included, and sees one snapshot throughout.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { csvHeader, csvRow } from '../../src/domain/audit-export.js';
import { formatAuditRows } from '../../src/services/audit-format.js';
import {
  appendAuditEvent,
  auditEventFromRow,
  type NewAuditEvent,
} from '../../src/store/audit.store.js';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness, type SignedIn } from '../helpers/harness.js';

const AWKWARD = [
  'plain',
  'a,b',
  'say "hi"',
  'two\nlines',
  'cr\r\nlf',
  ' leading space',
  'trailing space ',
  '=SUM(A1:A2)',
  '+1',
  '-1',
  '@cmd',
  '\ttab',
  'Ümlaut café ☕ 😀 日本語',
  '\u00a0nbsp',
  '',
  'back\\slash',
];

async function collect(chunks: AsyncIterable<string>): Promise<string> {
  let text = '';
  for await (const c of chunks) text += c;
  return text;
}

describeEachEngine('audit CSV export', ({ url }) => {
  let h: Harness;
  let vet: SignedIn;

  const append = (events: NewAuditEvent[]) =>
    h.runtime.db.write(async (tx) => {
      for (const e of events) await appendAuditEvent(tx, e);
    });

  const awkwardEvent = (i: number): NewAuditEvent => {
    const v = AWKWARD[i % AWKWARD.length] ?? '';
    return {
      id: `019e9906-e0ff-7042-8c8b-${String(i).padStart(12, '0')}`,
      occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
      action: 'R',
      type: i % 3 === 0 ? 'patient.read' : `odd.type ${v}`,
      outcome: i % 5 === 0 ? 'denied' : 'success',
      actor: {
        userId: vet.userId,
        role: i % 2 === 0 ? 'clinician' : null,
        organizationId: vet.organizationId,
        ip: i % 4 === 0 ? null : '203.0.113.7',
        userAgent: v,
      },
      patientId: null,
      entity: i % 2 === 0 ? { type: 'Patient', id: `p-${v}`, version: i % 7 } : null,
      purpose: i % 3 === 1 ? v : null,
      requestId: `req ${i}`,
      detail:
        i % 4 === 3 ? null : { note: v, n: i, nested: { z: [1, 'two', null], a: v }, [v]: true },
    };
  };

  /** The straightforward rendering: every row through the domain's csvRow. */
  const reference = async () => {
    const rows = await h.runtime.db.read
      .selectFrom('audit_events')
      .selectAll()
      .orderBy('seq')
      .execute();
    return csvHeader() + rows.map((r) => csvRow(auditEventFromRow(r))).join('');
  };

  before(async () => {
    h = await startHarness(url());
    const admin = await h.newOrganization();
    vet = await h.newUser(admin, 'clinician');
    await append(Array.from({ length: 2500 }, (_, i) => awkwardEvent(i)));
  });
  after(async () => {
    await h.close();
  });

  test('the export is byte-identical to the reference rendering (awkward values)', async () => {
    const expected = await reference();
    const actual = await collect(await h.runtime.services.auditTrail.exportCsv(null, {}));
    assert.ok(actual.includes('"say ""hi"""'), 'quotes are doubled inside quoted cells');
    assert.ok(actual.includes("'=SUM(A1:A2)"), 'formulas are defused');
    assert.equal(actual, expected);
  });

  test('filtered exports match the row-by-row path', async () => {
    const queries = [
      { outcome: 'denied' as const },
      { actorId: vet.userId, from: '2026-01-01T00:10:00Z', to: '2026-01-01T00:30:00Z' },
      { action: 'R' as const, outcome: 'success' as const },
    ];
    for (const query of queries) {
      const trail = h.runtime.services.auditTrail;
      const old = await collect(formatAuditRows(await trail.exportEvents(null, query), 'csv'));
      const fresh = await collect(await trail.exportCsv(null, query));
      assert.equal(fresh, old, JSON.stringify(query));
      assert.ok(fresh.split('\r\n').length > 2, `rows for ${JSON.stringify(query)}`);
    }
  });

  test('the export reads one snapshot: events written meanwhile are not in it', async () => {
    const expected = await reference();
    const chunks = await h.runtime.services.auditTrail.exportCsv(null, {});
    const first = await chunks.next();
    assert.equal(first.done, false);
    await append(Array.from({ length: 1200 }, (_, i) => awkwardEvent(10_000 + i)));
    let text = first.value;
    for await (const c of chunks) text += c;
    assert.equal(text, expected);
  });

  test('the HTTP export answers the same bytes, after its own audit event', async () => {
    const admin = await h.newOrganization();
    const res = await h.request({
      method: 'GET',
      url: '/api/v1/audit/export.csv',
      token: admin.token,
    });
    assert.equal(res.statusCode, 200);
    assert.ok(res.body.startsWith(csvHeader()));
    assert.ok(res.body.includes('audit.export'), 'the export lists its own event');
  });
});
