import { InvalidArgumentError, ResourceExhaustedError, UnavailableError } from '@ferry/errors';
import IORedis from 'ioredis';
import { freePort } from '@ferry/testing';
import { classifyInfraError } from './infra-errors';

describe('classifyInfraError', () => {
  it('maps a Redis that cannot be reached to UNAVAILABLE', async () => {
    const redis = new IORedis(`redis://127.0.0.1:${await freePort()}`, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    redis.on('error', () => undefined);
    const err = await redis.get('x').catch((e: unknown) => e);
    redis.disconnect();
    expect(classifyInfraError(err)).toBeInstanceOf(UnavailableError);
  });

  it('maps a full disk to RESOURCE_EXHAUSTED and leaves other errors alone', () => {
    const full = Object.assign(new Error('no space'), { code: 'ENOSPC' });
    expect(classifyInfraError(full)).toBeInstanceOf(ResourceExhaustedError);
    const domain = new InvalidArgumentError('bad');
    expect(classifyInfraError(domain)).toBe(domain);
    const other = new Error('boom');
    expect(classifyInfraError(other)).toBe(other);
  });
});
