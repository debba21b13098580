import { describeCacheContract } from './cache-contract.suite';
import { createCache } from './create-cache';
import { MemoryCache, MemoryStore } from './memory-cache';

describeCacheContract('in-process (MemoryCache)', (keyPrefix) => new MemoryCache({ keyPrefix }));

describe('MemoryStore', () => {
  it('sweeps expired entries while writing, so memory stays bounded without timers', () => {
    let now = 1_000_000;
    const store = new MemoryStore(() => now);
    for (let i = 0; i < 500; i++) store.write(`k${i}`, 'v', 100);
    expect(store.size).toBe(500);
    now += 2000;
    store.write('fresh', 'v', 100);
    expect(store.size).toBe(1);
  });

  it('token buckets follow the injected clock exactly', async () => {
    let now = 5_000;
    const cache = new MemoryCache({ keyPrefix: 'p:', store: new MemoryStore(() => now) });
    const bucket = { capacity: 2, refillPerSecond: 4 };
    expect((await cache.takeToken('b', bucket)).allowed).toBe(true);
    expect((await cache.takeToken('b', bucket)).allowed).toBe(true);
    expect(await cache.takeToken('b', bucket)).toEqual({ allowed: false, retryAfterMs: 250, remaining: 0 });
    now += 100;
    expect(await cache.takeToken('b', bucket)).toEqual({ allowed: false, retryAfterMs: 150, remaining: 0 });
    now += 150;
    expect(await cache.takeToken('b', bucket)).toEqual({ allowed: true, retryAfterMs: 0, remaining: 0 });
    now += 10_000;
    expect(await cache.takeToken('b', bucket)).toEqual({ allowed: true, retryAfterMs: 0, remaining: 1 });
  });

  it('keeps a bucket and a plain value apart under one key, as Redis does', async () => {
    const cache = new MemoryCache({ keyPrefix: 'p:', store: new MemoryStore() });
    await cache.takeToken('x', { capacity: 1, refillPerSecond: 1 });
    await expect(cache.get('x')).rejects.toThrow(/WRONGTYPE/);
  });
});

describe('createCache', () => {
  it('chooses the in-process cache without a url, sharing the process store', async () => {
    const a = createCache({ keyPrefix: 'shared-test:' });
    const b = createCache({ keyPrefix: 'shared-test:' });
    expect(a.kind).toBe('memory');
    await a.set('k', 'v', { ttlMs: 1000 });
    expect(await b.get('k')).toBe('v');
    await a.del('k');
  });

  it('chooses Redis with a url, and refuses a url that is not redis', () => {
    expect(() => createCache({ url: 'http://example', keyPrefix: 'x:' })).toThrow(/redis:\/\/ or rediss:\/\//);
  });
});
