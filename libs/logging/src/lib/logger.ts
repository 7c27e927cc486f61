import pino, { Logger } from 'pino';

export type { Logger } from 'pino';

/** A structured JSON logger; secrets in request headers and metadata are redacted. */
export function createLogger(app: string, level = 'info'): Logger {
  return pino({
    name: app,
    level,
    base: { app, pid: process.pid },
    redact: {
      paths: ['authorization', '*.authorization', 'headers.authorization', 'accessToken', '*.accessToken'],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
