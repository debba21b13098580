/** The figures the benchmarks print are only as good as these: percentiles, drivers, budgets. */
import { mergeRuns, percentile, runConcurrent, runSequential, summarize, type RunResult } from './stats';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('percentile (nearest rank)', () => {
  const oneToHundred = Float64Array.from({ length: 100 }, (_, i) => i + 1);

  it('returns measured values at the nearest rank', () => {
    expect(percentile(oneToHundred, 50)).toBe(50);
    expect(percentile(oneToHundred, 90)).toBe(90);
    expect(percentile(oneToHundred, 99)).toBe(99);
    expect(percentile(oneToHundred, 100)).toBe(100);
    expect(percentile([10, 20, 30], 50)).toBe(20);
    expect(percentile([10, 20, 30, 40], 50)).toBe(20);
    expect(percentile([7], 99)).toBe(7);
  });

  it('is NaN without samples and refuses a percentile outside (0, 100]', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 0)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });
});

describe('summarize', () => {
  it('reports microseconds and throughput over measured wall time', () => {
    // 1..10 ms as nanoseconds, in no particular order, over 0.5 s of wall time.
    const run: RunResult = { samplesNs: [5, 3, 9, 1, 7, 2, 10, 8, 4, 6].map((ms) => ms * 1e6), wallNs: 0.5e9, errors: 2, firstError: 'boom', truncated: false };
    const s = summarize(run);
    expect(s.count).toBe(10);
    expect(s.p50Us).toBe(5000);
    expect(s.p90Us).toBe(9000);
    expect(s.p99Us).toBe(10000);
    expect(s.maxUs).toBe(10000);
    expect(s.minUs).toBe(1000);
    expect(s.meanUs).toBe(5500);
    expect(s.throughputPerSec).toBe(20);
    expect(s.wallMs).toBe(500);
    expect(s.errors).toBe(2);
    expect(s.firstError).toBe('boom');
  });

  it('merges rounds: samples, wall time and errors add up', () => {
    const a: RunResult = { samplesNs: [1000, 2000], wallNs: 10, errors: 0, truncated: false };
    const b: RunResult = { samplesNs: [3000], wallNs: 5, errors: 1, firstError: 'late', truncated: true };
    expect(mergeRuns([a, b])).toEqual({ samplesNs: [1000, 2000, 3000], wallNs: 15, errors: 1, firstError: 'late', truncated: true });
  });
});

describe('drivers', () => {
  it('runSequential runs one call at a time, warms up without recording, and times each call', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const seen: number[] = [];
    const run = await runSequential(
      4,
      async (i) => {
        seen.push(i);
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep(i >= 0 ? 5 : 0);
        inFlight -= 1;
      },
      { warmup: 2 },
    );
    expect(maxInFlight).toBe(1);
    expect(seen).toEqual([-2, -1, 0, 1, 2, 3]);
    expect(run.samplesNs).toHaveLength(4);
    // Timers may fire a little early by the hrtime clock; 4 ms proves the 5 ms sleep was inside the measurement.
    for (const ns of run.samplesNs) expect(ns).toBeGreaterThanOrEqual(4e6);
    expect(run.wallNs).toBeGreaterThanOrEqual(run.samplesNs.reduce((a, b) => a + b, 0) * 0.99);
  });

  it('runConcurrent keeps exactly `concurrency` calls in flight and counts failures without samples', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const run = await runConcurrent(40, 8, async (i) => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await sleep(1);
      inFlight -= 1;
      if (i % 10 === 0) throw new Error(`failed ${i}`);
    });
    expect(maxInFlight).toBe(8);
    expect(run.errors).toBe(4);
    expect(run.firstError).toMatch(/^failed \d+$/);
    expect(run.samplesNs).toHaveLength(36);
    expect(run.truncated).toBe(false);
  });

  it('stops starting calls when the time budget runs out, and says so', async () => {
    const run = await runConcurrent(1000, 2, () => sleep(10), { maxMs: 50 });
    expect(run.truncated).toBe(true);
    expect(run.samplesNs.length).toBeGreaterThan(0);
    expect(run.samplesNs.length).toBeLessThan(40);
  });

  it('refuses nonsense counts', async () => {
    await expect(runConcurrent(0, 1, async () => undefined)).rejects.toThrow(RangeError);
    await expect(runConcurrent(10, 0, async () => undefined)).rejects.toThrow(RangeError);
  });
});
