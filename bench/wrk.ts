// Runs wrk (one thread, so the server keeps the other core) with a Lua scenario and reads its
// figures: requests/s, latency percentiles from done(), and the server's CPU seconds meanwhile.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuSeconds } from './server.js';

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Requests per CPU second the server used (all its threads). */
  perCore: number;
  requests: number;
}

interface DoneJson {
  requests: number;
  durationUs: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  statusErrors: number;
  timeouts: number;
  p50Us: number;
  p99Us: number;
}

const LUA = path.resolve('bench/lua');

/** The scenario's script with the shared pieces in front (wrk takes a single file). */
function scriptFor(scenario: string): string {
  const file = path.join(os.tmpdir(), `caretrail-bench-${scenario}-${String(process.pid)}.lua`);
  const text =
    fs.readFileSync(path.join(LUA, 'common.lua'), 'utf8') +
    fs.readFileSync(path.join(LUA, `${scenario}.lua`), 'utf8');
  fs.writeFileSync(file, text);
  return file;
}

function wrk(url: string, script: string, seconds: number, env: Record<string, string>) {
  const connections = process.env.BENCH_CONNECTIONS ?? '50';
  const args = ['-t1', `-c${connections}`, `-d${String(seconds)}s`, '--timeout', '10s'];
  return new Promise<DoneJson>((resolve, reject) => {
    const child = spawn('wrk', [...args, '-s', script, url], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
      if (code !== 0 || !line) reject(new Error(`wrk failed (${String(code)}):\n${out}`));
      else resolve(JSON.parse(line) as DoneJson);
    });
  });
}

/** A short warm-up, then `seconds` measured; every answer must be a success (2xx/3xx). */
export async function measure(
  baseUrl: string,
  /** The server's process, or every instance's (behind a load balancer): CPU is summed. */
  pid: number | number[],
  scenario: string,
  env: Record<string, string>,
  seconds: number,
): Promise<WrkResult> {
  const script = scriptFor(scenario);
  try {
    await wrk(baseUrl, script, Number(process.env.BENCH_WARMUP ?? 2), env);
    const pids = Array.isArray(pid) ? pid : [pid];
    const cpuNow = () => pids.reduce((sum, p) => sum + cpuSeconds(p), 0);
    const cpuBefore = cpuNow();
    const r = await wrk(baseUrl, script, seconds, env);
    const cpu = cpuNow() - cpuBefore;
    const failed = r.statusErrors + r.connectErrors + r.readErrors + r.writeErrors + r.timeouts;
    if (failed > 0)
      throw new Error(`${scenario}: ${String(failed)} failed requests ${JSON.stringify(r)}`);
    return {
      rps: r.requests / (r.durationUs / 1e6),
      p50Ms: r.p50Us / 1000,
      p99Ms: r.p99Us / 1000,
      perCore: cpu > 0 ? r.requests / cpu : 0,
      requests: r.requests,
    };
  } finally {
    fs.rmSync(script, { force: true });
  }
}
