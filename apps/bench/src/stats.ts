/**
 * Measuring latencies and throughput for the benchmarks: a recorder of durations taken with
 * process.hrtime.bigint (kept in nanoseconds, reported in microseconds), percentile summaries,
 * and two drivers — one request at a time, or N at a time — each with a warm-up that is not
 * recorded and a time budget so a slow machine stops early instead of running for minutes.
 */

/** What one measured run yields, before it is summarised (runs of several rounds are merged). */
export interface RunResult {
  /** One duration per successful operation, in nanoseconds. */
  readonly samplesNs: readonly number[];
  /** Wall-clock time of the measured phase (warm-up excluded), in nanoseconds. */
  readonly wallNs: number;
  /** Operations that threw; they have no sample. */
  readonly errors: number;
  /** Message of the first failure, to show why. */
  readonly firstError?: string;
  /** True when the time budget ran out before all operations were started. */
  readonly truncated: boolean;
}

export interface LatencySummary {
  count: number;
  errors: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  minUs: number;
  meanUs: number;
  /** Successful operations per second of measured wall time. */
  throughputPerSec: number;
  wallMs: number;
  truncated: boolean;
  firstError?: string;
}

export interface DriverOptions {
  /** Operations run first and not recorded (connections, JIT, caches). Default 0. */
  warmup?: number;
  /** Stop starting new operations once the measured phase has run this long. Default: no limit. */
  maxMs?: number;
}

/** One operation; `i` counts from 0 across the measured phase (warm-up operations get negative indexes). */
export type Operation = (i: number) => Promise<unknown>;

const NS_PER_US = 1_000;

function now(): bigint {
  return process.hrtime.bigint();
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Nearest-rank percentile of ascending `sorted` values: the smallest value with at least
 * p % of the values at or below it. No interpolation, so it is always a measured value.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${p}`);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Merges runs (e.g. the rounds of one variant) into one: samples, wall time and errors add up. */
export function mergeRuns(runs: readonly RunResult[]): RunResult {
  const samplesNs: number[] = [];
  let wallNs = 0;
  let errors = 0;
  let firstError: string | undefined;
  let truncated = false;
  for (const r of runs) {
    for (const s of r.samplesNs) samplesNs.push(s);
    wallNs += r.wallNs;
    errors += r.errors;
    firstError ??= r.firstError;
    truncated ||= r.truncated;
  }
  return { samplesNs, wallNs, errors, firstError, truncated };
}

export function summarize(run: RunResult): LatencySummary {
  const sorted = Float64Array.from(run.samplesNs).sort();
  const count = sorted.length;
  let total = 0;
  for (const s of sorted) total += s;
  const us = (ns: number) => ns / NS_PER_US;
  return {
    count,
    errors: run.errors,
    p50Us: us(percentile(sorted, 50)),
    p90Us: us(percentile(sorted, 90)),
    p99Us: us(percentile(sorted, 99)),
    maxUs: count ? us(sorted[count - 1]) : Number.NaN,
    minUs: count ? us(sorted[0]) : Number.NaN,
    meanUs: count ? us(total / count) : Number.NaN,
    throughputPerSec: run.wallNs > 0 ? count / (run.wallNs / 1e9) : Number.NaN,
    wallMs: run.wallNs / 1e6,
    truncated: run.truncated,
    firstError: run.firstError,
  };
}

async function warmUp(count: number, concurrency: number, fn: Operation): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      // Warm-up failures surface in the measured phase if they persist; a cold first call may fail.
      await fn(-count + i).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
}

/** Runs `fn` `n` times, one after another, timing each call. */
export async function runSequential(n: number, fn: Operation, options: DriverOptions = {}): Promise<RunResult> {
  return runConcurrent(n, 1, fn, options);
}

/**
 * Runs `fn` `n` times with `concurrency` calls in flight at once (a closed loop: each of
 * `concurrency` workers starts its next call as soon as its last one finished), timing each call.
 */
export async function runConcurrent(n: number, concurrency: number, fn: Operation, options: DriverOptions = {}): Promise<RunResult> {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`operation count must be a positive integer, got ${n}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  if (options.warmup) await warmUp(options.warmup, concurrency, fn);

  const samplesNs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let truncated = false;
  let next = 0;
  const started = now();
  const deadline = options.maxMs === undefined ? undefined : started + BigInt(Math.round(options.maxMs * 1e6));
  const worker = async () => {
    while (next < n) {
      if (deadline !== undefined && now() > deadline) {
        truncated = true;
        return;
      }
      const i = next++;
      const t0 = now();
      try {
        await fn(i);
        samplesNs.push(Number(now() - t0));
      } catch (err) {
        errors += 1;
        firstError ??= message(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { samplesNs, wallNs: Number(now() - started), errors, firstError, truncated };
}
