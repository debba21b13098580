import type { BusConnection } from '@stack/bus';
import { HealthRegistry, MemoryLogDestination, createLogger } from '@stack/observability';

import { Readiness } from './readiness';

function setup(options: { failWith?: () => string } = {}) {
  const out = new MemoryLogDestination();
  const logger = createLogger({ level: 'info', service: 'stack', instance: 'i-1', destination: out });
  let now = 1_000_000;
  const health = new HealthRegistry();
  health.register('database:auth', () => {
    const msg = options.failWith?.();
    if (msg) throw new Error(msg);
  });
  health.register('tracing', () => {
    throw new Error('collector at 10.0.0.7 down');
  }, { critical: false });
  // A bus whose ping_peers answers after `delay` ms (resolved by the test), counting requests.
  let requests = 0;
  const pending: (() => void)[] = [];
  const bus = {
    forService: (service: string) => ({
      request: () => {
        requests++;
        return new Promise((resolve) =>
          pending.push(() => resolve({ service, instance: 'i-secret', peers: [{ service: 'audit', ok: false, error: 'connect ECONNREFUSED 10.1.2.3:4222', rtt_ms: 1.5 }, { service: 'passport', ok: true, instance: 'p-1', rtt_ms: 0.4 }] })),
        );
      },
    }),
  } as unknown as BusConnection;
  const readiness = new Readiness(health, bus, () => ['auth', 'not-a-service'], logger, { now: () => now, logIntervalMs: 60_000, peerSweepBurst: 2, peerSweepIntervalMs: 1000 });
  return {
    readiness,
    out,
    advance: (ms: number) => (now += ms),
    requests: () => requests,
    answer: async () => {
      for (const p of pending.splice(0)) p();
      await new Promise((r) => setImmediate(r));
    },
  };
}

describe('Readiness', () => {
  it('answers per check only ok (and non-critical), and logs the reason once a minute while it lasts', async () => {
    let failing: string | undefined = 'connect ECONNREFUSED db.internal.example:5432';
    const t = setup({ failWith: () => failing ?? '' });
    const first = await t.readiness.check();
    expect(first).toEqual({ ok: false, checks: { 'database:auth': { ok: false }, tracing: { ok: false, critical: false } } });
    expect(JSON.stringify(first)).not.toMatch(/ECONNREFUSED|10\.0\.0\.7/);

    for (let i = 0; i < 30; i++) {
      t.advance(1000);
      await t.readiness.check();
    }
    const failures = () => t.out.records().filter((r) => r.check === 'database:auth' && r.msg === 'readiness check failing');
    expect(failures()).toHaveLength(1);
    expect(failures()[0]).toMatchObject({ level: 'warn', error: 'connect ECONNREFUSED db.internal.example:5432' });

    t.advance(30_000);
    await t.readiness.check();
    expect(failures()).toHaveLength(2);
    expect(failures()[1]).toMatchObject({ failures_not_logged: 30 });

    failing = undefined;
    expect((await t.readiness.check()).ok).toBe(true);
    await t.readiness.check();
    expect(t.out.records().filter((r) => r.check === 'database:auth' && r.msg === 'readiness check passes again')).toHaveLength(1);
  });

  it('shares one peer sweep among concurrent callers, paces new ones, and strips error text and instances', async () => {
    const t = setup();
    const concurrent = Array.from({ length: 20 }, () => t.readiness.peers());
    expect(t.requests()).toBe(1);
    await t.answer();
    const answers = await Promise.all(concurrent);
    expect(new Set(answers).size).toBe(1);
    expect(answers[0]).toEqual([{ service: 'auth', ok: true, peers: [{ service: 'audit', ok: false, rtt_ms: 1.5 }, { service: 'passport', ok: true, rtt_ms: 0.4 }] }]);
    expect(t.out.text).toContain('ECONNREFUSED 10.1.2.3:4222');

    // The burst (2) allows one more fresh sweep right away; after it, the last result until a second passes.
    const second = t.readiness.peers();
    await t.answer();
    await second;
    expect(t.requests()).toBe(2);
    for (let i = 0; i < 50; i++) expect(await t.readiness.peers()).toBe(await second);
    expect(t.requests()).toBe(2);
    t.advance(1000);
    const third = t.readiness.peers();
    await t.answer();
    await third;
    expect(t.requests()).toBe(3);
    expect(await t.readiness.peers()).toBe(await third);
    expect(t.requests()).toBe(3);
    // The unreachable peer was logged once, not per sweep.
    expect(t.out.records().filter((r) => r.msg === 'peer sweep: peer unreachable')).toHaveLength(1);
  });

  it('reports a service that does not answer as not ok, without the error', async () => {
    const out = new MemoryLogDestination();
    const logger = createLogger({ level: 'info', service: 'stack', instance: 'i-1', destination: out });
    const bus = { forService: () => ({ request: () => Promise.reject(new Error('nats: connection to nats.internal:4222 lost')) }) } as unknown as BusConnection;
    const readiness = new Readiness(new HealthRegistry(), bus, () => ['audit'], logger);
    const answer = await readiness.peers();
    expect(answer).toEqual([{ service: 'audit', ok: false, peers: [] }]);
    expect(out.records()).toEqual([expect.objectContaining({ msg: 'peer sweep: service did not answer', target: 'audit', error: 'nats: connection to nats.internal:4222 lost' })]);
  });
});
