-- Baseline: the bare Fastify hello route.
function request() return wrk.format("GET", "/") end
