/**
 * Idempotency keys for non-GET proxy calls: the first call under a key stores its outcome (the
 * answer, or the error) for 24 hours; a repeat of the same request gets that outcome replayed
 * without reaching the upstream again; a different request under the same key is refused with
 * IDEMPOTENCY_CONFLICT, and so is a repeat while the first is still running. Kept in the shared
 * cache (Redis across replicas), keyed by operator and connection.
 */
import { createHash, randomBytes } from 'node:crypto';

import type { Cache } from '@stack/cache';
import { StackError, type ErrorBody, type ProxyResponse } from '@stack/contracts';

import type { CanonicalRequest } from './canonical-request';

const TTL_MS = 24 * 60 * 60 * 1000;
const PENDING_TTL_MS = 60_000;

type Stored = { fingerprint: string; state: 'pending'; owner: string } | { fingerprint: string; state: 'done'; response?: ProxyResponse; error?: ErrorBody };

export function fingerprintOf(connectionId: string, req: CanonicalRequest, target: string, channel: string): string {
  const h = createHash('sha256');
  // The channel too: an answer stored for the tool (cut to 1 MB, `truncated`) is not one REST may replay, nor the reverse.
  h.update(JSON.stringify([connectionId, req.method, req.origin, target, Object.entries(req.headers).sort(), channel]));
  h.update('\0');
  if (req.body) h.update(req.body);
  return h.digest('base64url');
}

export class IdempotencyStore {
  constructor(private readonly cache: Cache) {}

  private key(operatorId: string, connectionId: string, idemKey: string): string {
    return `cp:idem:${operatorId}:${connectionId}:${createHash('sha256').update(idemKey).digest('base64url')}`;
  }

  /**
   * Either claims the key (returns a `commit` to store the outcome) or returns the stored outcome.
   * Throws IDEMPOTENCY_CONFLICT for a different request or one still in flight.
   */
  async begin(operatorId: string, connectionId: string, idemKey: string, fingerprint: string): Promise<{ replay: ProxyResponse } | { commit: (outcome: { response?: ProxyResponse; error?: StackError }) => Promise<void> }> {
    const key = this.key(operatorId, connectionId, idemKey);
    const owner = randomBytes(12).toString('hex');
    const pending: Stored = { fingerprint, state: 'pending', owner };
    if (await this.cache.setIfAbsent(key, JSON.stringify(pending), { ttlMs: PENDING_TTL_MS })) {
      return {
        commit: async ({ response, error }) => {
          // An error that says nothing about the upstream (it was never reached) is not stored, so a retry may succeed.
          if (error && !['UPSTREAM_ERROR', 'UPSTREAM_TIMEOUT', 'PAYLOAD_TOO_LARGE'].includes(error.code)) {
            await this.cache.delIfEquals(key, JSON.stringify(pending));
            return;
          }
          const done: Stored = { fingerprint, state: 'done', ...(response ? { response } : {}), ...(error ? { error: error.toBody() } : {}) };
          await this.cache.set(key, JSON.stringify(done), { ttlMs: TTL_MS });
        },
      };
    }
    const stored = await this.cache.getJson<Stored>(key);
    if (!stored) throw new StackError('IDEMPOTENCY_CONFLICT', 'a call with this idempotency key just finished or expired; retry', { reason: 'race' });
    if (stored.fingerprint !== fingerprint) throw new StackError('IDEMPOTENCY_CONFLICT', 'this idempotency key was used for a different request', { reason: 'different_request' });
    if (stored.state === 'pending') throw new StackError('IDEMPOTENCY_CONFLICT', 'a call with this idempotency key is still in progress', { reason: 'in_progress' });
    if (stored.error) throw StackError.fromBody(stored.error);
    return { replay: { ...stored.response!, replayed: true } };
  }
}
