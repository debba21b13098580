import { HealthRegistry } from './health-registry';

describe('HealthRegistry', () => {
  it('reports ok when every check passes, with timings', async () => {
    const health = new HealthRegistry();
    health.register('database', async () => undefined);
    health.register('bus', () => undefined);
    const report = await health.check();
    expect(report.ok).toBe(true);
    expect(Object.keys(report.checks).sort()).toEqual(['bus', 'database']);
    expect(report.checks.database).toMatchObject({ ok: true, critical: true });
    expect(report.checks.database.ms).toBeGreaterThanOrEqual(0);
  });

  it('times out a hanging check and reports it, without waiting for it', async () => {
    const health = new HealthRegistry({ timeoutMs: 50 });
    health.register('cache', () => new Promise<void>(() => undefined));
    health.register('database', async () => undefined);
    const started = Date.now();
    const report = await health.check();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(report.ok).toBe(false);
    expect(report.checks.cache).toMatchObject({ ok: false, error: 'timed out after 50 ms' });
    expect(report.checks.cache.ms).toBeGreaterThanOrEqual(45);
    expect(report.checks.database.ok).toBe(true);
  });

  it('runs checks concurrently', async () => {
    const health = new HealthRegistry();
    // How many were running at once (by the registry's order of events, not by a clock: a loaded
    // machine can stall a timer longer than the checks take).
    let running = 0;
    let most = 0;
    for (const name of ['a', 'b', 'c']) {
      health.register(name, async () => {
        most = Math.max(most, ++running);
        await new Promise<void>((resolve) => setTimeout(resolve, 20));
        running--;
      });
    }
    expect((await health.check()).ok).toBe(true);
    expect(most).toBe(3);
  });

  it('reports errors, sync throws included; a non-critical failure keeps the whole ok', async () => {
    const health = new HealthRegistry();
    health.register('optional', () => {
      throw new Error('otel collector down');
    }, { critical: false });
    health.register('per-check-timeout', () => new Promise<void>(() => undefined), { critical: false, timeoutMs: 20 });
    const report = await health.check();
    expect(report.ok).toBe(true);
    expect(report.checks.optional).toMatchObject({ ok: false, critical: false, error: 'otel collector down' });
    expect(report.checks['per-check-timeout'].error).toBe('timed out after 20 ms');

    health.register('revocations', async () => {
      throw new Error('stale');
    });
    const failing = await health.check();
    expect(failing.ok).toBe(false);
    expect(failing.checks.revocations).toMatchObject({ ok: false, critical: true, error: 'stale' });
  });

  it('refuses duplicate names and bad timeouts, and unregisters', async () => {
    const health = new HealthRegistry();
    health.register('db', () => undefined);
    expect(() => health.register('db', () => undefined)).toThrow(/already registered/);
    expect(() => new HealthRegistry({ timeoutMs: 0 })).toThrow(/timeoutMs must be a positive number/);
    expect(health.unregister('db')).toBe(true);
    expect(health.names()).toEqual([]);
    expect(await health.check()).toEqual({ ok: true, checks: {} });
  });
});
