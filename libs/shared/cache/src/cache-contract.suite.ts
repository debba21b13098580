/**
 * The one behaviour every Cache implementation must have, as a Jest suite: run by
 * memory-cache.spec.ts against the in-process store and by redis-cache.int-spec.ts against the
 * real Redis, so the two cannot drift apart.
 */
import { uniqueName } from '@stack/testing';

import { type Cache, CacheOptionError } from './cache';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `makeCache(prefix)` returns a new cache object; two made with one prefix must share keys. */
export function describeCacheContract(name: string, makeCache: (keyPrefix: string) => Cache): void {
  describe(`Cache contract: ${name}`, () => {
    const opened: Cache[] = [];
    const open = (prefix = `${uniqueName('cache')}:`): Cache => {
      const cache = makeCache(prefix);
      opened.push(cache);
      return cache;
    };
    let cache: Cache;

    beforeEach(() => {
      cache = open();
    });
    afterAll(async () => {
      await Promise.all(opened.map((c) => c.close()));
    });

    it('answers ping', async () => {
      await expect(cache.ping()).resolves.toBeUndefined();
    });

    it('gets, sets, overwrites and deletes', async () => {
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('k', 'v1', { ttlMs: 10_000 });
      expect(await cache.get('k')).toBe('v1');
      await cache.set('k', 'v2', { ttlMs: 10_000 });
      expect(await cache.get('k')).toBe('v2');
      expect(await cache.del('k')).toBe(true);
      expect(await cache.del('k')).toBe(false);
      expect(await cache.get('k')).toBeUndefined();
    });

    it('round-trips JSON, and reads a non-JSON value as a miss', async () => {
      const value = { a: 1, b: ['x', null], c: { d: true } };
      await cache.setJson('j', value, { ttlMs: 10_000 });
      expect(await cache.getJson<typeof value>('j')).toEqual(value);
      await cache.set('not-json', '{oops', { ttlMs: 10_000 });
      expect(await cache.getJson('not-json')).toBeUndefined();
      expect(await cache.getJson('absent')).toBeUndefined();
    });

    it('expires entries after their TTL', async () => {
      await cache.set('short', 'v', { ttlMs: 250 });
      await cache.setJson('short-json', { v: 1 }, { ttlMs: 250 });
      await cache.set('long', 'v', { ttlMs: 10_000 });
      expect(await cache.get('short')).toBe('v');
      await sleep(350);
      expect(await cache.get('short')).toBeUndefined();
      expect(await cache.getJson('short-json')).toBeUndefined();
      expect(await cache.get('long')).toBe('v');
      expect(await cache.del('short')).toBe(false);
    });

    it('counts with incr in a fixed window that later increments do not extend', async () => {
      expect(await cache.incr('n', { ttlMs: 300 })).toBe(1);
      expect(await cache.incr('n', { ttlMs: 300 })).toBe(2);
      expect(await cache.incr('n', { ttlMs: 300, by: 5 })).toBe(7);
      expect(await cache.get('n')).toBe('7');
      await sleep(150);
      expect(await cache.incr('n', { ttlMs: 300 })).toBe(8);
      await sleep(250);
      // 400 ms after creation: the window of 300 ms closed, although the last incr was 250 ms ago.
      expect(await cache.incr('n', { ttlMs: 300 })).toBe(1);
      await cache.set('text', 'abc', { ttlMs: 10_000 });
      await expect(cache.incr('text', { ttlMs: 1000 })).rejects.toThrow(/not an integer/);
    });

    it('keeps the order its caller asked in: a read asked for before a write does not see it', async () => {
      await cache.set('once', 'link', { ttlMs: 10_000 });
      // Read and consume a one-time value in one go: the read gets it, the delete reports it.
      const [read, deleted] = await Promise.all([cache.get('once'), cache.del('once')]);
      expect(read).toBe('link');
      expect(deleted).toBe(true);
      expect(await Promise.all([cache.get('once'), cache.del('once')])).toEqual([undefined, false]);
      await cache.set('k', 'v1', { ttlMs: 10_000 });
      const before = cache.get('k');
      await cache.set('k', 'v2', { ttlMs: 10_000 });
      expect(await before).toBe('v1');
      const [a, , b] = await Promise.all([cache.getJson('k'), cache.setJson('k', { n: 1 }, { ttlMs: 10_000 }), cache.getJson('k')]);
      expect([a, b]).toEqual([undefined, { n: 1 }]);
      expect(await Promise.all([cache.get('c'), cache.incr('c', { ttlMs: 10_000 }), cache.get('c')])).toEqual([undefined, 1, '1']);
    });

    it('takes as an integer only what Redis does: canonical, within 64 bits, and refuses to overflow', async () => {
      for (const text of ['007', '-0', '+1', ' 1', '1.0', '1e3', '9223372036854775808']) {
        await cache.set('n', text, { ttlMs: 10_000 });
        await expect(cache.incr('n', { ttlMs: 10_000 })).rejects.toThrow(/not an integer/);
        expect(await cache.get('n')).toBe(text);
      }
      await cache.set('n', '-12', { ttlMs: 10_000 });
      expect(await cache.incr('n', { ttlMs: 10_000, by: 2 })).toBe(-10);
      await cache.set('n', '9223372036854775806', { ttlMs: 10_000 });
      await cache.incr('n', { ttlMs: 10_000 });
      expect(await cache.get('n')).toBe('9223372036854775807');
      await expect(cache.incr('n', { ttlMs: 10_000 })).rejects.toThrow(/overflow/);
      expect(await cache.get('n')).toBe('9223372036854775807');
    });

    it('lets exactly one of many concurrent setIfAbsent calls win, across cache objects', async () => {
      const prefix = `${uniqueName('lock')}:`;
      const clients = [open(prefix), open(prefix), open(prefix)];
      const attempts = Array.from({ length: 30 }, (_, i) => clients[i % clients.length].setIfAbsent('lock', `owner-${i}`, { ttlMs: 10_000 }).then((won) => ({ won, i })));
      const results = await Promise.all(attempts);
      const winners = results.filter((r) => r.won);
      expect(winners).toHaveLength(1);
      expect(await clients[1].get('lock')).toBe(`owner-${winners[0].i}`);
    });

    it('frees a lock on expiry, and releases it only for its owner', async () => {
      expect(await cache.setIfAbsent('lock', 'a', { ttlMs: 200 })).toBe(true);
      expect(await cache.setIfAbsent('lock', 'b', { ttlMs: 200 })).toBe(false);
      await sleep(300);
      expect(await cache.setIfAbsent('lock', 'b', { ttlMs: 10_000 })).toBe(true);
      expect(await cache.delIfEquals('lock', 'a')).toBe(false);
      expect(await cache.get('lock')).toBe('b');
      expect(await cache.delIfEquals('lock', 'b')).toBe(true);
      expect(await cache.get('lock')).toBeUndefined();
      expect(await cache.delIfEquals('lock', 'b')).toBe(false);
    });

    it('runs a token bucket: starts full, refuses with retryAfter when empty, refills', async () => {
      const bucket = { capacity: 3, refillPerSecond: 5 };
      const taken = [await cache.takeToken('b', bucket), await cache.takeToken('b', bucket), await cache.takeToken('b', bucket)];
      expect(taken.map((t) => [t.allowed, t.retryAfterMs, t.remaining])).toEqual([
        [true, 0, 2],
        [true, 0, 1],
        [true, 0, 0],
      ]);
      const refused = await cache.takeToken('b', bucket);
      expect(refused.allowed).toBe(false);
      expect(refused.remaining).toBe(0);
      // One token every 200 ms: the wait is at most that, and more than nothing.
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(200);
      // A refused call takes nothing: waiting retryAfter is enough.
      await sleep(refused.retryAfterMs + 20);
      const again = await cache.takeToken('b', bucket);
      expect(again.allowed).toBe(true);
      expect(again.retryAfterMs).toBe(0);
    });

    it('charges cost, and says how long until that many tokens are there', async () => {
      const bucket = { capacity: 10, refillPerSecond: 1, cost: 4 };
      expect((await cache.takeToken('c', bucket)).remaining).toBe(6);
      expect((await cache.takeToken('c', bucket)).remaining).toBe(2);
      const refused = await cache.takeToken('c', bucket);
      expect(refused.allowed).toBe(false);
      // 2 tokens missing at 1 per second.
      expect(refused.retryAfterMs).toBeGreaterThan(1800);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(2000);
      expect((await cache.takeToken('c', { ...bucket, cost: 2 })).allowed).toBe(true);
    });

    it('never hands out more tokens than the bucket holds under concurrency', async () => {
      const prefix = `${uniqueName('bucket')}:`;
      const clients = [open(prefix), open(prefix)];
      const bucket = { capacity: 5, refillPerSecond: 0.01 };
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => clients[i % 2].takeToken('shared', bucket)));
      expect(results.filter((r) => r.allowed)).toHaveLength(5);
      for (const r of results.filter((x) => !x.allowed)) expect(r.retryAfterMs).toBeGreaterThan(10_000);
    });

    it('isolates key prefixes on one backend, and shares keys within one prefix', async () => {
      const base = uniqueName('iso');
      const a = open(`${base}-a:`);
      const b = open(`${base}-b:`);
      const a2 = open(`${base}-a:`);
      await a.set('k', 'from-a', { ttlMs: 10_000 });
      await a.incr('n', { ttlMs: 10_000 });
      await a.takeToken('t', { capacity: 1, refillPerSecond: 0.01 });
      expect(await b.get('k')).toBeUndefined();
      expect(await b.incr('n', { ttlMs: 10_000 })).toBe(1);
      expect((await b.takeToken('t', { capacity: 1, refillPerSecond: 0.01 })).allowed).toBe(true);
      expect(await b.setIfAbsent('k', 'from-b', { ttlMs: 10_000 })).toBe(true);
      expect(await a.get('k')).toBe('from-a');
      expect(await a2.get('k')).toBe('from-a');
    });

    it('refuses bad arguments with an error naming them', async () => {
      await expect(cache.set('k', 'v', { ttlMs: 0 })).rejects.toThrow(CacheOptionError);
      await expect(cache.set('k', 'v', { ttlMs: Number.NaN })).rejects.toThrow(/ttlMs must be a positive number/);
      await expect(cache.get('')).rejects.toThrow(/key must be a non-empty string/);
      await expect(cache.incr('k', { ttlMs: 100, by: 1.5 })).rejects.toThrow(/"by" must be an integer/);
      await expect(cache.takeToken('t', { capacity: 2, refillPerSecond: 1, cost: 3 })).rejects.toThrow(/exceeds capacity/);
      await expect(cache.takeToken('t', { capacity: 2, refillPerSecond: 0 })).rejects.toThrow(/refillPerSecond must be a positive number/);
      await expect(cache.setJson('k', undefined, { ttlMs: 100 })).rejects.toThrow(/JSON-serialisable/);
      expect(() => makeCache('')).toThrow(/keyPrefix must be a non-empty string/);
    });

    it('refuses operations after close', async () => {
      const closing = open();
      await closing.set('k', 'v', { ttlMs: 10_000 });
      await closing.close();
      await expect(closing.get('k')).rejects.toThrow(/closed/);
    });
  });
}
