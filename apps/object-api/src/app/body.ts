import type { INestApplication } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { json } from 'express';
import { InvalidArgumentError } from '@ferry/errors';
import { bodyError, cutIdleBody } from '@ferry/http';

/** Largest JSON body object-api accepts (1 MiB; createUpload's dataInline is the largest, and small by design). */
export const JSON_LIMIT = '1mb';

/** A body past JSON_LIMIT: Taskcluster's InputTooLarge (413), still the client's mistake (INVALID_ARGUMENT elsewhere). */
export class InputTooLargeError extends InvalidArgumentError {}

const rawBodies = new WeakMap<Request, Buffer>();

/**
 * Parses JSON bodies (not on `streamedPaths`, whose bodies the handlers stream), keeping the bytes
 * as received for Hawk's payload hash (rawBodyOf). Registered before configureHttpApp's parser,
 * which then finds the body read and leaves it. A body past JSON_LIMIT is InputTooLargeError (413).
 */
export function parseJsonBodies(app: INestApplication, streamedPaths: RegExp): void {
  const parse = json({ limit: JSON_LIMIT, verify: (req, _res, buf) => void rawBodies.set(req as Request, buf) });
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (streamedPaths.test(req.path)) return next();
    // a body that stops arriving is cut after 60 s idle (found by npm run fuzz: it was held for good)
    const bodyRead = cutIdleBody(req);
    parse(req, res, (err?: unknown) => {
      bodyRead();
      next(err === undefined ? undefined : tcBodyError(err));
    });
  });
}

/** The body of a request as received, when it was read as JSON (else undefined: none, or not JSON). */
export function rawBodyOf(req: Request): Buffer | undefined {
  return rawBodies.get(req);
}

/** body-parser failures as configureHttpApp maps them (bodyError), but a body too large is 413. */
function tcBodyError(err: unknown): unknown {
  const mapped = bodyError(err);
  const tooLarge = (err as { type?: unknown }).type === 'entity.too.large';
  return tooLarge && mapped instanceof Error ? new InputTooLargeError(mapped.message) : mapped;
}
