// The HTTP scenarios under wrk on one engine's seeded dataset, each next to the bare Fastify
// baseline measured in the same run: chart reads, searches, note creates and a mix of them.
import fs from 'node:fs';
import path from 'node:path';
import { BENCH_PASSWORD, type Dataset } from './dataset.js';
import { post, startBare, startCaretrail } from './server.js';
import { measure, type WrkResult } from './wrk.js';

export const SCENARIOS = ['chart', 'search-name', 'search-chip', 'create', 'mixed'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface HttpResults {
  bare: WrkResult[];
  scenarios: Partial<Record<Scenario, WrkResult[]>>;
}

/** Writes the sample lists the Lua scripts read; returns their environment. */
export function sampleEnv(ds: Dataset, token: string): Record<string, string> {
  const files: Record<string, string[]> = {
    BENCH_PATIENTS: ds.sample.patientIds,
    BENCH_CHIPS: ds.sample.microchips,
    BENCH_PREFIXES: ds.sample.prefixes,
  };
  const env: Record<string, string> = { BENCH_TOKEN: token };
  for (const [name, lines] of Object.entries(files)) {
    const file = path.join(ds.dataDir, '..', `${name.toLowerCase()}.txt`);
    fs.writeFileSync(file, `${lines.join('\n')}\n`);
    env[name] = file;
  }
  return env;
}

/**
 * Runs every chosen scenario `repeat` times against one `caretrail serve`, alternating with the
 * bare baseline so that both see the same load from the rest of the machine.
 */
export async function httpBench(
  ds: Dataset,
  chosen: Scenario[],
  options: { seconds: number; repeat: number },
): Promise<HttpResults> {
  const results: HttpResults = { bare: [], scenarios: {} };
  const bare = await startBare();
  const server = await startCaretrail(ds.env);
  try {
    // The server verifies the whole audit chain at start-up, in the background: not measured.
    await server.waitForLog(/audit trail verified/);
    const login = { email: 'vet@bench.test', password: BENCH_PASSWORD };
    const { token } = await post<{ token: string }>(server.baseUrl, '/api/v1/auth/login', login);
    const env = sampleEnv(ds, token);
    for (let round = 0; round < options.repeat; round++) {
      results.bare.push(await measure(bare.baseUrl, bare.pid, 'bare', {}, options.seconds));
      for (const scenario of chosen) {
        const r = await measure(server.baseUrl, server.pid, scenario, env, options.seconds);
        (results.scenarios[scenario] ??= []).push(r);
      }
    }
  } finally {
    await server.stop();
    await bare.stop();
  }
  return results;
}
