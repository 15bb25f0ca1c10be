// The audit trail service: its use cases live in ./audit-trail/ (one module each); this path is
// kept so that callers import it where they always did.
export * from './audit-trail/index.js';
