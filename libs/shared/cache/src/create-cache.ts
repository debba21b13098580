/**
 * Picks the cache implementation from configuration: Redis when REDIS_URL is set, otherwise the
 * in-process store (DESIGN.md §9).
 */
import type { Cache } from './cache';
import { type MemoryStore, MemoryCache } from './memory-cache';
import { type CacheLogger, RedisCache } from './redis-cache';

export interface CreateCacheOptions {
  /** REDIS_URL; unset means in-process. */
  url?: string;
  /** Prepended as it is to every key (`stack:` gives `stack:rate:mem_1`). */
  keyPrefix: string;
  logger?: CacheLogger;
  /** Redis only: how long operations wait for the first connection (default 2000 ms). */
  connectTimeoutMs?: number;
  /** In-process only: the store to use (default: the one shared by the whole process). */
  memoryStore?: MemoryStore;
}

/** Returns at once; a Redis connection is made in the background and awaited by the first operation. */
export function createCache(options: CreateCacheOptions): Cache {
  if (options.url) return new RedisCache({ url: options.url, keyPrefix: options.keyPrefix, logger: options.logger, connectTimeoutMs: options.connectTimeoutMs });
  return new MemoryCache({ keyPrefix: options.keyPrefix, store: options.memoryStore });
}
