// The baseline: a bare Fastify hello route in its own process, on the same Node as the server.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/', async () => ({ hello: 'world' }));
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ address, msg: 'Caretrail is listening' })}\n`);
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
