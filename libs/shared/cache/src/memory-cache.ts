/**
 * The in-process cache (no REDIS_URL): the same contract as Redis, for the one-process mode and
 * unit tests. By default every MemoryCache in the process shares one store, as every client of one
 * Redis shares its keys — two modules using the same key must meet, whichever cache object they hold.
 */
import {
  type BucketState,
  type Cache,
  CacheOptionError,
  checkBucket,
  checkIncrBy,
  checkKey,
  checkKeyPrefix,
  checkTtl,
  type IncrOptions,
  parseJson,
  stepBucket,
  type TokenBucketOptions,
  type TokenBucketResult,
  toJson,
  type TtlOptions,
} from './cache';

interface Entry {
  value: string | BucketState;
  expiresAt: number;
}

const SWEEP_EVERY_WRITES = 1024;
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
const SWEEP_EVERY_MS = 1000;

/** Keys and their expiry. Expired entries vanish on read, and in sweeps done while writing (no timers). */
export class MemoryStore {
  private readonly entries = new Map<string, Entry>();
  private writes = 0;
  private lastSweep: number;

  constructor(readonly now: () => number = Date.now) {
    this.lastSweep = now();
  }

  get size(): number {
    return this.entries.size;
  }

  read(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  write(key: string, value: string | BucketState, ttlMs: number): void {
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
    this.maybeSweep();
  }

  /** Replaces the value and keeps the expiry. */
  update(key: string, entry: Entry, value: string | BucketState): void {
    this.entries.set(key, { value, expiresAt: entry.expiresAt });
  }

  delete(key: string): boolean {
    const live = this.read(key) !== undefined;
    this.entries.delete(key);
    return live;
  }

  sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(key);
    this.lastSweep = now;
    this.writes = 0;
  }

  private maybeSweep(): void {
    this.writes += 1;
    if (this.writes >= SWEEP_EVERY_WRITES || this.now() - this.lastSweep >= SWEEP_EVERY_MS) this.sweep();
  }
}

const processStore = new MemoryStore();

export interface MemoryCacheOptions {
  keyPrefix: string;
  /** Default: the store shared by the whole process. */
  store?: MemoryStore;
}

class WrongTypeError extends Error {
  override readonly name = 'WrongTypeError';
}

export class MemoryCache implements Cache {
  readonly kind = 'memory' as const;
  private readonly keyPrefix: string;
  private readonly store: MemoryStore;
  private closed = false;

  constructor(options: MemoryCacheOptions) {
    this.keyPrefix = checkKeyPrefix(options?.keyPrefix);
    this.store = options.store ?? processStore;
  }

  async get(key: string): Promise<string | undefined> {
    const entry = this.store.read(this.key(key));
    if (entry === undefined) return undefined;
    return this.asString(entry.value);
  }

  async set(key: string, value: string, options: TtlOptions): Promise<void> {
    const k = this.key(key);
    this.store.write(k, checkValue(value), checkTtl(options));
  }

  async del(key: string): Promise<boolean> {
    return this.store.delete(this.key(key));
  }

  async getJson<T>(key: string): Promise<T | undefined> {
    return parseJson<T>(await this.get(key));
  }

  async setJson(key: string, value: unknown, options: TtlOptions): Promise<void> {
    await this.set(key, toJson(value), options);
  }

  async incr(key: string, options: IncrOptions): Promise<number> {
    const k = this.key(key);
    const by = checkIncrBy(options?.by);
    const ttlMs = checkTtl(options);
    const entry = this.store.read(k);
    if (entry === undefined) {
      this.store.write(k, String(by), ttlMs);
      return by;
    }
    const current = this.asString(entry.value);
    // What Redis takes as an integer: a canonical signed 64-bit decimal ("007", "-0", "+1" are not).
    const value = /^(0|-?[1-9]\d{0,18})$/.test(current) ? BigInt(current) : undefined;
    if (value === undefined || value > INT64_MAX || value < INT64_MIN) throw new WrongTypeError('ERR value is not an integer or out of range');
    const next = value + BigInt(by);
    if (next > INT64_MAX || next < INT64_MIN) throw new WrongTypeError('ERR increment or decrement would overflow');
    this.store.update(k, entry, next.toString());
    return Number(next);
  }

  async setIfAbsent(key: string, value: string, options: TtlOptions): Promise<boolean> {
    const k = this.key(key);
    const ttlMs = checkTtl(options);
    if (this.store.read(k) !== undefined) return false;
    this.store.write(k, checkValue(value), ttlMs);
    return true;
  }

  async delIfEquals(key: string, value: string): Promise<boolean> {
    const k = this.key(key);
    const entry = this.store.read(k);
    if (entry === undefined || entry.value !== value) return false;
    return this.store.delete(k);
  }

  async takeToken(bucketKey: string, options: TokenBucketOptions): Promise<TokenBucketResult> {
    const k = this.key(bucketKey);
    const bucket = checkBucket(options);
    const entry = this.store.read(k);
    if (entry !== undefined && typeof entry.value === 'string') throw new WrongTypeError('WRONGTYPE the key holds a plain value, not a token bucket');
    const step = stepBucket(entry?.value as BucketState | undefined, this.store.now(), bucket);
    this.store.write(k, step.state, step.ttlMs);
    return step.result;
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    // The store may be shared: closing one cache object leaves the others' keys alone.
    this.closed = true;
  }

  private key(key: string): string {
    this.assertOpen();
    return this.keyPrefix + checkKey(key);
  }

  private assertOpen(): void {
    if (this.closed) throw new CacheOptionError('cache: this cache is closed');
  }

  private asString(value: string | BucketState): string {
    if (typeof value !== 'string') throw new WrongTypeError('WRONGTYPE the key holds a token bucket, not a plain value');
    return value;
  }
}

function checkValue(value: unknown): string {
  if (typeof value !== 'string') throw new CacheOptionError(`cache: value must be a string (got ${typeof value}); use setJson for objects`);
  return value;
}
