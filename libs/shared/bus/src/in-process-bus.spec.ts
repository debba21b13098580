import { busContractSuite } from './bus-contract.suite';
import { ServiceStartedEvent } from '@stack/contracts';

import { createInProcessBus, firstAfter, MAX_REMEMBERED_IDS, RememberedIds } from './in-process-bus';
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

describe('RememberedIds (the in-process duplicate window)', () => {
  const remembered = (windowMs: number, max: number, ats: number[]) => {
    const ids = new RememberedIds(windowMs, max);
    ats.forEach((at, i) => ids.remember(`m${i}`, i + 1, at));
    return ids;
  };
  const kept = (ids: RememberedIds, n: number) => Array.from({ length: n }, (_, i) => `m${i}`).filter((id) => ids.has(id));

  it('forgets the ids out of the window and keeps the rest', () => {
    const ids = remembered(60, 10, [0, 10, 50, 99]);
    ids.forget(100);
    expect(kept(ids, 4)).toEqual(['m2', 'm3']);
    expect(ids.get('m2')).toEqual({ seq: 3, at: 50 });
  });

  it('forgets the oldest past the cap even inside the window', () => {
    const ids = remembered(60_000, 5, Array.from({ length: 8 }, (_, i) => 100 + i));
    ids.forget(110);
    expect(kept(ids, 8)).toEqual(['m3', 'm4', 'm5', 'm6', 'm7']);
  });

  it('keeps an id published anew for its new window, not its first one', () => {
    const ids = new RememberedIds(100, 10);
    ids.remember('x', 1, 0);
    ids.remember('y', 2, 50);
    ids.remember('x', 3, 120); // out of its first window: published anew
    ids.forget(160);
    expect(ids.get('x')).toEqual({ seq: 3, at: 120 });
    expect(ids.has('y')).toBe(false);
    ids.forget(221);
    expect(ids.size).toBe(0);
  });

  it('looks at one entry when nothing is due, and at the forgotten ones plus one otherwise, however long it runs at its cap', () => {
    const max = 20_000;
    const ids = new RememberedIds(600_000, max);
    for (let i = 0; i < max; i++) ids.remember(`id${i}`, i + 1, 1_000);
    ids.visited = 0;
    ids.forget(2_000);
    expect(ids.visited).toBe(1);
    // A publish a millisecond at the cap, for ten times the cap: each forgets one id and looks at two entries.
    for (let i = max; i < max * 11; i++) {
      ids.remember(`id${i}`, i + 1, 2_000 + i);
      ids.visited = 0;
      ids.forget(2_000 + i);
      expect(ids.visited).toBeLessThanOrEqual(2);
    }
    expect(ids.size).toBe(max);
    expect(ids.has(`id${max * 10}`)).toBe(true);
    expect(ids.has(`id${max * 9}`)).toBe(false);
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

      const streams = (conn as unknown as { streams: Map<string, { ids: RememberedIds }> }).streams;
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
