// Restores a SQLite database from its replica: the latest snapshot taken at or before the moment
// asked for, then its generation's log segments from that snapshot's index on, in order, each
// checked (sealed under its own name, continuing exactly where the previous one ended, frames
// whose checksums chain on), up to the last transaction committed at or before that moment (a
// segment records each transaction's commit time, so a restore can end inside one). A damaged or
// missing segment ends the restore at the last good point, and the report says which and when.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import BetterSqlite3 from 'better-sqlite3';
import type { Keyring } from '../blobs/master-key.js';
import type { ReplicaDestination } from './destination.js';
import { openObject } from './sealed.js';
import {
  listSnapshots,
  snapshotPartName,
  type SegmentMeta,
  type SnapshotManifest,
} from './sqlite-replicator.js';
import { WAL_HEADER_SIZE, committedFrames, parseWalHeader } from './wal.js';

export class RestoreError extends Error {}

export interface RestoreReport {
  generation: string;
  snapshotAt: string;
  /** Segments applied, and transactions in them. */
  segments: number;
  commits: number;
  /** When the last applied segment was read off the primary's log (null: the snapshot alone). */
  restoredTo: string;
  /** Set when a damaged or missing segment stopped the restore early. */
  stoppedAt: { segment: string; reason: string } | null;
  bytes: number;
}

interface Segment {
  name: string;
  meta: SegmentMeta;
  header: Buffer;
  frames: Buffer;
  /** Apply only this many of its transactions (the last segment of a point-in-time restore). */
  keep?: number;
}

function decodeSegment(name: string, plain: Buffer): Segment {
  const length = plain.readUInt32BE(0);
  const meta = JSON.parse(plain.subarray(4, 4 + length).toString('utf8')) as SegmentMeta;
  const header = plain.subarray(4 + length, 4 + length + WAL_HEADER_SIZE);
  return { name, meta, header, frames: plain.subarray(4 + length + WAL_HEADER_SIZE) };
}

/** Snapshots on the replica, oldest first (each with its generation). */
export async function listGenerations(
  destination: ReplicaDestination,
  keyring: Keyring,
): Promise<{ id: string; manifest: SnapshotManifest }[]> {
  const snapshots = await listSnapshots(destination, keyring);
  return snapshots
    .filter((s) => s.manifest.index === 0)
    .map((s) => ({ id: s.generation, manifest: s.manifest }));
}

export async function restoreSqlite(options: {
  destination: ReplicaDestination;
  keyring: Keyring;
  /** The database file to create. */
  to: string;
  /** The moment to restore (default: the latest state on the replica). */
  at?: Date;
  now?: Date;
  /** Replace a database already at `to`. */
  force?: boolean;
}): Promise<RestoreReport> {
  const { destination, keyring, to } = options;
  const now = options.now ?? new Date();
  if (options.at && options.at.getTime() > now.getTime())
    throw new RestoreError(`--at ${options.at.toISOString()} is in the future`);
  if (!options.force && fs.existsSync(to) && fs.statSync(to).size > 0)
    throw new RestoreError(`${to} already holds a database; restore elsewhere or pass --force`);

  const snapshots = await listSnapshots(destination, keyring);
  if (snapshots.length === 0)
    throw new RestoreError(`the replica at ${destination.description} holds no snapshot`);
  const at = options.at?.toISOString();
  const candidate =
    at === undefined
      ? snapshots.at(-1)
      : snapshots.filter((s) => s.manifest.createdAt <= at).at(-1);
  if (!candidate) {
    throw new RestoreError(
      `${at ?? ''} is before the oldest snapshot on the replica (${snapshots[0]?.manifest.createdAt ?? ''}): outside retention`,
    );
  }
  const chosen = { id: candidate.generation, manifest: candidate.manifest };

  await fsp.mkdir(path.dirname(path.resolve(to)), { recursive: true });
  for (const suffix of ['', '-wal', '-shm']) await fsp.rm(`${to}${suffix}`, { force: true });
  const out = await fsp.open(`${to}.restoring`, 'w');
  let bytes = 0;
  try {
    for (let part = 0; part < chosen.manifest.parts; part++) {
      const name = snapshotPartName(chosen.id, chosen.manifest.index, part);
      const sealed = await destination.get(name);
      if (!sealed) throw new RestoreError(`snapshot part ${name} is missing`);
      const plain = gunzipSync(openObject(keyring, name, sealed));
      await out.write(plain, 0, plain.length, bytes);
      bytes += plain.length;
    }
    if (bytes !== chosen.manifest.bytes)
      throw new RestoreError(
        `the snapshot of generation ${chosen.id} is ${String(bytes)} bytes, not ${String(chosen.manifest.bytes)}`,
      );
    await out.sync();
  } finally {
    await out.close();
  }
  await fsp.rename(`${to}.restoring`, to);

  const report: RestoreReport = {
    generation: chosen.id,
    snapshotAt: chosen.manifest.createdAt,
    segments: 0,
    commits: 0,
    restoredTo: chosen.manifest.createdAt,
    stoppedAt: null,
    bytes,
  };

  // Segments by log index, in offset order.
  const names = (await destination.list(`generations/${chosen.id}/wal/`)).sort();
  const byIndex = new Map<string, string[]>();
  for (const name of names) {
    const index = name.split('/')[3] ?? '';
    byIndex.set(index, [...(byIndex.get(index) ?? []), name]);
  }
  outer: for (const index of [...byIndex.keys()].sort()) {
    const chain: Segment[] = [];
    let expected = WAL_HEADER_SIZE;
    if (parseInt(index, 16) < chosen.manifest.index) continue;
    for (const name of byIndex.get(index) ?? []) {
      let segment: Segment;
      try {
        const sealed = await destination.get(name);
        if (!sealed) throw new Error('missing');
        segment = decodeSegment(name, openObject(keyring, name, sealed));
      } catch (err) {
        report.stoppedAt = {
          segment: name,
          reason: err instanceof Error ? err.message : String(err),
        };
        await applyChain(to, chain, report);
        break outer;
      }
      if (at !== undefined && segment.meta.shippedAt > at) {
        // Only the transactions committed by then.
        const keep = segment.meta.commitTimes.filter((t) => t <= at).length;
        if (keep > 0 && segment.meta.offset === expected) chain.push({ ...segment, keep });
        await applyChain(to, chain, report);
        break outer;
      }
      if (segment.meta.offset !== expected) {
        report.stoppedAt = {
          segment: name,
          reason: `starts at ${String(segment.meta.offset)}, the log before it ends at ${String(expected)}`,
        };
        await applyChain(to, chain, report);
        break outer;
      }
      chain.push(segment);
      expected = segment.meta.endOffset;
    }
    if (!(await applyChain(to, chain, report))) break;
  }

  const check = new BetterSqlite3(to);
  try {
    const integrity = check.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok')
      throw new RestoreError(
        `the restored database fails its integrity check: ${String(integrity)}`,
      );
    check.pragma('journal_mode = WAL');
  } finally {
    check.close();
  }
  return report;
}

/**
 * Writes the chain of one log index behind the database as its WAL and lets SQLite apply it.
 * Frames whose checksums do not chain on stop it at the last good transaction (false: stop).
 */
async function applyChain(to: string, chain: Segment[], report: RestoreReport): Promise<boolean> {
  if (chain.length === 0) return true;
  const first = chain[0] as Segment;
  const header = parseWalHeader(first.header);
  if (!header) {
    report.stoppedAt = { segment: first.name, reason: 'its WAL header is damaged' };
    return false;
  }
  const frames = Buffer.concat(chain.map((s) => s.frames));
  const last = chain.at(-1) as Segment;
  const partial = last.keep !== undefined ? last.meta.commits - last.keep : 0;
  const expected = chain.reduce((n, s) => n + s.meta.commits, 0) - partial;
  const run = committedFrames(header, frames, WAL_HEADER_SIZE, header.checksum, expected);
  let applied = chain;
  let good = run.frames.length;
  if (run.commits !== expected) {
    // Keep the segments wholly inside the good run.
    applied = chain.filter((s) => s.meta.endOffset <= run.endOffset);
    const bad = chain[applied.length] as Segment;
    report.stoppedAt = {
      segment: bad.name,
      reason: 'its frames do not continue the log (damaged)',
    };
    good = applied.reduce((n, s) => n + s.frames.length, 0);
  }
  await fsp.writeFile(`${to}-wal`, Buffer.concat([header.bytes, frames.subarray(0, good)]));
  const db = new BetterSqlite3(to);
  try {
    const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (result?.busy !== 0) throw new RestoreError('the restored log could not be applied');
  } finally {
    db.close();
  }
  await fsp.rm(`${to}-wal`, { force: true });
  report.segments += applied.length;
  report.commits += applied.reduce((n, s) => n + (s.keep ?? s.meta.commits), 0);
  const end = applied.at(-1);
  if (end) {
    const times = end.meta.commitTimes;
    report.restoredTo = times[(end.keep ?? times.length) - 1] ?? end.meta.shippedAt;
  }
  return report.stoppedAt === null;
}
