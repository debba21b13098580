/**
 * @stack/cache: short-lived shared state — cached lookups, counters, locks and token-bucket rate
 * limits — on Redis, or in process when REDIS_URL is unset.
 */
export { CacheOptionError } from './cache';
export type { Cache, IncrOptions, TokenBucketOptions, TokenBucketResult, TtlOptions } from './cache';
export { MemoryCache, MemoryStore } from './memory-cache';
export type { MemoryCacheOptions } from './memory-cache';
export { RedisCache } from './redis-cache';
export type { CacheLogger, RedisCacheOptions } from './redis-cache';
export { createCache } from './create-cache';
export type { CreateCacheOptions } from './create-cache';
