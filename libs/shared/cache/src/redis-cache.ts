/**
 * The Redis cache: shared by every replica, so locks, counters and rate-limit buckets hold across
 * the deployment. Multi-step operations are Lua scripts, so each is atomic in one round trip.
 * Commands fail fast while Redis is unreachable (no offline queue): a caller on the request path
 * decides what a missing cache means, instead of waiting behind a queue.
 */
import { createHash } from 'node:crypto';

import { createClient } from 'redis';

import {
  type Cache,
  checkBucket,
  checkIncrBy,
  checkKey,
  checkKeyPrefix,
  checkTtl,
  type IncrOptions,
  parseJson,
  type TokenBucketOptions,
  type TokenBucketResult,
  toJson,
  type TtlOptions,
} from './cache';

/** The subset of a logger the cache uses; a StackLogger fits. */
export interface CacheLogger {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

export interface RedisCacheOptions {
  /** redis[s]://[[user][:password]@]host[:port][/db] */
  url: string;
  keyPrefix: string;
  /** How long an operation waits for the first connection before failing (default 2000 ms). */
  connectTimeoutMs?: number;
  logger?: CacheLogger;
}

interface Script {
  source: string;
  sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

// Fixed-window counter: the TTL is set when the key is created (PTTL -1 means "no expiry yet").
const INCR = script(`
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
`);

const DEL_IF_EQUALS = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

// The token bucket of cache.ts (stepBucket), line by line. Redis' own clock (TIME) is used, so
// replicas with skewed clocks still share one bucket fairly. Numbers are stored with %.17g so
// they survive the round trip through a string exactly.
const TAKE_TOKEN = script(`
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate)
  at = now
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1000)
return { allowed, retry, math.floor(tokens) }
`);

type RedisClient = ReturnType<typeof createClient>;

/** One GET shared by the callers of a turn. */
interface TurnGet {
  promise: Promise<string | undefined>;
  resolve: (value: string | undefined) => void;
  reject: (err: unknown) => void;
}

export class RedisCache implements Cache {
  readonly kind = 'redis' as const;
  private readonly client: RedisClient;
  private readonly keyPrefix: string;
  private readonly connectTimeoutMs: number;
  private readonly connecting: Promise<void>;
  private closing = false;
  private healthy = true;
  /** GETs asked for in this turn of the event loop, by key, not yet sent (`get`). */
  private turnGets = new Map<string, TurnGet>();

  constructor(options: RedisCacheOptions) {
    if (typeof options?.url !== 'string' || !/^rediss?:\/\//.test(options.url)) {
      throw new Error('RedisCache: url must be a redis:// or rediss:// URL');
    }
    this.keyPrefix = checkKeyPrefix(options.keyPrefix);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    const logger = options.logger;
    this.client = createClient({
      url: options.url,
      disableOfflineQueue: true,
      socket: { connectTimeout: this.connectTimeoutMs, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000) },
    });
    // Without a listener, a connection error would crash the process. Log the first error of an
    // outage and the recovery, not every retry.
    this.client.on('error', (err: unknown) => {
      if (this.closing || !this.healthy) return;
      this.healthy = false;
      logger?.warn({ err: err instanceof Error ? err.message : String(err) }, 'Redis unreachable; cache operations fail until it is back');
    });
    this.client.on('ready', () => {
      if (!this.healthy) logger?.info({}, 'Redis reachable again');
      this.healthy = true;
    });
    this.connecting = this.client.connect().then(() => undefined);
    // Operations report connection failures themselves; this promise must not count as unhandled.
    this.connecting.catch(() => undefined);
  }

  /**
   * The GETs of one key asked for in one turn of the event loop share one command, sent at the
   * turn's end (setImmediate). A busy proxy reads the same generation stamp for every call of an
   * operator; each call used to send its own GET and wait for its own reply. Sharing changes
   * nothing a caller can see: the command is created after every caller sharing it asked, so it
   * sees every write that finished before any of them did — as their own GETs would have, which
   * the client also sent only at the turn's end. A write asked for later in the turn sends the
   * waiting GETs first (`beforeWrite`), so a GET never sees a write its caller asked for after it:
   * `Promise.all([get(k), del(k)])` reads the value, as the in-process cache does.
   */
  get(key: string): Promise<string | undefined> {
    let k: string;
    try {
      k = this.key(key);
    } catch (err) {
      return Promise.reject(err);
    }
    const shared = this.turnGets.get(k);
    if (shared) return shared.promise;
    if (this.turnGets.size === 0) setImmediate(this.sendTurnGets);
    let resolve!: TurnGet['resolve'];
    let reject!: TurnGet['reject'];
    const promise = new Promise<string | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.turnGets.set(k, { promise, resolve, reject });
    return promise;
  }

  private readonly sendTurnGets = (): void => {
    const turn = this.turnGets;
    this.turnGets = new Map();
    for (const [k, waiting] of turn) this.fetch(k).then(waiting.resolve, waiting.reject);
  };

  /** Sends this turn's waiting GETs now, ahead of the write about to be sent: commands leave in the order they were asked for. */
  private beforeWrite(): void {
    if (this.turnGets.size > 0) this.sendTurnGets();
  }

  private async fetch(k: string): Promise<string | undefined> {
    await this.ready();
    const value = await this.client.get(k);
    return value === null ? undefined : String(value);
  }

  async set(key: string, value: string, options: TtlOptions): Promise<void> {
    const k = this.key(key);
    this.beforeWrite();
    const ttlMs = checkTtl(options);
    await this.ready();
    await this.client.set(k, checkValue(value), { expiration: { type: 'PX', value: ttlMs } });
  }

  async del(key: string): Promise<boolean> {
    const k = this.key(key);
    this.beforeWrite();
    await this.ready();
    return (await this.client.del(k)) > 0;
  }

  async getJson<T>(key: string): Promise<T | undefined> {
    return parseJson<T>(await this.get(key));
  }

  async setJson(key: string, value: unknown, options: TtlOptions): Promise<void> {
    await this.set(key, toJson(value), options);
  }

  async incr(key: string, options: IncrOptions): Promise<number> {
    const k = this.key(key);
    this.beforeWrite();
    const by = checkIncrBy(options?.by);
    const ttlMs = checkTtl(options);
    return Number(await this.run(INCR, [k], [String(by), String(ttlMs)]));
  }

  async setIfAbsent(key: string, value: string, options: TtlOptions): Promise<boolean> {
    const k = this.key(key);
    this.beforeWrite();
    const ttlMs = checkTtl(options);
    await this.ready();
    const reply = await this.client.set(k, checkValue(value), { condition: 'NX', expiration: { type: 'PX', value: ttlMs } });
    return reply !== null;
  }

  async delIfEquals(key: string, value: string): Promise<boolean> {
    const k = this.key(key);
    this.beforeWrite();
    return Number(await this.run(DEL_IF_EQUALS, [k], [checkValue(value)])) > 0;
  }

  async takeToken(bucketKey: string, options: TokenBucketOptions): Promise<TokenBucketResult> {
    const k = this.key(bucketKey);
    this.beforeWrite();
    const bucket = checkBucket(options);
    const reply = await this.run(TAKE_TOKEN, [k], [String(bucket.capacity), String(bucket.ratePerMs), String(bucket.cost)]);
    if (!Array.isArray(reply) || reply.length !== 3) throw new Error('RedisCache: unexpected reply from the token bucket script');
    return { allowed: Number(reply[0]) === 1, retryAfterMs: Number(reply[1]), remaining: Number(reply[2]) };
  }

  async ping(): Promise<void> {
    await this.ready();
    await this.client.ping();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.client.isReady) {
      await this.client.close();
    } else {
      // Not connected (yet, or any more): stop reconnecting at once.
      this.client.destroy();
    }
  }

  private key(key: string): string {
    return this.keyPrefix + checkKey(key);
  }

  /** Waits for the first connection, bounded; afterwards returns at once (commands fail fast while offline). */
  private async ready(): Promise<void> {
    if (this.closing) throw new Error('RedisCache: the cache is closed');
    if (this.client.isReady) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`RedisCache: Redis not reachable within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** EVALSHA, loading the script with EVAL the first time a server has not seen it. */
  private async run(s: Script, keys: string[], args: string[]): Promise<unknown> {
    await this.ready();
    try {
      return await this.client.evalSha(s.sha, { keys, arguments: args });
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return this.client.eval(s.source, { keys, arguments: args });
    }
  }
}

function checkValue(value: unknown): string {
  if (typeof value !== 'string') throw new Error(`cache: value must be a string (got ${typeof value}); use setJson for objects`);
  return value;
}
