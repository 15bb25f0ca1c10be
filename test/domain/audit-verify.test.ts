// Property-based: thousands of random logs and random tamperings. Every tampering is detected
// at or before the first tampered event; untouched logs never raise an alarm.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { loadAuditSigner } from '../../src/audit-signing-key.js';
import {
  chainHash,
  eventHash,
  GENESIS_CHAIN,
  canonicalEventJson,
  canonicalJson,
  jsonString,
  type AuditEvent,
  type ChainedEvent,
} from '../../src/domain/audit.js';
import {
  ChainVerifier,
  RangeWalker,
  type Checkpoint,
  type VerifyResult,
} from '../../src/domain/audit-verify.js';
import { canonicalEventJsonOfRow } from '../../src/store/audit-scan.js';
import { auditEventFromRow, rowFromArray } from '../../src/store/audit.store.js';
import { tempDir } from '../helpers/engines.js';

const signer = loadAuditSigner(tempDir(), undefined);

const eventArb = fc.record({
  id: fc.uuid(),
  occurredAt: fc
    .date({ min: new Date('2025-01-01'), max: new Date('2030-01-01'), noInvalidDate: true })
    .map((d) => d.toISOString()),
  action: fc.constantFrom('C', 'R', 'U', 'D', 'E' as const),
  type: fc.constantFrom('patient.read', 'note.create', 'login', 'patient.search'),
  outcome: fc.constantFrom('success', 'failure', 'denied', 'error' as const),
  actor: fc.record({
    userId: fc.option(fc.uuid(), { nil: null }),
    role: fc.option(fc.constantFrom('admin', 'clinician', 'nurse'), { nil: null }),
    organizationId: fc.option(fc.uuid(), { nil: null }),
    ip: fc.option(fc.ipV4(), { nil: null }),
    userAgent: fc.option(fc.string({ maxLength: 20 }), { nil: null }),
  }),
  patientId: fc.option(fc.uuid(), { nil: null }),
  entity: fc.option(
    fc.record({
      type: fc.constantFrom('Patient', 'Note'),
      id: fc.option(fc.uuid(), { nil: null }),
      version: fc.option(fc.nat(50), { nil: null }),
    }),
    { nil: null },
  ),
  purpose: fc.option(fc.string({ maxLength: 10 }), { nil: null }),
  requestId: fc.option(fc.uuid(), { nil: null }),
  detail: fc.option(
    fc.dictionary(
      fc.string({ minLength: 1, maxLength: 5 }),
      fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.boolean()),
    ),
    { nil: null },
  ),
});

type Draft = Omit<AuditEvent, 'seq'>;

/** Chains drafts from genesis, numbering them 1..n. */
function chain(drafts: Draft[]): ChainedEvent[] {
  let previous = GENESIS_CHAIN;
  return drafts.map((draft, i) => {
    const event: AuditEvent = { ...draft, seq: i + 1 };
    const hash = eventHash(event);
    previous = chainHash(previous, hash);
    return { event, hash, chain: previous };
  });
}

/** Checkpoints every `every` events and one at the end, as the checkpoint job would sign them. */
function checkpointsOf(events: ChainedEvent[], every: number): Checkpoint[] {
  return events
    .filter((e, i) => (i + 1) % every === 0 || i === events.length - 1)
    .map((e) => signer.sign({ seq: e.event.seq, chain: e.chain, createdAt: e.event.occurredAt }));
}

function verify(events: ChainedEvent[], checkpoints: Checkpoint[], head: number) {
  const verifier = new ChainVerifier(checkpoints, (c) => signer.verify(c));
  for (const e of events) if (!verifier.push(e)) break;
  return verifier.finish(head);
}

const logArb = fc.record({
  drafts: fc.array(eventArb, { minLength: 2, maxLength: 40 }),
  every: fc.integer({ min: 1, max: 12 }),
});

type Tampering =
  | {
      kind: 'edit';
      at: number;
      field: 'outcome' | 'type' | 'ip' | 'patient' | 'time' | 'detail';
      rechain: boolean;
    }
  | { kind: 'delete'; at: number; rechain: boolean }
  | { kind: 'swap'; at: number; rechain: boolean }
  | { kind: 'insert'; at: number; rechain: boolean }
  | { kind: 'truncate'; keep: number };

const tamperingArb = (n: number): fc.Arbitrary<Tampering> =>
  fc.oneof(
    fc.record({
      kind: fc.constant('edit' as const),
      at: fc.integer({ min: 0, max: n - 1 }),
      field: fc.constantFrom('outcome', 'type', 'ip', 'patient', 'time', 'detail' as const),
      rechain: fc.boolean(),
    }),
    fc.record({
      kind: fc.constant('delete' as const),
      at: fc.integer({ min: 0, max: n - 1 }),
      rechain: fc.boolean(),
    }),
    fc.record({
      kind: fc.constant('swap' as const),
      at: fc.integer({ min: 0, max: n - 2 }),
      rechain: fc.boolean(),
    }),
    // An event appended at the very end with a correct chain and head is indistinguishable from a
    // real new event until the next checkpoint signs it, so covered inserts go before the end.
    fc.oneof(
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.integer({ min: 0, max: n }),
        rechain: fc.constant(false),
      }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.integer({ min: 0, max: n - 1 }),
        rechain: fc.constant(true),
      }),
    ),
    fc.record({ kind: fc.constant('truncate' as const), keep: fc.integer({ min: 0, max: n - 1 }) }),
  );

function edited(e: ChainedEvent, field: Extract<Tampering, { kind: 'edit' }>['field']): AuditEvent {
  const ev = e.event;
  switch (field) {
    case 'outcome':
      return { ...ev, outcome: ev.outcome === 'success' ? 'denied' : 'success' };
    case 'type':
      return { ...ev, type: `${ev.type}.x` };
    case 'ip':
      return {
        ...ev,
        actor: { ...ev.actor, ip: ev.actor.ip === '203.0.113.9' ? '203.0.113.10' : '203.0.113.9' },
      };
    case 'patient':
      return { ...ev, patientId: ev.patientId === null ? 'forged-patient' : null };
    case 'time':
      return { ...ev, occurredAt: new Date(Date.parse(ev.occurredAt) + 1000).toISOString() };
    case 'detail':
      return { ...ev, detail: { ...(ev.detail ?? {}), forged: true } };
  }
}

/**
 * Applies a tampering as an attacker with database access but without the signing key would:
 * naively (rows changed in place) or covering tracks (every later hash and chain recomputed and
 * sequence numbers made contiguous again). Returns the log and the first sequence touched.
 */
function tamper(
  original: ChainedEvent[],
  t: Tampering,
  extra: Draft,
): { events: ChainedEvent[]; firstTouched: number } {
  const events = [...original];
  if (t.kind === 'truncate') return { events: events.slice(0, t.keep), firstTouched: t.keep + 1 };
  const recompute = (drafts: Draft[]) => chain(drafts);
  const drafts = events.map(({ event: { seq: _seq, ...rest } }) => rest);
  switch (t.kind) {
    case 'edit': {
      const target = events[t.at];
      if (!target) throw new Error('bad index');
      if (t.rechain) {
        const { seq: _seq, ...rest } = edited(target, t.field);
        drafts[t.at] = rest;
        return { events: recompute(drafts), firstTouched: t.at + 1 };
      }
      events[t.at] = { ...target, event: edited(target, t.field) };
      return { events, firstTouched: t.at + 1 };
    }
    case 'delete':
      if (t.rechain) {
        drafts.splice(t.at, 1);
        return { events: recompute(drafts), firstTouched: t.at + 1 };
      }
      events.splice(t.at, 1);
      return { events, firstTouched: t.at + 1 };
    case 'swap': {
      if (t.rechain) {
        const [a, b] = [drafts[t.at], drafts[t.at + 1]];
        if (!a || !b) throw new Error('bad index');
        drafts[t.at] = b;
        drafts[t.at + 1] = a;
        return { events: recompute(drafts), firstTouched: t.at + 1 };
      }
      const [a, b] = [events[t.at], events[t.at + 1]];
      if (!a || !b) throw new Error('bad index');
      events[t.at] = b;
      events[t.at + 1] = a;
      return { events, firstTouched: t.at + 1 };
    }
    case 'insert': {
      if (t.rechain) {
        drafts.splice(t.at, 0, extra);
        return { events: recompute(drafts), firstTouched: t.at + 1 };
      }
      // A forged row with a plausible hash and chain, squeezed in under an existing number.
      const seq = t.at + 1;
      const previousChain = t.at === 0 ? GENESIS_CHAIN : (events[t.at - 1]?.chain ?? GENESIS_CHAIN);
      const forged = { ...extra, seq };
      const hash = eventHash(forged);
      events.splice(t.at, 0, { event: forged, hash, chain: chainHash(previousChain, hash) });
      return { events, firstTouched: seq };
    }
  }
}

test('an untouched log always verifies (no false alarms)', () => {
  fc.assert(
    fc.property(logArb, ({ drafts, every }) => {
      const events = chain(drafts);
      const result = verify(events, checkpointsOf(events, every), events.length);
      assert.equal(result.ok, true, result.reason ?? '');
      assert.equal(result.checked, events.length);
    }),
    { numRuns: 1000 },
  );
});

test('every random tampering is detected, at or before the first tampered event', () => {
  let detected = 0;
  fc.assert(
    fc.property(
      logArb.chain((log) => fc.tuple(fc.constant(log), tamperingArb(log.drafts.length), eventArb)),
      ([{ drafts, every }, tampering, extra]) => {
        const original = chain(drafts);
        const checkpoints = checkpointsOf(original, every);
        const { events, firstTouched } = tamper(original, tampering, extra);
        // The attacker also moves the head row to match the rewritten log when covering tracks.
        const covering = tampering.kind !== 'truncate' && tampering.rechain;
        const head = covering ? events.length : original.length;
        const result = verify(events, checkpoints, head);
        assert.equal(result.ok, false, `undetected: ${JSON.stringify(tampering)}`);
        assert.ok(result.firstBadSequence !== null && result.firstBadSequence >= 1);
        assert.ok(
          result.firstBadSequence <= firstTouched,
          `reported ${result.firstBadSequence}, first touched ${firstTouched}: ${JSON.stringify(tampering)}`,
        );
        const cutAt =
          tampering.kind === 'truncate'
            ? tampering.keep
            : tampering.kind === 'delete' && tampering.at === original.length - 1
              ? tampering.at
              : null;
        if (cutAt !== null) {
          // Without a checkpoint at the new end, a cut is indistinguishable from a rewrite after
          // the last checkpoint it keeps: everything after that checkpoint is reported untrusted.
          const kept = checkpoints.filter((c) => c.seq <= cutAt).at(-1)?.seq ?? 0;
          assert.ok(
            result.firstBadSequence >= kept + 1,
            `cut reported at ${result.firstBadSequence}, kept checkpoint ${kept}`,
          );
        } else if (!covering && tampering.kind !== 'insert') {
          // Rows changed in place without recomputing hashes are pinpointed exactly. (An inserted
          // row carries a plausible hash and chain, so it counts as covering its tracks.)
          assert.equal(
            result.firstBadSequence,
            firstTouched,
            `naive ${tampering.kind} is pinpointed`,
          );
        }
        detected++;
      },
    ),
    { numRuns: 3000 },
  );
  assert.equal(detected, 3000);
});

test('a checkpoint signed by another key is rejected', () => {
  const events = chain(
    [...Array(5).keys()].map((i) => ({
      id: `e${i}`,
      occurredAt: '2026-01-01T00:00:00.000Z',
      action: 'R' as const,
      type: 'x',
      outcome: 'success' as const,
      actor: { userId: null, role: null, organizationId: null, ip: null, userAgent: null },
      patientId: null,
      entity: null,
      purpose: null,
      requestId: null,
      detail: null,
    })),
  );
  const otherSigner = loadAuditSigner(tempDir(), undefined);
  const forged = otherSigner.sign({
    seq: 5,
    chain: events[4]?.chain ?? '',
    createdAt: '2026-01-01T00:00:00.000Z',
  });
  const result = verify(events, [forged], 5);
  assert.equal(result.ok, false);
  assert.match(result.reason ?? '', /no valid signature/);
});

test('the fast canonical form of an event is exactly the generic canonical JSON', () => {
  fc.assert(
    fc.property(eventArb, fc.nat(1_000_000), (draft, seq) => {
      const event: AuditEvent = { ...draft, seq: seq + 1 };
      assert.equal(canonicalEventJson(event), canonicalJson(event));
    }),
    { numRuns: 2000 },
  );
});

test('removing checkpoint rows to hide a rewrite is caught by the checkpoint cadence', () => {
  const drafts = [...Array(40).keys()].map((i) => ({
    id: `e${i}`,
    occurredAt: '2026-01-01T00:00:00.000Z',
    action: 'R' as const,
    type: 'patient.read',
    outcome: 'success' as const,
    actor: { userId: 'u', role: 'nurse', organizationId: 'o', ip: null, userAgent: null },
    patientId: null,
    entity: null,
    purpose: null,
    requestId: null,
    detail: null,
  }));
  const events = chain(drafts);
  const checkpoints = checkpointsOf(events, 5);
  const cadence = (evs: ChainedEvent[], cps: Checkpoint[], head: number) => {
    const verifier = new ChainVerifier(cps, (c) => signer.verify(c), undefined, 10);
    for (const e of evs) if (!verifier.push(e)) break;
    return verifier.finish(head);
  };
  assert.equal(cadence(events, checkpoints, 40).ok, true, 'an intact log keeps the cadence');
  // Rewrite events 21..40 with recomputed hashes and drop the checkpoints that would expose it.
  const rewritten = chain(drafts.map((d, i) => (i >= 20 ? { ...d, type: 'nothing.here' } : d)));
  const kept = checkpoints.filter((c) => c.seq <= 20);
  const result = cadence(rewritten, kept, 40);
  assert.equal(result.ok, false);
  assert.equal(result.firstBadSequence, 21);
  assert.match(result.reason ?? '', /checkpoints were removed/);
  // A gap in the middle is caught too.
  const holed = checkpoints.filter((c) => c.seq <= 10 || c.seq >= 30);
  assert.equal(cadence(events, holed, 40).firstBadSequence, 11);
});

/**
 * Verification in ranges, as worker threads do it: each range walked apart (RangeWalker), the
 * ranges joined in order (pushLink for the first event, pushRun for the rest).
 */
function verifyInRanges(
  events: ChainedEvent[],
  checkpoints: Checkpoint[],
  head: number,
  cuts: number[],
): VerifyResult {
  const verifier = new ChainVerifier(checkpoints, (c) => signer.verify(c));
  const seqs = checkpoints.map((c) => c.seq).sort((a, b) => a - b);
  const bounds = [...new Set([0, ...cuts.map((c) => Math.min(c, events.length)), events.length])];
  bounds.sort((a, b) => a - b);
  for (let i = 0; i + 1 < bounds.length; i++) {
    const walker = new RangeWalker(seqs);
    for (const e of events.slice(bounds[i], bounds[i + 1]))
      if (!walker.push(e.event.seq, e.hash, e.chain, eventHash(e.event) === e.hash)) break;
    const first = walker.first;
    if (first === null) continue;
    if (!verifier.pushLink(first.seq, first.hash, first.chain, () => first.contentMatches)) break;
    const run = walker.run();
    if (!verifier.pushRun({ ...run, checkpointChains: new Map(run.checkpointChains) })) break;
  }
  return verifier.finish(head);
}

test('verifying in ranges gives exactly the one-thread result (verdict, reason, count)', () => {
  fc.assert(
    fc.property(
      logArb.chain((log) =>
        fc.tuple(
          fc.constant(log),
          fc.option(tamperingArb(log.drafts.length), { nil: null }),
          eventArb,
          fc.array(fc.nat(log.drafts.length + 1), { maxLength: 5 }),
        ),
      ),
      ([{ drafts, every }, tampering, extra, cuts]) => {
        const original = chain(drafts);
        const checkpoints = checkpointsOf(original, every);
        const { events } = tampering ? tamper(original, tampering, extra) : { events: original };
        const head =
          tampering && tampering.kind !== 'truncate' && tampering.rechain
            ? events.length
            : original.length;
        assert.deepEqual(
          verifyInRanges(events, checkpoints, head, cuts),
          verify(events, checkpoints, head),
        );
      },
    ),
    { numRuns: 3000 },
  );
});

test('the fast JSON string is exactly JSON.stringify, lone surrogates and controls included', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => {
      assert.equal(jsonString(s), JSON.stringify(s));
    }),
    { numRuns: 5000 },
  );
  for (const s of ['a"b', 'a\\b', 'line\nbreak', '\u0000', '\u2028', 'é😀', '\ud800x'])
    assert.equal(jsonString(s), JSON.stringify(s));
  assert.equal(jsonString(null), 'null');
});

test('the one-shot chain hash is exactly SHA-256 over the two hex-decoded values', () => {
  const reference = (a: string, b: string) =>
    createHash('sha256').update(a, 'hex').update(b, 'hex').digest('hex');
  const hex = fc.string({
    unit: fc.constantFrom(...'0123456789abcdef'.split('')),
    minLength: 64,
    maxLength: 64,
  });
  const malformed = fc.string({ maxLength: 80 });
  fc.assert(
    fc.property(fc.oneof(hex, malformed), fc.oneof(hex, malformed), (a, b) => {
      // Odd-length hex makes both throw (a stored value an attacker broke).
      const outcome = (f: () => string) => {
        try {
          return f();
        } catch (err) {
          return `throws ${(err as { code?: string }).code ?? ''}`;
        }
      };
      assert.equal(
        outcome(() => chainHash(a, b)),
        outcome(() => reference(a, b)),
      );
    }),
    { numRuns: 3000 },
  );
});

test('the canonical form read straight from a row array is the one of the rebuilt event', () => {
  const awkward = fc.option(
    fc.oneof(
      fc.string({ unit: 'binary', maxLength: 12 }),
      fc.constantFrom('a,b', 'say "hi"', 'x\ny'),
    ),
    { nil: null },
  );
  fc.assert(
    fc.property(eventArb, fc.nat(1_000_000), awkward, awkward, (draft, seq, ua, purpose) => {
      const event: AuditEvent = {
        ...draft,
        seq: seq + 1,
        actor: { ...draft.actor, userAgent: ua },
        purpose,
      };
      const row: unknown[] = [
        event.seq,
        event.id,
        event.occurredAt,
        event.action,
        event.type,
        event.outcome,
        event.actor.userId,
        event.actor.role,
        event.actor.organizationId,
        event.actor.ip,
        event.actor.userAgent,
        event.patientId,
        event.entity?.type ?? null,
        event.entity?.id ?? null,
        event.entity?.version ?? null,
        event.purpose,
        event.requestId,
        event.detail === null ? null : JSON.stringify(event.detail),
        'h',
        'c',
      ];
      assert.equal(
        canonicalEventJsonOfRow(row),
        canonicalEventJson(auditEventFromRow(rowFromArray(row)).event),
      );
    }),
    { numRuns: 3000 },
  );
});
