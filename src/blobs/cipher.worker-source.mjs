// Development and tests run TypeScript through tsx: this shim gives the worker thread tsx's
// loader, then starts the real worker. Built code (dist/) starts cipher.worker.js directly.
import { register } from 'tsx/esm/api';

register();
await import('./cipher.worker.ts');
