// Shared JSON schemas (TypeBox). Response schemas decide what is serialized: nothing extra leaks.
import { Type, type TSchema } from '@sinclair/typebox';
import { DOCUMENT_KINDS } from '../domain/document.js';
import { CARE_ROLES, SHARE_ACCESS, SHARE_ROLES } from '../domain/access.js';
import { MAX_OBSERVATION_TEXT, RESULT_FLAGS } from '../domain/result.js';
import { NOTE_KINDS, NOTE_VISIBILITIES } from '../domain/note.js';
import { EVENT_TYPES } from '../services/events.js';
import { IDENTIFIER_SYSTEMS, SEXES, SPECIES } from '../domain/patient.js';
import { ROLES } from '../domain/roles.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../services/pagination.js';

/** A string enum whose static type is the union of its values. */
export const literalUnion = <T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const ErrorResponse = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), requestId: Type.String() }),
});

/** Every route's error answers share one shape. */
export const errorResponses = {
  '4xx': ErrorResponse,
  '5xx': ErrorResponse,
};

export const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
};

export const pageOf = <T extends TSchema>(item: T) =>
  Type.Object({ items: Type.Array(item), nextCursor: Nullable(Type.String()) });

export const Email = Type.String({ minLength: 3, maxLength: 254 });
export const Password = Type.String({ minLength: 1, maxLength: 256 });
export const Name = Type.String({ minLength: 1, maxLength: 200 });

export const User = Type.Object({
  id: Type.String(),
  organizationId: Nullable(Type.String()),
  email: Type.String(),
  name: Type.String(),
  role: Nullable(literalUnion(ROLES)),
  disabled: Type.Boolean(),
  mfaEnabled: Type.Boolean(),
  version: Type.Integer(),
  createdAt: Type.String(),
});

export const Role = literalUnion(ROLES);
export const Species = literalUnion(SPECIES);
export const Sex = literalUnion(SEXES);
export const IdentifierSystem = literalUnion(IDENTIFIER_SYSTEMS);
export const NoteKind = literalUnion(NOTE_KINDS);
export const NoteVisibility = literalUnion(NOTE_VISIBILITIES);
export const Visibility = NoteVisibility;
export const SharedWith = Type.Array(literalUnion(CARE_ROLES), { maxItems: 3, uniqueItems: true });
export const ShareRole = literalUnion(SHARE_ROLES);
export const ShareAccess = literalUnion(SHARE_ACCESS);

export const IdentifierInput = Type.Object(
  { system: IdentifierSystem, value: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

export const OwnerInput = Type.Object(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    name: Type.Optional(Name),
    email: Type.Optional(Nullable(Email)),
    phone: Type.Optional(Nullable(Type.String({ maxLength: 50 }))),
  },
  { additionalProperties: false },
);

const patientFields = {
  name: Name,
  species: Species,
  breed: Type.Optional(Nullable(Type.String({ maxLength: 100 }))),
  sex: Type.Optional(Nullable(Sex)),
  birthDate: Type.Optional(Nullable(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' }))),
  alerts: Type.Optional(Type.Array(Type.String({ maxLength: 200 }), { maxItems: 20 })),
  identifiers: Type.Optional(Type.Array(IdentifierInput, { maxItems: 20 })),
  owners: Type.Optional(Type.Array(OwnerInput, { maxItems: 10 })),
};

export const PatientCreate = Type.Object(patientFields, { additionalProperties: false });
export const PatientPatch = Type.Partial(Type.Object(patientFields), {
  additionalProperties: false,
  minProperties: 1,
});

export const Patient = Type.Object({
  id: Type.String(),
  organizationId: Type.String(),
  name: Type.String(),
  species: Species,
  breed: Nullable(Type.String()),
  sex: Nullable(Sex),
  birthDate: Nullable(Type.String()),
  alerts: Type.Array(Type.String()),
  identifiers: Type.Array(Type.Object({ system: IdentifierSystem, value: Type.String() })),
  owners: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      email: Nullable(Type.String()),
      phone: Nullable(Type.String()),
    }),
  ),
  version: Type.Integer(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  /** How the caller reaches this patient: organization role, share or break-glass. */
  access: Type.Object({
    via: literalUnion(['organization', 'share', 'break_glass'] as const),
    role: Type.String(),
    write: Type.Boolean(),
    expiresAt: Nullable(Type.String()),
  }),
});

/** One observation of a device result; `flag` marks abnormal values (H, L, HH, LL, A). */
export const ResultObservation = Type.Object(
  {
    code: Type.String({ minLength: 1, maxLength: 100 }),
    display: Type.Optional(Type.String({ maxLength: 300 })),
    value: Type.Union([Type.Number(), Type.String({ maxLength: MAX_OBSERVATION_TEXT })]),
    unit: Type.Optional(Type.String({ maxLength: 50 })),
    referenceRange: Type.Optional(Type.String({ maxLength: 100 })),
    flag: Type.Optional(literalUnion(RESULT_FLAGS)),
  },
  { additionalProperties: false },
);

export const NoteBody = Type.String({ minLength: 1, maxLength: 100_000 });
export const NoteTitle = Nullable(Type.String({ maxLength: 300 }));

export const NoteCreate = Type.Object(
  {
    kind: NoteKind,
    title: Type.Optional(NoteTitle),
    body: NoteBody,
    visibility: Type.Optional(NoteVisibility),
    sharedWith: Type.Optional(SharedWith),
  },
  { additionalProperties: false },
);

export const NotePatch = Type.Object(
  {
    kind: Type.Optional(NoteKind),
    title: Type.Optional(NoteTitle),
    body: Type.Optional(NoteBody),
    visibility: Type.Optional(NoteVisibility),
    sharedWith: Type.Optional(SharedWith),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const Addendum = Type.Object({
  id: Type.String(),
  body: Type.String(),
  authorId: Type.String(),
  authorName: Type.String(),
  createdAt: Type.String(),
  /** When the owner sees it (addenda to owner notes); null while not released. */
  releaseAt: Nullable(Type.String()),
});

export const Note = Type.Object({
  id: Type.String(),
  patientId: Type.String(),
  kind: NoteKind,
  title: Nullable(Type.String()),
  body: Type.String(),
  visibility: NoteVisibility,
  sharedWith: SharedWith,
  status: Type.Union([Type.Literal('draft'), Type.Literal('final')]),
  version: Type.Integer(),
  authorId: Type.String(),
  authorName: Type.String(),
  /** When the owner sees it (owner notes); null while not released. */
  releaseAt: Nullable(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  finalizedAt: Nullable(Type.String()),
  finalizedBy: Nullable(Type.String()),
  addenda: Type.Array(Addendum),
  result: Nullable(
    Type.Object({
      id: Type.String(),
      source: Type.String(),
      kind: Type.String(),
      version: Type.Integer(),
      abnormal: Type.Boolean(),
      observations: Type.Array(ResultObservation),
      documentIds: Type.Array(Type.String()),
    }),
  ),
});

export const NoteRevision = Type.Object({
  version: Type.Integer(),
  change: Type.Union([
    Type.Literal('created'),
    Type.Literal('edited'),
    Type.Literal('finalized'),
    Type.Literal('addendum'),
    Type.Literal('released'),
    Type.Literal('addendum_released'),
  ]),
  kind: NoteKind,
  title: Nullable(Type.String()),
  body: Type.String(),
  visibility: NoteVisibility,
  status: Type.Union([Type.Literal('draft'), Type.Literal('final')]),
  addendumId: Nullable(Type.String()),
  actorId: Type.String(),
  at: Type.String(),
});

export const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ maxLength: 40 })),
});
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ maxLength: 255 })),
});

export const DocumentKind = literalUnion(DOCUMENT_KINDS);
export const EventType = literalUnion(EVENT_TYPES);

const FreeObject = Type.Object({}, { additionalProperties: true });

const documentVersionFields = {
  version: Type.Integer(),
  filename: Type.String(),
  contentType: Type.String(),
  declaredContentType: Nullable(Type.String()),
  size: Type.Integer(),
  sha256: Type.String(),
  createdAt: Type.String(),
  createdBy: Type.String(),
  preview: Type.Object({
    status: literalUnion(['pending', 'ready', 'unsupported', 'failed'] as const),
    reason: Nullable(Type.String()),
  }),
  metadata: Nullable(FreeObject),
  storage: Type.Object({
    tier: literalUnion(['hot', 'archive'] as const),
    retrievalDelaySeconds: Type.Integer(),
  }),
};

export const DocumentVersion = Type.Object(documentVersionFields);

export const Document = Type.Object({
  ...documentVersionFields,
  id: Type.String(),
  patientId: Type.String(),
  title: Nullable(Type.String()),
  kind: DocumentKind,
  visibility: Visibility,
  sharedWith: SharedWith,
  status: literalUnion(['active', 'deleted', 'purged'] as const),
  updatedAt: Type.String(),
  deletedAt: Nullable(Type.String()),
  purgedAt: Nullable(Type.String()),
});

export const Subscription = Type.Object({
  id: Type.String(),
  events: Type.Array(EventType),
  patientId: Nullable(Type.String()),
  channel: literalUnion(['email', 'webhook'] as const),
  target: Type.String(),
  createdAt: Type.String(),
  createdBy: Type.String(),
});

export const Delivery = Type.Object({
  id: Type.String(),
  eventId: Nullable(Type.String()),
  eventType: Nullable(Type.String()),
  status: literalUnion(['pending', 'delivered', 'dead'] as const),
  attempts: Type.Integer(),
  lastError: Nullable(Type.String()),
  nextAttemptAt: Nullable(Type.String()),
  createdAt: Type.String(),
  deliveredAt: Nullable(Type.String()),
});
