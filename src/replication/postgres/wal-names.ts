// PostgreSQL WAL segment names (timeline, log, segment: 24 hex digits) and what the repository
// holds of them. pgBackRest stores each archived segment as
// archive/<stanza>/<archive id>/<first 16 digits>/<name>-<sha1>.<compression>, under its
// plain name: gaps can be found by listing alone, without the cipher pass.
import fs from 'node:fs';
import path from 'node:path';
import { STANZA } from './pgbackrest.js';

/** Caretrail's checks assume PostgreSQL's default segment size (setup refuses others). */
export const WAL_SEGMENT_BYTES = 16 * 1024 * 1024;
const SEGMENTS_PER_LOG = 0x1_0000_0000 / WAL_SEGMENT_BYTES;

export interface WalSegment {
  name: string;
  timeline: number;
  /** Position in the WAL stream, counted in segments. */
  segNo: number;
}

export function parseWalName(name: string): WalSegment | null {
  if (!/^[0-9A-F]{24}$/.test(name)) return null;
  const log = parseInt(name.slice(8, 16), 16);
  const seg = parseInt(name.slice(16, 24), 16);
  if (seg >= SEGMENTS_PER_LOG) return null;
  return { name, timeline: parseInt(name.slice(0, 8), 16), segNo: log * SEGMENTS_PER_LOG + seg };
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

export function walName(timeline: number, segNo: number): string {
  return `${hex8(timeline)}${hex8(Math.floor(segNo / SEGMENTS_PER_LOG))}${hex8(segNo % SEGMENTS_PER_LOG)}`;
}

/** The segment number holding an LSN such as "0/A000090". */
export function segNoOfLsn(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return Math.floor(
    (parseInt(hi ?? '0', 16) * 0x1_0000_0000 + parseInt(lo ?? '0', 16)) / WAL_SEGMENT_BYTES,
  );
}

export interface ArchivedSegment extends WalSegment {
  archiveId: string;
  file: string;
  /** When it arrived in the repository (the file's modification time). */
  archivedAt: Date;
}

/** The WAL segments in a folder repository, oldest first (by archive id, timeline, position). */
export function listArchivedWal(repoPath: string): ArchivedSegment[] {
  const root = path.join(repoPath, 'archive', STANZA);
  const out: ArchivedSegment[] = [];
  const read = (dir: string) => {
    try {
      return fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return [];
    }
  };
  for (const archiveId of read(root)) {
    if (!archiveId.isDirectory()) continue;
    for (const group of read(path.join(root, archiveId.name))) {
      if (!group.isDirectory() || !/^[0-9A-F]{16}$/.test(group.name)) continue;
      const dir = path.join(root, archiveId.name, group.name);
      for (const entry of read(dir)) {
        const match = /^([0-9A-F]{24})-[0-9a-f]{40}(\.[a-z0-9]+)?$/.exec(entry.name);
        const segment = match?.[1] !== undefined ? parseWalName(match[1]) : null;
        if (!segment) continue;
        const file = path.join(dir, entry.name);
        let archivedAt: Date;
        try {
          archivedAt = fs.statSync(file).mtime;
        } catch {
          continue;
        }
        out.push({ ...segment, archiveId: archiveId.name, file, archivedAt });
      }
    }
  }
  const idOrder = (id: string) => Number(id.split('-')[1] ?? 0);
  return out.sort(
    (a, b) =>
      idOrder(a.archiveId) - idOrder(b.archiveId) || a.timeline - b.timeline || a.segNo - b.segNo,
  );
}

/**
 * Segments missing from a run of archived WAL: on each timeline of the newest archive id, every
 * position from the first one at or after `from` (a backup's first segment) to the newest.
 */
export function missingSegments(segments: ArchivedSegment[], from: string | null): string[] {
  const newestId = segments[segments.length - 1]?.archiveId;
  const start = from !== null ? parseWalName(from) : null;
  const byTimeline = new Map<number, number[]>();
  for (const s of segments) {
    if (s.archiveId !== newestId) continue;
    const list = byTimeline.get(s.timeline) ?? [];
    list.push(s.segNo);
    byTimeline.set(s.timeline, list);
  }
  const missing: string[] = [];
  for (const [timeline, positions] of byTimeline) {
    const have = new Set(positions);
    const last = Math.max(...positions);
    // The backup's timeline starts at its first segment; later timelines at their first one.
    let first = Math.min(...positions);
    if (start && start.timeline === timeline) first = start.segNo;
    else if (start && timeline < start.timeline) continue;
    for (let n = first; n <= last; n++) if (!have.has(n)) missing.push(walName(timeline, n));
  }
  return missing;
}
