import { busContractSuite } from './bus-contract.suite';
import { ServiceStartedEvent } from '@stack/contracts';

import { createInProcessBus, firstAfter, forgetOldIds, MAX_REMEMBERED_IDS } from './in-process-bus';
import { DUPLICATE_WINDOW_MS } from './streams';

busContractSuite('in-process bus', async ({ prefix, internalSecret }) => createInProcessBus({ prefix, internalSecret, timeoutMs: 2000, instanceId: 'test' }), { sharedConnection: true });

describe('firstAfter (where a consumer resumes in the in-process stream)', () => {
  const seqs = (...s: number[]) => s.map((seq) => ({ seq }));
  it('finds the first message after a sequence, or -1', () => {
    const m = seqs(5, 6, 7, 9, 12);
    expect(firstAfter(m, 0)).toBe(0);
    expect(firstAfter(m, 5)).toBe(1);
    expect(firstAfter(m, 8)).toBe(3);
    expect(firstAfter(m, 9)).toBe(4);
    expect(firstAfter(m, 11)).toBe(4);
    expect(firstAfter(m, 12)).toBe(-1);
    expect(firstAfter([], 3)).toBe(-1);
  });

  it('agrees with a scan on every position of a long stream', () => {
    let at = 1000;
    const m = seqs(...Array.from({ length: 300 }, (_, i) => (at += 1 + (i % 3))));
    for (let s = 990; s <= m[m.length - 1]!.seq + 2; s++) expect(firstAfter(m, s)).toBe(m.findIndex((x) => x.seq > s));
  });
});

/** A map that counts the entries its iterator hands out. */
class CountingMap<K, V> extends Map<K, V> {
  visited = 0;
  override *[Symbol.iterator](): MapIterator<[K, V]> {
    for (const entry of super.entries()) {
      this.visited++;
      yield entry;
    }
  }
}

describe('forgetOldIds (the in-process duplicate window)', () => {
  it('forgets the ids out of the window and keeps the rest, in publish order', () => {
    const ids = new Map<string, { at: number }>([
      ['a', { at: 0 }],
      ['b', { at: 10 }],
      ['c', { at: 50 }],
      ['d', { at: 99 }],
    ]);
    forgetOldIds(ids, 100, 60, 10);
    expect([...ids.keys()]).toEqual(['c', 'd']);
  });

  it('forgets the oldest past the cap even inside the window', () => {
    const ids = new Map<string, { at: number }>(Array.from({ length: 8 }, (_, i) => [`m${i}`, { at: 100 + i }]));
    forgetOldIds(ids, 110, 60_000, 5);
    expect([...ids.keys()]).toEqual(['m3', 'm4', 'm5', 'm6', 'm7']);
  });

  it('looks at one id, not every remembered one, when nothing is due (publish stays O(1) at 150,000 ids)', () => {
    const ids = new CountingMap<string, { at: number }>();
    for (let i = 0; i < 150_000; i++) ids.set(`id${i}`, { at: 1_000 + i });
    forgetOldIds(ids, 200_000, 600_000, MAX_REMEMBERED_IDS);
    expect(ids.size).toBe(150_000);
    expect(ids.visited).toBe(1);
    // Ten ids left the window: eleven looked at, ten forgotten.
    ids.visited = 0;
    forgetOldIds(ids, 1_009 + 600_000, 600_000, MAX_REMEMBERED_IDS);
    expect(ids.size).toBe(149_990);
    expect(ids.visited).toBe(11);
  });
});

describe('in-process bus: the duplicate window in time', () => {
  afterEach(() => jest.useRealTimers());

  it('refuses an id again inside the window, publishes it anew after it, and remembers at most MAX_REMEMBERED_IDS', async () => {
    jest.useFakeTimers({ now: 1_000_000, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const conn = createInProcessBus({ prefix: `dup${Date.now()}`, internalSecret: Buffer.alloc(32, 7), timeoutMs: 2000, instanceId: 'test' });
    try {
      const bus = conn.forService('audit');
      const payload = { service: 'audit' as const, instance: 'i', version: '0', started_at: new Date(1_000_000).toISOString() };
      const first = await bus.publish(ServiceStartedEvent, payload, { id: 'same' });
      expect(first.duplicate).toBe(false);
      jest.setSystemTime(1_000_000 + DUPLICATE_WINDOW_MS - 1);
      expect(await bus.publish(ServiceStartedEvent, payload, { id: 'same' })).toEqual({ ...first, duplicate: true });
      jest.setSystemTime(1_000_000 + DUPLICATE_WINDOW_MS);
      const again = await bus.publish(ServiceStartedEvent, payload, { id: 'same' });
      expect(again.duplicate).toBe(false);
      expect(again.seq).toBe(first.seq + 1);
      // Inside the window once more, from its new publication.
      expect((await bus.publish(ServiceStartedEvent, payload, { id: 'same' })).duplicate).toBe(true);

      const streams = (conn as unknown as { streams: Map<string, { ids: Map<string, unknown> }> }).streams;
      const stream = [...streams.values()].find((s) => s.ids.has('same'))!;
      for (let i = 0; i < MAX_REMEMBERED_IDS + 50; i++) await bus.publish(ServiceStartedEvent, payload, { id: `n${i}` });
      expect(stream.ids.size).toBe(MAX_REMEMBERED_IDS);
      expect(stream.ids.has('n0')).toBe(false);
      expect(stream.ids.has(`n${MAX_REMEMBERED_IDS + 49}`)).toBe(true);
    } finally {
      await conn.close();
    }
  });
});
