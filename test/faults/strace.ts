// strace for the fault suite: attach to running processes, and read back the syscalls that matter
// (socket reads and writes with their first bytes, fsync/fdatasync with the file they flushed).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { sleep } from './fault-helpers.js';

/** Why strace cannot be used here, or null. */
export function straceUnavailable(): string | null {
  const probe = spawnSync('strace', ['-V']);
  if (probe.error) return 'strace is not installed (apt-get install strace)';
  const self = spawnSync('strace', ['-f', '-e', 'trace=none', '-o', '/dev/null', 'true']);
  if (self.status !== 0) return `strace cannot trace here: ${self.stderr.toString().trim()}`;
  return null;
}

export interface Tracer {
  /** Stops tracing (the traced processes go on) and returns the trace file's text. */
  stop(): Promise<string>;
  child: ChildProcess;
}

/**
 * Attaches strace to `pids` (every thread: -f) with `args` (e.g. -e trace=…, -e inject=…) and
 * resolves once every process (with all its threads) is attached.
 */
export async function attachStrace(pids: number[], args: string[], file: string): Promise<Tracer> {
  const child = spawn(
    'strace',
    [
      '-f',
      '-ttt',
      '-T',
      '-yy',
      '-s',
      '48',
      '-o',
      file,
      ...args,
      ...pids.flatMap((p) => ['-p', String(p)]),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 10_000;
  // strace says "Process N attached [with K threads]" once per process, after seizing them all.
  while ((err.match(/attached/g) ?? []).length < pids.length) {
    if (child.exitCode !== null) throw new Error(`strace exited: ${err}`);
    if (Date.now() > deadline) throw new Error(`strace did not attach to every thread: ${err}`);
    await sleep(50);
  }
  return {
    child,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT');
        await exited;
      }
      return fs.readFileSync(file, 'utf8');
    },
  };
}

export interface Syscall {
  pid: number;
  name: string;
  /** Entry and exit times, in seconds (strace -ttt -T). */
  start: number;
  end: number;
  /** The first argument as strace shows it, e.g. `12</data/caretrail.db-wal>`. */
  target: string;
  /** Everything between the parentheses (first bytes of buffers included). */
  args: string;
  result: string;
}

const LINE = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/;
const COMPLETE = /^(\w+)\((.*)\)\s+=\s+(.+?)\s+<(\d+\.\d+)>$/;
const UNFINISHED = /^(\w+)\((.*) <unfinished \.\.\.>$/;
const RESUMED = /^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(.+?)\s+<(\d+\.\d+)>$/;

/** Parses an `strace -f -ttt -T -yy` trace, joining unfinished calls with their resumption. */
export function parseTrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const open = new Map<string, { start: number; args: string }>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const at = Number(m[2]);
    const rest = m[3] ?? '';
    let c = COMPLETE.exec(rest);
    if (c) {
      const args = c[2] ?? '';
      calls.push({
        pid,
        name: c[1] ?? '',
        start: at,
        end: at + Number(c[4]),
        target: firstArg(args),
        args,
        result: c[3] ?? '',
      });
      continue;
    }
    c = UNFINISHED.exec(rest);
    if (c) {
      open.set(`${pid}:${c[1]}`, { start: at, args: c[2] ?? '' });
      continue;
    }
    c = RESUMED.exec(rest);
    if (c) {
      const begun = open.get(`${pid}:${c[1]}`);
      open.delete(`${pid}:${c[1]}`);
      const args = `${begun?.args ?? ''}${c[2] ?? ''}`;
      calls.push({
        pid,
        name: c[1] ?? '',
        start: begun?.start ?? at - Number(c[4]),
        end: at,
        target: firstArg(args),
        args,
        result: c[3] ?? '',
      });
    }
  }
  return calls.sort((a, b) => a.start - b.start);
}

function firstArg(args: string): string {
  const m = /^(\d+<.*?>)(?=,\s|$)/.exec(args);
  return m?.[1] ?? args.split(',')[0] ?? '';
}
