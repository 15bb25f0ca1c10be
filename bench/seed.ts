// Seeds a benchmark dataset straight into the database in big batches: patients with owners and
// microchips, notes, and a valid audit hash chain (the project's own hash functions, signed
// checkpoints) that `caretrail audit verify` accepts.
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { loadAuditSigner } from '../src/audit-signing-key.js';
import { chainHash, eventHash, type AuditEvent } from '../src/domain/audit.js';
import { uuidv7 } from '../src/domain/ids.js';
import { nameWords, searchKey, searchWordsOf } from '../src/domain/patient.js';

export interface Scale {
  name: string;
  patients: number;
  notes: number;
  events: number;
}

export const SCALES: Record<string, Scale> = {
  full: { name: 'full', patients: 100_000, notes: 1_000_000, events: 1_000_000 },
  small: { name: 'small', patients: 10_000, notes: 100_000, events: 100_000 },
  tiny: { name: 'tiny', patients: 1_000, notes: 10_000, events: 10_000 },
};

/** What the load scripts pick from: patients, their microchips, name prefixes that match. */
export interface Sample {
  patientIds: string[];
  microchips: string[];
  prefixes: string[];
}

const PETS = ['Bella', 'Max', 'Luna', 'Charlie', 'Daisy', 'Milo', 'Coco', 'Rocky', 'Ruby', 'Oscar'];
const MORE = ['Teddy', 'Willow', 'Pepper', 'Bailey', 'Ziggy', 'Nala', 'Hazel', 'Jasper', 'Olive'];
const SURNAMES = ['Smith', 'Jones', 'Taylor', 'Brown', 'Wilson', 'Evans', 'Thomas', 'Roberts'];
const FIRST = ['Anna', 'Ben', 'Clara', 'David', 'Emma', 'Frank', 'Grace', 'Henry', 'Iris', 'Jack'];
const NAMES = [...PETS, ...MORE];
const SPECIES = ['canine', 'feline', 'canine', 'feline', 'equine', 'rabbit'];
const BODY =
  'S: eating well, no vomiting. O: T 38.6 C, HR 92/min, BCS 5/9, bright and alert. A: healthy. P: recheck in 12 months, vaccines due.';

type Column = [name: string, pgType: string];
type Row = (string | number | null)[];

/** Inserts rows in one statement per chunk (PostgreSQL: unnest of arrays; SQLite: prepared). */
interface Sink {
  insert(table: string, columns: Column[], rows: Row[]): Promise<void>;
  one<T>(text: string): Promise<T>;
  exec(text: string, params?: unknown[]): Promise<void>;
  close(): Promise<void>;
}

function sqliteSink(file: string): Sink {
  const raw = new BetterSqlite3(file);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = OFF'); // seeding only; fsync'd once at the end (checkpoint + close)
  raw.pragma('foreign_keys = OFF');
  return {
    insert(table, columns, rows) {
      const stmt = raw.prepare(
        `insert into ${table} (${columns.map((c) => c[0]).join(', ')}) values (${columns.map(() => '?').join(', ')})`,
      );
      raw.transaction(() => {
        for (const row of rows) stmt.run(...row);
      })();
      return Promise.resolve();
    },
    one: <T>(text: string) => Promise.resolve(raw.prepare(text).get() as T),
    exec(text, params = []) {
      raw.prepare(text).run(...(params as (string | number)[]));
      return Promise.resolve();
    },
    close() {
      raw.pragma('wal_checkpoint(TRUNCATE)');
      raw.close();
      return Promise.resolve();
    },
  };
}

async function postgresSink(url: string): Promise<Sink> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('set synchronous_commit = off');
  return {
    async insert(table, columns, rows) {
      const arrays = columns.map((_, i) => rows.map((r) => r[i]));
      const unnest = columns.map((c, i) => `$${i + 1}::${c[1]}[]`).join(', ');
      await client.query(
        `insert into ${table} (${columns.map((c) => c[0]).join(', ')}) select * from unnest(${unnest})`,
        arrays,
      );
    },
    one: async <T>(text: string) => (await client.query(text)).rows[0] as T,
    async exec(text, params = []) {
      let k = 0;
      await client.query(
        text.replace(/\?/g, () => `$${String(++k)}`),
        params,
      );
    },
    async close() {
      await client.query('analyze');
      await client.end();
    },
  };
}

const CHUNK = 20_000;

async function inChunks(
  sink: Sink,
  table: string,
  columns: Column[],
  count: number,
  row: (i: number) => Row | Row[],
): Promise<void> {
  let rows: Row[] = [];
  for (let i = 0; i < count; i++) {
    const r = row(i);
    if (Array.isArray(r[0])) rows.push(...(r as Row[]));
    else rows.push(r as Row);
    if (rows.length >= CHUNK) {
      await sink.insert(table, columns, rows);
      rows = [];
    }
  }
  if (rows.length > 0) await sink.insert(table, columns, rows);
}

/**
 * Seeds `scale` into a migrated database that already holds the clinic (an admin and the
 * clinician `userId` of organization `orgId`), continuing its audit chain.
 */
export async function seedDataset(
  databaseUrl: string,
  dataDir: string,
  scale: Scale,
  ids: { orgId: string; userId: string },
): Promise<Sample> {
  const sink = databaseUrl.startsWith('sqlite:')
    ? sqliteSink(databaseUrl.slice('sqlite:'.length))
    : await postgresSink(databaseUrl);
  const T = 'text';
  const I = 'integer';
  const start = Date.UTC(2024, 0, 1);
  const stamp = (i: number, of: number) => start + Math.floor((i / of) * 600 * 86_400_000);
  const patientIds: string[] = [];
  const patientName = (i: number) =>
    `${NAMES[i % NAMES.length] ?? ''} ${SURNAMES[Math.floor(i / NAMES.length) % SURNAMES.length] ?? ''}`;
  const ownerName = (i: number) =>
    `${FIRST[i % FIRST.length] ?? ''} ${SURNAMES[Math.floor(i / 7) % SURNAMES.length] ?? ''}`;
  const chip = (i: number) => `985${String(i).padStart(12, '0')}`;
  for (let i = 0; i < scale.patients; i++) patientIds.push(uuidv7(stamp(i, scale.patients)));
  const at = (i: number) => new Date(stamp(i, scale.patients)).toISOString();

  const base = [
    ['id', T],
    ['organization_id', T],
    ['name', T],
    ['name_search', T],
  ] as Column[];
  await inChunks(
    sink,
    'patients',
    [
      ...base,
      ['species', T],
      ['version', I],
      ['created_by', T],
      ['created_at', T],
      ['updated_at', T],
    ],
    scale.patients,
    (i) => {
      const name = patientName(i);
      const s = SPECIES[i % SPECIES.length] ?? 'canine';
      return [
        patientIds[i] ?? '',
        ids.orgId,
        name,
        searchKey(name),
        s,
        1,
        ids.userId,
        at(i),
        at(i),
      ];
    },
  );
  const ownerIds = patientIds.map((_, i) => uuidv7(stamp(i, scale.patients)));
  await inChunks(
    sink,
    'owners',
    [...base, ['email', T], ['created_at', T], ['updated_at', T]],
    scale.patients,
    (i) => {
      const name = ownerName(i);
      return [
        ownerIds[i] ?? '',
        ids.orgId,
        name,
        searchKey(name),
        `o${i}@bench.test`,
        at(i),
        at(i),
      ];
    },
  );
  // The search-words table of the schema being seeded (BENCH_MAIN may run an older one).
  const hasTable = async (name: string) =>
    Number(
      (
        await sink.one<{ n: number | string }>(
          databaseUrl.startsWith('sqlite:')
            ? `select count(*) as n from sqlite_master where name = '${name}'`
            : `select count(*) as n from information_schema.tables where table_name = '${name}'`,
        )
      ).n,
    ) > 0;
  if (await hasTable('patient_search_words'))
    await inChunks(
      sink,
      'patient_search_words',
      [
        ['organization_id', T],
        ['word', T],
        ['name_sort', T],
        ['patient_id', T],
      ],
      scale.patients,
      (i) => {
        const nameSort = searchKey(patientName(i));
        return searchWordsOf(nameSort, [searchKey(ownerName(i))]).map((w) => [
          ids.orgId,
          w,
          nameSort,
          patientIds[i] ?? '',
        ]);
      },
    );
  else if (await hasTable('owner_name_words'))
    await inChunks(
      sink,
      'owner_name_words',
      [
        ['organization_id', T],
        ['word', T],
        ['owner_id', T],
      ],
      scale.patients,
      (i) => nameWords(searchKey(ownerName(i))).map((w) => [ids.orgId, w, ownerIds[i] ?? '']),
    );
  await inChunks(
    sink,
    'patient_owners',
    [
      ['patient_id', T],
      ['owner_id', T],
      ['position', I],
    ],
    scale.patients,
    (i) => [patientIds[i] ?? '', ownerIds[i] ?? '', 0],
  );
  await inChunks(
    sink,
    'patient_identifiers',
    [
      ['id', T],
      ['organization_id', T],
      ['patient_id', T],
      ['system', T],
      ['value', T],
    ],
    scale.patients,
    (i) => [uuidv7(stamp(i, scale.patients)), ids.orgId, patientIds[i] ?? '', 'microchip', chip(i)],
  );

  // Notes: spread over the patients, in time order (ids are uuidv7, the timeline's order).
  await inChunks(
    sink,
    'notes',
    [
      ['id', T],
      ['organization_id', T],
      ['patient_id', T],
      ['kind', T],
      ['body', T],
      ['visibility', T],
      ['status', T],
      ['version', I],
      ['author_id', T],
      ['created_at', T],
      ['updated_at', T],
    ],
    scale.notes,
    (i) => {
      const t = new Date(stamp(i, scale.notes)).toISOString();
      const patient = patientIds[(i * 7919) % scale.patients] ?? '';
      const id = uuidv7(stamp(i, scale.notes));
      return [id, ids.orgId, patient, 'clinical', BODY, 'internal', 'final', 1, ids.userId, t, t];
    },
  );

  // Audit events, continuing the existing chain; a signed checkpoint every 10,000 events.
  const head = await sink.one<{ seq: number | string; chain_hash: string }>(
    'select seq, chain_hash from audit_head where id = 1',
  );
  const first = Number(head.seq) + 1;
  let chain = head.chain_hash;
  const signer = loadAuditSigner(dataDir, undefined);
  const checkpoints: Row[] = [];
  const evT = [
    ['seq', 'bigint'],
    ['id', T],
    ['occurred_at', T],
    ['action', T],
    ['type', T],
    ['outcome', T],
    ['actor_user_id', T],
    ['actor_role', T],
    ['actor_org_id', T],
    ['actor_ip', T],
    ['actor_user_agent', T],
    ['patient_id', T],
    ['entity_type', T],
    ['entity_id', T],
    ['request_id', T],
    ['event_hash', T],
    ['chain_hash', T],
  ] as Column[];
  await inChunks(sink, 'audit_events', evT, scale.events, (i) => {
    const seq = first + i;
    // Spread over the past year, ending an hour ago: the unusual-access rule, which counts a
    // user's recent reads, sees a clinic's ordinary history, not a million reads in minutes.
    const ms =
      Date.now() - 3_600_000 - Math.floor(((scale.events - i) / scale.events) * 365 * 86_400_000);
    const patientId = patientIds[(i * 104_729) % scale.patients] ?? null;
    const event: AuditEvent = {
      seq,
      id: uuidv7(ms),
      occurredAt: new Date(ms).toISOString(),
      action: 'R',
      type: 'patient.read',
      outcome: 'success',
      actor: {
        userId: ids.userId,
        role: 'clinician',
        organizationId: ids.orgId,
        ip: '127.0.0.1',
        userAgent: 'bench-seed',
      },
      patientId,
      entity: { type: 'Patient', id: patientId, version: null },
      purpose: null,
      requestId: `seed-${String(seq)}`,
      detail: null,
    };
    const hash = eventHash(event);
    chain = chainHash(chain, hash);
    if (seq % 10_000 === 0) {
      const c = signer.sign({ seq, chain, createdAt: event.occurredAt });
      checkpoints.push([c.seq, c.chain, c.createdAt, c.keyId, c.signature]);
    }
    const a = event.actor;
    return [
      seq,
      event.id,
      event.occurredAt,
      'R',
      event.type,
      'success',
      a.userId,
      a.role,
      a.organizationId,
      a.ip,
      a.userAgent,
      patientId,
      'Patient',
      patientId,
      event.requestId,
      hash,
      chain,
    ];
  });
  if (checkpoints.length > 0)
    await sink.insert(
      'audit_checkpoints',
      [
        ['seq', 'bigint'],
        ['chain_hash', T],
        ['created_at', T],
        ['key_id', T],
        ['signature', T],
      ],
      checkpoints,
    );
  await sink.exec('update audit_head set seq = ?, chain_hash = ? where id = 1', [
    first + scale.events - 1,
    chain,
  ]);
  await sink.close();

  const picks = Array.from({ length: Math.min(5000, scale.patients) }, (_, k) =>
    Math.floor((k * scale.patients) / Math.min(5000, scale.patients)),
  );
  return {
    patientIds: picks.map((i) => patientIds[i] ?? ''),
    microchips: picks.map(chip),
    prefixes: NAMES.map((name) => name.slice(0, 3).toLowerCase()),
  };
}
