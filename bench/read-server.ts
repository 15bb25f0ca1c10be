// A Caretrail server for the audited-read benchmark. With BENCH_UNAUDITED=1 patient reads skip
// their audit event (the baseline); this switch exists only here, never in configuration.
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createRuntime } from '../src/server.js';

const config = loadConfig(process.env, { port: '0', 'log-level': 'warn' });
const runtime = await createRuntime(config, createLogger(config.logLevel), {
  unauditedReadsForBenchmark: process.env.BENCH_UNAUDITED === '1',
});
const address = await runtime.app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ address, msg: 'Caretrail is listening' })}\n`);
process.on('SIGTERM', () => {
  void runtime.close().then(() => process.exit(0));
});
