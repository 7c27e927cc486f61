import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { REDIS, STORAGE, checkDependencies } from '@ferry/core';
import type { Redis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';

/**
 * Dockerflow endpoints Taskcluster services serve, at the root and, as Taskcluster's API references
 * declare them (`object.heartbeat()` in the clients), under the API prefix.
 */
@Controller()
export class DockerflowController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(STORAGE) private readonly storage: Storage,
  ) {}

  /** 200 only when Redis and storage answer (the /readyz checks); else 503 saying which failed. */
  @Get(['__heartbeat__', 'api/object/v1/__heartbeat__'])
  async heartbeat(@Res() res: Response): Promise<void> {
    const { ready, redis, storage } = await checkDependencies(this.redis, this.storage);
    if (ready) res.status(200).json({ redis, storage });
    else
      res.status(503).json({
        code: 'ServiceUnavailable',
        message: `a dependency does not answer: redis: ${redis}, storage: ${storage}`,
        redis,
        storage,
      });
  }

  @Get(['__lbheartbeat__', 'api/object/v1/__lbheartbeat__'])
  lbheartbeat(): Record<string, never> {
    return {};
  }

  @Get(['__version__', 'api/object/v1/__version__'])
  version(): { source: string; version: string; commit: string; build: string } {
    return { source: 'https://github.com/ferry/ferry', version: '0.1.0', commit: 'unknown', build: 'local' };
  }
}
