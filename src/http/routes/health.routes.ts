// Liveness and readiness for load balancers and orchestrators.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Services } from '../../services/services.js';

export const healthRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (
  app,
  { services },
) => {
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: { response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
    },
    () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: {
        response: {
          200: Type.Object({
            status: Type.String(),
            database: Type.String(),
            files: Type.String(),
            replica: Type.String(),
            replicaParts: Type.Record(Type.String(), Type.String()),
          }),
          503: Type.Object({
            status: Type.String(),
            database: Type.String(),
            files: Type.String(),
            replica: Type.String(),
            replicaParts: Type.Record(Type.String(), Type.String()),
          }),
        },
      },
    },
    async (request, reply) => {
      const check = (ping: () => Promise<void>, what: string) =>
        ping().then(
          () => 'ok',
          (err: unknown) => {
            request.log.warn({ err, what }, 'readiness check failed');
            return 'unavailable';
          },
        );
      const { db } = services.deps;
      // 'off', 'ok' or 'degraded': a replica behind or unreachable does not stop this instance
      // serving (asynchronous mode keeps taking writes), so it is reported, not a 503.
      const replica = services.deps.replication?.health() ?? 'off';
      // Which part is behind, by name ('database', 'files', 'audit anchors'): states only, no figures.
      const replicaParts = Object.fromEntries(
        Object.entries(services.deps.replication?.parts() ?? {}).map(([name, p]) => [
          name,
          p.state,
        ]),
      );
      if (db.failureSource !== null) {
        // Fail-stop: not ready until restarted, whatever the pings say now.
        return reply.code(503).send({
          status: 'fail_stop',
          database: db.failureSource === 'database' ? 'failed' : 'ok',
          files: db.failureSource === 'files' ? 'failed' : 'ok',
          replica,
          replicaParts,
        });
      }
      const [database, files] = await Promise.all([
        check(() => db.ping(), 'database'),
        check(() => services.deps.vault.store.ping(), 'files'),
      ]);
      const ready = database === 'ok' && files === 'ok';
      const status = !ready ? 'not_ready' : replica === 'degraded' ? 'degraded' : 'ready';
      return reply.code(ready ? 200 : 503).send({ status, database, files, replica, replicaParts });
    },
  );
};
