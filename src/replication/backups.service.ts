// The Backups page (admins): off-site replication per part, the last disaster-recovery drill,
// and warnings an operator acts on. The figures are the server's, the same for every organization.
import fsp from 'node:fs/promises';
import type { DrillResult } from './drill.js';
import type { ReplicaPartStatus } from './index.js';
import { auditedRead } from '../services/audit.service.js';
import type { RequestContext } from '../services/context.js';
import type { ServiceDeps } from '../services/deps.js';

/** A drill older than this is a warning: restores are rehearsed at least monthly. */
export const DRILL_MAX_AGE_DAYS = 30;

/** What `deps.lastDrill` finds: the result, 'unreadable' (a damaged file), or null (none run). */
export type LastDrill = DrillResult | 'unreadable' | null;

export interface BackupsStatus {
  replication: 'off' | 'ok' | 'degraded';
  parts: Record<string, ReplicaPartStatus>;
  lastDrill: DrillResult | null;
  warnings: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const hasNumbers = (v: unknown, keys: string[]) => isObject(v) && keys.every((k) => isNumber(v[k]));

/** The fields the page and the warnings read, with their types (a file of another shape is unreadable). */
function isDrillResult(v: unknown): v is DrillResult {
  return (
    isObject(v) &&
    (v.engine === 'sqlite' || v.engine === 'postgres') &&
    (v.mode === 'async' || v.mode === 'sync') &&
    typeof v.replica === 'string' &&
    typeof v.startedAt === 'string' &&
    !Number.isNaN(Date.parse(v.startedAt)) &&
    isNumber(v.loadSeconds) &&
    hasNumbers(v.acknowledged, ['notes', 'documents']) &&
    hasNumbers(v.missing, ['notes', 'documents']) &&
    isNumber(v.rpoSeconds) &&
    isNumber(v.rtoSeconds) &&
    isNumber(v.restoreSeconds) &&
    (v.restoredTo === null || typeof v.restoredTo === 'string') &&
    isObject(v.audit) &&
    typeof v.audit.ok === 'boolean' &&
    typeof v.audit.message === 'string' &&
    hasNumbers(v.files, ['checked', 'ok', 'bad']) &&
    hasNumbers(v.objectives, ['rpoSeconds', 'rtoSeconds']) &&
    typeof v.passed === 'boolean' &&
    Array.isArray(v.problems) &&
    v.problems.every((p) => typeof p === 'string')
  );
}

/** Reads the drill result `caretrail dr drill` keeps (last-drill.json): missing is null. */
export async function readLastDrill(file: string): Promise<LastDrill> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : 'unreadable';
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return isDrillResult(parsed) ? parsed : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/**
 * An error message without absolute paths (a folder replica's errors name its files): the page
 * is read by clinic admins, who act on the kind of failure, not on the server's layout.
 */
export function withoutPaths(message: string): string {
  return message.replace(/(^|[\s'"(=[])(?:file:)?\/[^\s'")\],]*/g, '$1…');
}

/** "12 seconds", "5 minutes", "3 hours", "2 days". */
export function durationWords(seconds: number): string {
  const unit = (n: number, word: string) => `${String(n)} ${word}${n === 1 ? '' : 's'}`;
  if (seconds < 90) return unit(Math.round(seconds), 'second');
  if (seconds < 90 * 60) return unit(Math.round(seconds / 60), 'minute');
  if (seconds < 48 * 3600) return unit(Math.round(seconds / 3600), 'hour');
  return unit(Math.round(seconds / 86_400), 'day');
}

const day = (iso: string) => iso.slice(0, 10);
/** "2026-12-05 12:41:20 UTC" from an ISO time. */
const utc = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;

/** What needs an operator, in the words they act on; empty when all is well. */
export function backupWarnings(
  replication: BackupsStatus['replication'],
  parts: Record<string, ReplicaPartStatus>,
  lastDrill: LastDrill,
  now: Date,
): string[] {
  const warnings: string[] = [];
  // Files may be replicated (CARETRAIL_BLOB_REPLICA_URL) while the database is not.
  if (replication === 'off' || parts.database === undefined)
    warnings.push(
      `${replication === 'off' ? 'Replication is off: nothing is copied off this server' : 'The database is not replicated (only the files are)'}, so losing its disk loses every change since your last backup. ` +
        'Set CARETRAIL_REPLICA_URL to a folder on another disk or to an S3 bucket and restart the server (see docs/DISASTER-RECOVERY.md).',
    );
  for (const [name, part] of Object.entries(parts)) {
    switch (part.state) {
      case 'ok':
        break;
      case 'behind':
        warnings.push(
          `The replica of the ${name} is ${durationWords(part.lagSeconds)} behind: the newest changes exist only on this server. ` +
            'If it does not catch up, check the replica’s disk or network and the server’s log.',
        );
        break;
      case 'unreachable': {
        const since = part.details.lastErrorAt;
        warnings.push(
          `The replica of the ${name} cannot be reached${typeof since === 'string' ? ` (since ${utc(since)})` : ''}: ` +
            `${withoutPaths(part.lastError ?? 'no error was recorded')}. ` +
            'Changes are not being copied off this server; check the replica’s disk or bucket, the network and the credentials.',
        );
        if (part.details.mode === 'sync')
          warnings.push(
            `Writes are being refused: this server acknowledges a change only once it is on the replica (CARETRAIL_REPLICA_SYNC=true), and the replica of the ${name} cannot be reached. ` +
              'Bring the replica back, or set CARETRAIL_REPLICA_SYNC=false and restart to accept writes that are not yet off-site.',
          );
        break;
      }
    }
  }
  if (lastDrill === null) {
    warnings.push(
      'No disaster-recovery drill has been run on this server: run “caretrail dr drill” to prove a restore from the replica works and to measure how much would be lost and how long it takes.',
    );
  } else if (lastDrill === 'unreadable') {
    warnings.push(
      'The record of the last disaster-recovery drill cannot be read: run “caretrail dr drill” again.',
    );
  } else {
    if (!lastDrill.passed) {
      const why = lastDrill.problems.length > 0 ? lastDrill.problems.join('; ') : 'see its figures';
      warnings.push(
        `The last disaster-recovery drill (${day(lastDrill.startedAt)}) failed: ${why}. Fix the cause and run “caretrail dr drill” again.`,
      );
    }
    const ageDays = (now.getTime() - Date.parse(lastDrill.startedAt)) / 86_400_000;
    if (ageDays > DRILL_MAX_AGE_DAYS)
      warnings.push(
        `The last disaster-recovery drill was ${String(Math.floor(ageDays))} days ago (${day(lastDrill.startedAt)}): run “caretrail dr drill” at least every ${String(DRILL_MAX_AGE_DAYS)} days.`,
      );
  }
  return warnings;
}

/** A part's status as the page shows it: error messages without paths. */
function shown(part: ReplicaPartStatus): ReplicaPartStatus {
  const details = { ...part.details };
  if (typeof details.lastError === 'string') details.lastError = withoutPaths(details.lastError);
  return {
    ...part,
    lastError: part.lastError === null ? null : withoutPaths(part.lastError),
    details,
  };
}

export function createBackupsService(deps: ServiceDeps) {
  return {
    /** The Backups page: replication, the last drill and warnings (admins; others 404). */
    async status(ctx: RequestContext): Promise<BackupsStatus> {
      return auditedRead(
        deps,
        ctx,
        { action: 'R', type: 'backups.status', permission: 'backups.read', hideForbidden: true },
        async (record) => {
          const monitor = deps.replication;
          const replication = monitor?.health() ?? 'off';
          const parts = Object.fromEntries(
            Object.entries(monitor?.parts() ?? {}).map(([name, part]) => [name, shown(part)]),
          );
          const lastDrill = (await deps.lastDrill?.()) ?? null;
          const warnings = backupWarnings(replication, parts, lastDrill, deps.clock.now());
          record.detail = { replication, warnings: warnings.length };
          return {
            replication,
            parts,
            lastDrill: lastDrill === 'unreadable' ? null : lastDrill,
            warnings,
          };
        },
      );
    },
  };
}
