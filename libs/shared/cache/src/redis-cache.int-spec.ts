import { createServer, type Socket } from 'node:net';

import { TEST_REDIS_URL, uniqueName } from '@stack/testing';
import { createClient } from 'redis';

import { describeCacheContract } from './cache-contract.suite';
import { createCache } from './create-cache';
import { RedisCache } from './redis-cache';

describeCacheContract('Redis (RedisCache)', (keyPrefix) => new RedisCache({ url: TEST_REDIS_URL, keyPrefix }));

describe('RedisCache against the real server', () => {
  const admin = createClient({ url: TEST_REDIS_URL });
  beforeAll(() => admin.connect());
  afterAll(() => admin.close());

  it('is what createCache returns for a url, and stores keys under the prefix exactly as given', async () => {
    const prefix = `${uniqueName('layout')}:`;
    const cache = createCache({ url: TEST_REDIS_URL, keyPrefix: prefix });
    try {
      expect(cache.kind).toBe('redis');
      await cache.set('k', 'v', { ttlMs: 5000 });
      await cache.takeToken('bucket', { capacity: 2, refillPerSecond: 1 });
      expect(await admin.get(`${prefix}k`)).toBe('v');
      const ttl = await admin.pTTL(`${prefix}k`);
      expect(ttl).toBeGreaterThan(4000);
      expect(ttl).toBeLessThanOrEqual(5000);
      // The bucket expires once it would be full again: (2 - 1) / 1 per second + 1 s of margin.
      const bucketTtl = await admin.pTTL(`${prefix}bucket`);
      expect(bucketTtl).toBeGreaterThan(1500);
      expect(bucketTtl).toBeLessThanOrEqual(2000);
    } finally {
      await cache.close();
    }
  });

  it('sends one GET for the reads of a key asked for in one turn, and a later turn reads again', async () => {
    const prefix = `${uniqueName('turn')}:`;
    const cache = new RedisCache({ url: TEST_REDIS_URL, keyPrefix: prefix });
    // MONITOR on a connection of its own: the commands the server received, as it saw them.
    const watcher = admin.duplicate();
    await watcher.connect();
    const seen: string[] = [];
    await watcher.monitor((line) => {
      if (line.includes(prefix)) seen.push(line);
    });
    try {
      await cache.set('gen', 'one', { ttlMs: 5000 });
      const reads = await Promise.all([...Array.from({ length: 20 }, () => cache.get('gen')), cache.get('other'), cache.get('gen')]);
      expect(reads.filter((r) => r === 'one')).toHaveLength(21);
      expect(reads[20]).toBeUndefined();
      await admin.set(`${prefix}gen`, 'two');
      expect(await cache.get('gen')).toBe('two');
      // A bad key is refused as before, without sending anything.
      await expect(cache.get('')).rejects.toThrow();
      await new Promise((r) => setTimeout(r, 200));
      const gets = seen.filter((l) => /"get"/i.test(l));
      expect(gets.filter((l) => l.includes(`${prefix}gen`))).toHaveLength(2);
      expect(gets.filter((l) => l.includes(`${prefix}other`))).toHaveLength(1);
    } finally {
      await watcher.close();
      await cache.close();
    }
  });

  it('reloads its scripts after SCRIPT FLUSH', async () => {
    const cache = new RedisCache({ url: TEST_REDIS_URL, keyPrefix: `${uniqueName('flush')}:` });
    try {
      expect(await cache.incr('n', { ttlMs: 5000 })).toBe(1);
      // Harmless to other clients: each falls back to EVAL as this one does.
      await admin.scriptFlush();
      expect(await cache.incr('n', { ttlMs: 5000 })).toBe(2);
      expect((await cache.takeToken('b', { capacity: 1, refillPerSecond: 1 })).allowed).toBe(true);
    } finally {
      await cache.close();
    }
  });

  it('fails within its connect timeout, and ping rejects, when Redis does not answer', async () => {
    // A port that accepts TCP and never speaks Redis: the handshake hangs forever.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    const port = (silent.address() as { port: number }).port;
    const cache = new RedisCache({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'x:', connectTimeoutMs: 300 });
    try {
      const started = Date.now();
      await expect(cache.ping()).rejects.toThrow(/not reachable within 300 ms/);
      await expect(cache.get('k')).rejects.toThrow(/not reachable/);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await cache.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
