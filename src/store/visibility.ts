// The SQL condition behind `seenBy`: which rows of a patient's notes or documents a list shows.
import { sql, type RawBuilder, type SqlBool } from 'kysely';
import type { SeenBy } from '../domain/access.js';

export function visibleWhere(
  filter: SeenBy,
  columns: { visibility: string; sharedWith: string; author: string; releaseAt?: string },
): RawBuilder<SqlBool> {
  const visibility = sql.ref(columns.visibility);
  const author = sql.ref(columns.author);
  switch (filter.kind) {
    case 'everything':
      return sql<SqlBool>`1 = 1`;
    case 'non_internal':
      return sql<SqlBool>`(${author} = ${filter.userId} or ${visibility} <> 'internal')`;
    case 'care_role':
      return sql<SqlBool>`(${author} = ${filter.userId} or (${visibility} <> 'internal' and ${sql.ref(columns.sharedWith)} like ${`%"${filter.role}"%`}))`;
    case 'owner': {
      if (columns.releaseAt === undefined)
        return sql<SqlBool>`(${author} = ${filter.userId} or ${visibility} = 'owner')`;
      const release = sql.ref(columns.releaseAt);
      return sql<SqlBool>`(${author} = ${filter.userId} or (${visibility} = 'owner' and ${release} is not null and ${release} <= ${filter.now}))`;
    }
  }
}
