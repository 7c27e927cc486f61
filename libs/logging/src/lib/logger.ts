import pino, { DestinationStream, Logger } from 'pino';

export type { Logger } from 'pino';

/** A structured JSON logger; secrets in request headers and metadata are redacted. */
export function createLogger(app: string, level = 'info', destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name: app,
    level,
    base: { app, pid: process.pid },
    redact: {
      paths: ['authorization', '*.authorization', 'headers.authorization', 'accessToken', '*.accessToken'],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
