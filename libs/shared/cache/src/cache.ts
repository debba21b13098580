/**
 * The cache contract: short-lived shared state (cached lookups, counters, locks, rate-limit
 * buckets) with the same semantics whether it lives in Redis (several processes share it) or in
 * this process (the one-process mode). Every entry expires: nothing here is durable.
 */

export interface TtlOptions {
  /** Time to live in milliseconds (> 0); fractions round up. */
  ttlMs: number;
}

export interface IncrOptions extends TtlOptions {
  /** Amount to add (an integer, default 1). */
  by?: number;
}

export interface TokenBucketOptions {
  /** Most tokens the bucket holds; a new bucket starts full. */
  capacity: number;
  /** Tokens added per second, continuously, up to capacity. */
  refillPerSecond: number;
  /** Tokens this call takes (default 1, at most capacity). */
  cost?: number;
}

export interface TokenBucketResult {
  allowed: boolean;
  /** 0 when allowed; otherwise how long until `cost` tokens will be there. */
  retryAfterMs: number;
  /** Whole tokens left after this call. */
  remaining: number;
}

export interface Cache {
  readonly kind: 'redis' | 'memory';
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, options: TtlOptions): Promise<void>;
  /** True when a key was removed. */
  del(key: string): Promise<boolean>;
  /** The parsed value; a value that is not JSON reads as a miss. The type is the caller's word. */
  getJson<T>(key: string): Promise<T | undefined>;
  setJson(key: string, value: unknown, options: TtlOptions): Promise<void>;
  /**
   * Adds to an integer counter and returns the new value. The TTL is set when the counter is
   * created and not extended by later increments (a fixed window).
   */
  incr(key: string, options: IncrOptions): Promise<number>;
  /** Sets the key only if it does not exist; true when this call set it (a lock was taken). */
  setIfAbsent(key: string, value: string, options: TtlOptions): Promise<boolean>;
  /** Deletes the key only if it still holds `value`: releases a lock without freeing someone else's. */
  delIfEquals(key: string, value: string): Promise<boolean>;
  /** Takes tokens from a token bucket, atomically (one round trip, one script in Redis). */
  takeToken(bucketKey: string, options: TokenBucketOptions): Promise<TokenBucketResult>;
  /** Resolves when the backing store answers; rejects otherwise (used by /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Every option error names the option and what was expected. */
export class CacheOptionError extends Error {
  override readonly name = 'CacheOptionError';
}

export function checkKeyPrefix(keyPrefix: unknown): string {
  if (typeof keyPrefix !== 'string' || keyPrefix.length === 0) {
    throw new CacheOptionError('cache: keyPrefix must be a non-empty string (for example "stack:")');
  }
  return keyPrefix;
}

export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) throw new CacheOptionError('cache: key must be a non-empty string');
  return key;
}

export function checkTtl(options: TtlOptions | undefined): number {
  const ttlMs = options?.ttlMs;
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new CacheOptionError(`cache: ttlMs must be a positive number of milliseconds (got ${String(ttlMs)})`);
  }
  return Math.ceil(ttlMs);
}

export function checkIncrBy(by: number | undefined): number {
  const value = by ?? 1;
  if (!Number.isSafeInteger(value)) throw new CacheOptionError(`cache: incr "by" must be an integer (got ${String(by)})`);
  return value;
}

export interface CheckedBucket {
  capacity: number;
  /** Tokens per millisecond. */
  ratePerMs: number;
  cost: number;
}

export function checkBucket(options: TokenBucketOptions | undefined): CheckedBucket {
  const { capacity, refillPerSecond, cost = 1 } = options ?? ({} as Partial<TokenBucketOptions>);
  for (const [name, value] of [['capacity', capacity], ['refillPerSecond', refillPerSecond], ['cost', cost]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new CacheOptionError(`cache: takeToken ${name} must be a positive number (got ${String(value)})`);
    }
  }
  if ((cost as number) > (capacity as number)) {
    throw new CacheOptionError(`cache: takeToken cost (${cost}) exceeds capacity (${capacity}) and could never be allowed`);
  }
  return { capacity: capacity as number, ratePerMs: (refillPerSecond as number) / 1000, cost };
}

export interface BucketState {
  tokens: number;
  /** When `tokens` was last computed, in milliseconds. */
  at: number;
}

/**
 * One step of the token bucket, shared by the in-process implementation and mirrored line by
 * line in the Redis script, so both answer alike.
 */
export function stepBucket(state: BucketState | undefined, now: number, bucket: CheckedBucket): { state: BucketState; result: TokenBucketResult; ttlMs: number } {
  let tokens = state ? state.tokens : bucket.capacity;
  let at = state ? state.at : now;
  if (now > at) {
    tokens = Math.min(bucket.capacity, tokens + (now - at) * bucket.ratePerMs);
    at = now;
  }
  let allowed = false;
  let retryAfterMs = 0;
  if (tokens >= bucket.cost) {
    tokens -= bucket.cost;
    allowed = true;
  } else {
    retryAfterMs = Math.ceil((bucket.cost - tokens) / bucket.ratePerMs);
  }
  // Once full again the bucket is indistinguishable from a new one, so it can expire then.
  const ttlMs = Math.ceil((bucket.capacity - tokens) / bucket.ratePerMs) + 1000;
  return { state: { tokens, at }, result: { allowed, retryAfterMs, remaining: Math.floor(tokens) }, ttlMs };
}

export function parseJson<T>(raw: string | undefined): T | undefined {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return undefined;
  }
}

export function toJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new CacheOptionError('cache: setJson value must be JSON-serialisable (got undefined or a function)');
  return text;
}
