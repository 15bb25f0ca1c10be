// JSON logs (pino). Secrets and patient fields never reach a log line: request bodies are not
// logged, URLs lose their query strings, and error messages lose quoted values.
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config.js';

const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  '*.password',
  '*.token',
  '*.totp',
  '*.secret',
  'password',
  'token',
  'totp',
  'secret',
];

function withoutQuotedValues(text: string): string {
  return text
    .replace(/"[^"]*"/g, '"…"')
    .replace(/'[^']*'/g, "'…'")
    .replace(/\(([^)]*)\)=\(([^)]*)\)/g, '($1)=(…)');
}

export function safeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err };
  const message = withoutQuotedValues(err.message);
  const code = (err as { code?: unknown }).code;
  const stackFrames = (err.stack ?? '').split('\n').slice(1).join('\n');
  return {
    type: err.name,
    message,
    ...(typeof code === 'string' ? { code } : {}),
    stack: `${err.name}: ${message}\n${stackFrames}`,
  };
}

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'caretrail' },
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers: {
        err: safeError,
        req: (req: { method?: string; url?: string; id?: string }) => ({
          method: req.method,
          url: (req.url ?? '').split('?')[0],
        }),
        res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      },
    },
    destination,
  );
}
