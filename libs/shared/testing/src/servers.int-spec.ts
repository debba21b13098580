import { createClient } from 'redis';

import { dropCacheKeys, takeUniqueNames, TEST_REDIS_URL, uniqueName } from './servers';

describe('per-run names on the shared servers', () => {
  it('remembers the names it made until they are taken', () => {
    takeUniqueNames();
    const a = uniqueName('one');
    const b = uniqueName();
    expect(a).toMatch(/^one_[0-9a-z]+_[0-9a-f]{8}$/);
    expect(takeUniqueNames()).toEqual([a, b]);
    expect(takeUniqueNames()).toEqual([]);
  });

  it('deletes the Redis keys under a run’s names and no others', async () => {
    const [mine, theirs] = [uniqueName('keys'), uniqueName('keys')];
    const redis = createClient({ url: TEST_REDIS_URL });
    await redis.connect();
    try {
      await redis.set(`${mine}:a`, '1');
      await redis.set(`${mine}:cp:conn-gen:op_1`, '1', { EX: 600 });
      await redis.set(`${mine}x:a`, 'a longer name, not under mine');
      await redis.set(`${theirs}:a`, 'another run');
      expect(await dropCacheKeys([mine, 'not*a*plain*name'])).toBe(2);
      expect(await redis.exists([`${mine}:a`, `${mine}:cp:conn-gen:op_1`])).toBe(0);
      expect(await redis.exists([`${mine}x:a`, `${theirs}:a`])).toBe(2);
      expect(await dropCacheKeys([theirs, `${mine}x`])).toBe(2);
    } finally {
      await redis.del([`${mine}x:a`, `${theirs}:a`]);
      await redis.quit();
    }
  });
});
