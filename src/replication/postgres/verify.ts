// `pgbackrest verify` with names: every file of the repository read back (decrypted,
// decompressed, checksummed against its encrypted manifest) plus Caretrail's own check that no WAL
// segment is missing between the oldest backup and the newest segment, which verify does not
// report as an error.
import type { Config } from '../../config.js';
import { configuredContext } from './backup.js';
import { pgbackrest, stanzaInfo, type PgBackRestContext } from './pgbackrest.js';
import { repositoryPath } from './setup.js';
import { listArchivedWal, missingSegments } from './wal-names.js';

export interface PgVerifyReport {
  ok: boolean;
  /** Files pgBackRest could not read back (altered or damaged), by path in the repository. */
  invalid: { file: string; reason: string }[];
  /** WAL segments missing between the oldest backup and the newest archived segment. */
  missing: string[];
  /** pgBackRest's own summary. */
  summary: string;
}

export async function verifyRepository(
  ctx: PgBackRestContext,
  repository: string,
): Promise<PgVerifyReport> {
  const info = await stanzaInfo(ctx);
  const missing = missingSegments(listArchivedWal(repository), info.backups[0]?.walStart ?? null);
  // verify names the bad files only in its log lines, and exits 0 whatever it found.
  const out = await pgbackrest(ctx, 'verify', [
    '--output=text',
    '--verbose',
    '--log-level-console=info',
    '--job-retry=0',
  ]);
  const invalid: { file: string; reason: string }[] = [];
  for (const line of out.split('\n')) {
    const m = /invalid result (\S+): (.*)$/.exec(line);
    if (m?.[1] !== undefined) invalid.push({ file: m[1], reason: (m[2] ?? '').trim() });
  }
  const summary = out
    .split('\n')
    .filter((l) => !/^\d{4}-\d\d-\d\d /.test(l) && !/^\s{20,}/.test(l) && l.trim() !== '')
    .join('\n');
  const statusError = /^status: error/m.test(summary);
  return {
    ok: !statusError && invalid.length === 0 && missing.length === 0,
    invalid,
    missing,
    summary,
  };
}

/** Reads back the whole repository of this installation (slow on a big one: not for RTO). */
export async function pgVerify(
  config: Config,
  options: { configFile?: string } = {},
): Promise<PgVerifyReport> {
  return verifyRepository(
    configuredContext(config, options.configFile),
    repositoryPath(config.replicaUrl),
  );
}
