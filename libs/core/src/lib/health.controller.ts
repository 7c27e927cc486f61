import { Controller, Get, HttpCode, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { collectDefaultMetrics, register } from 'prom-client';
import type { Redis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { REDIS, STORAGE } from './tokens';

let defaultMetrics = false;

/** Whether each dependency every app needs answers: Redis (PING) and storage (a probe write). */
export interface DependencyChecks {
  ready: boolean;
  redis: 'ok' | 'unavailable';
  storage: 'ok' | 'unavailable';
}

/** Checks Redis and storage, for /readyz and for the protocols' own health routes (Dockerflow's /__heartbeat__). */
export async function checkDependencies(redis: Redis, storage: Storage): Promise<DependencyChecks> {
  const checks = await Promise.allSettled([redis.ping(), storage.check()]);
  const [redisState, storageState] = checks.map((c) => (c.status === 'fulfilled' ? 'ok' : 'unavailable') as 'ok' | 'unavailable');
  return { ready: redisState === 'ok' && storageState === 'ok', redis: redisState, storage: storageState };
}

/** Liveness, readiness (Redis and storage reachable) and Prometheus metrics for every HTTP app. */
@Controller()
export class HealthController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(STORAGE) private readonly storage: Storage,
  ) {
    // Process metrics only where they are served (not a side effect of importing @ferry/core).
    if (!defaultMetrics) collectDefaultMetrics({ prefix: 'ferry_' });
    defaultMetrics = true;
  }

  @Get('healthz')
  @HttpCode(200)
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('readyz')
  async readyz(@Res() res: Response): Promise<void> {
    const { ready, redis, storage } = await checkDependencies(this.redis, this.storage);
    res
      .status(ready ? 200 : 503)
      .json(ready ? { status: 'ok', redis, storage } : { code: 'UNAVAILABLE', message: `redis: ${redis}, storage: ${storage}` });
  }

  @Get('metrics')
  async metrics(@Res() res: Response): Promise<void> {
    res.setHeader('Content-Type', register.contentType);
    res.send(await register.metrics());
  }
}
