// Server processes for the benchmarks: `caretrail serve` from the build (dist/), or the bare
// Fastify baseline, with the CPU time each has used (/proc/<pid>/stat).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface Server {
  child: ChildProcess;
  pid: number;
  baseUrl: string;
  /** Resolves once the server has logged a line matching `pattern`. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** BENCH_MAIN: another build of the server (e.g. the one before a change) for an A/B run. */
export const MAIN = path.resolve(process.env.BENCH_MAIN ?? 'dist/cli/main.js');

/** Starts `entry` with node and resolves once it logs that it listens. */
export function startProcess(entry: string[], env: Record<string, string>): Promise<Server> {
  const child = spawn(process.execPath, entry, {
    env: { ...process.env, CARETRAIL_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => {
    child.on('exit', () => {
      resolve();
    });
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start:\n${out}`));
    }, 60_000);
    child.stdout.on('data', (d: Buffer) => {
      if (out.length < 1_000_000) out += d.toString(); // request log lines: keep the start only
      const match = /"address":"(http:\/\/[^"]+)".*Caretrail is listening/.exec(out);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({
          child,
          pid: child.pid ?? 0,
          baseUrl: match[1],
          waitForLog: async (pattern, timeoutMs = 600_000) => {
            const until = Date.now() + timeoutMs;
            while (!pattern.test(out)) {
              if (Date.now() > until) throw new Error(`no ${String(pattern)} in:\n${out}`);
              await new Promise((r) => setTimeout(r, 100));
            }
          },
          stop: async () => {
            child.kill('SIGTERM');
            await exited;
          },
        });
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      if (out.length < 1_000_000) out += d.toString();
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`server exited before listening:\n${out}`));
    });
  });
}

/**
 * `caretrail serve` (built) on a free port; logs at info so the listening line shows.
 * SERVER_NODE_OPTIONS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") goes to its node only.
 */
export function startCaretrail(env: Record<string, string>): Promise<Server> {
  const extra = process.env.SERVER_NODE_OPTIONS?.split(' ').filter(Boolean) ?? [];
  return startProcess([...extra, MAIN, 'serve', '--port', '0'], {
    ...env,
    CARETRAIL_LOG_LEVEL: 'info',
  });
}

export function startBare(): Promise<Server> {
  return startProcess([path.resolve('bench/bare-server.mjs')], {});
}

const TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds used so far by every thread of `pid`. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** Resident memory of `pid` in bytes (0 once it has exited). */
export function rssOf(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** Runs the built CLI to the end; rejects on a non-zero exit. */
export function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, CARETRAIL_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`caretrail ${args.join(' ')} exited with ${String(code)}: ${stderr}`));
    });
  });
}

export async function post<T>(baseUrl: string, url: string, body: unknown, token?: string) {
  const res = await fetch(`${baseUrl}${url}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST ${url}: ${String(res.status)} ${await res.text()}`);
  return (await res.json()) as T;
}
