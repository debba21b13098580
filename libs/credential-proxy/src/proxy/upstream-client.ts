/**
 * Sends a canonical request to the upstream over undici, connecting only to the address the
 * network guard checked (a fixed `lookup`), while the URL, the Host header and TLS SNI keep the
 * original name. Redirects are never followed; the answer is read up to a cap; a timeout or an
 * abort signal (revocation) cuts the call at any point.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';

import { Pool, type Dispatcher } from 'undici';

import { StackError } from '@stack/contracts';
import type { AbortLike, ResolvedAddress } from '@stack/security';

import { causeCode } from './cause-code';

export interface UpstreamRequest {
  origin: string;
  address: ResolvedAddress;
  method: string;
  /** Path and query as they go on the request line. */
  target: string;
  headers: Record<string, string>;
  body?: Buffer;
  timeoutMs: number;
  maxBytes: number;
  /** `refuse`: PAYLOAD_TOO_LARGE past maxBytes; `truncate`: keep maxBytes and flag it. */
  overflow: 'refuse' | 'truncate';
  /** Any of these aborting (the caller hanging up, a revocation) cuts the call with its reason. */
  signals?: readonly AbortLike[];
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  truncated: boolean;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

const MAX_POOLS = 256;

export class UpstreamClient {
  private readonly pools = new Map<string, Pool>();

  private pool(origin: string, address: ResolvedAddress): Pool {
    const key = `${origin}|${address.address}`;
    let pool = this.pools.get(key);
    if (!pool) {
      if (this.pools.size >= MAX_POOLS) {
        const [oldestKey, oldest] = this.pools.entries().next().value as [string, Pool];
        this.pools.delete(oldestKey);
        void oldest.close();
      }
      // The pinned lookup: whatever name the socket asks for, it gets the checked address.
      const lookup = (_host: string, options: LookupOptions, callback: LookupCallback) => {
        if (options?.all) callback(null, [{ address: address.address, family: address.family }]);
        else callback(null, address.address, address.family);
      };
      pool = new Pool(origin, { connections: 64, pipelining: 1, connect: { lookup: lookup as never, timeout: 10_000 } });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /**
   * One call through undici's dispatch API: the answer's chunks are collected as they arrive,
   * with no response stream, async iterator or per-chunk promise between the socket and the
   * buffer (Pool.request builds all three for every call).
   */
  send(req: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      let cause: { kind: 'timeout' } | { kind: 'signal'; reason: unknown } | undefined;
      let settled = false;
      let status = 0;
      let headers: Record<string, string> = {};
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      const joined: Array<[AbortLike, () => void]> = [];

      const cut = (err?: unknown): StackError => {
        if (err instanceof StackError) return err;
        if (cause?.kind === 'signal') {
          return cause.reason instanceof StackError ? cause.reason : new StackError('PASSPORT_REVOKED', 'the call was cut because its authority was revoked');
        }
        const code = (err as { code?: string } | undefined)?.code;
        if (cause?.kind === 'timeout' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return new StackError('UPSTREAM_TIMEOUT', `the upstream did not answer within ${req.timeoutMs} ms`);
        // The message stays generic; the code (ECONNREFUSED, a TLS certificate failure…) says why.
        const why = causeCode(err);
        return new StackError('UPSTREAM_ERROR', 'the upstream connection failed', why ? { cause_code: why } : undefined);
      };
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        for (const [s, onAbort] of joined) s.removeEventListener('abort', onAbort);
        return true;
      };
      const fail = (err?: unknown): void => {
        if (settle()) reject(cut(err));
      };
      const done = (): void => {
        if (settle()) resolve({ status, headers, body: Buffer.concat(chunks, size), truncated });
      };
      // The deadline and every outside signal stop the call the same way; undici then reports an error, which `cut` names by its cause.
      const stop = (why: NonNullable<typeof cause>): void => {
        cause ??= why;
        if (controller) controller.abort(new Error('aborted'));
        else fail();
      };
      const timer = setTimeout(() => stop({ kind: 'timeout' }), req.timeoutMs);
      for (const s of req.signals ?? []) {
        if (s.aborted) return stop({ kind: 'signal', reason: s.reason });
        const onAbort = () => stop({ kind: 'signal', reason: s.reason });
        s.addEventListener('abort', onAbort, { once: true });
        joined.push([s, onAbort]);
      }

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(c) {
          controller = c;
          if (cause || settled) c.abort(new Error('aborted'));
        },
        onResponseStart(_c, statusCode, responseHeaders) {
          // 1xx answers are informational: the final one follows.
          if (statusCode < 200) return;
          status = statusCode;
          headers = {};
          for (const name of Object.keys(responseHeaders)) {
            const value = responseHeaders[name];
            if (value === undefined) continue;
            headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
          }
        },
        onResponseData(c, chunk) {
          if (settled) return;
          if (size + chunk.length > req.maxBytes) {
            if (req.overflow === 'refuse') {
              fail(new StackError('PAYLOAD_TOO_LARGE', `the upstream answer is larger than ${req.maxBytes} bytes`, { limit_bytes: req.maxBytes }));
            } else {
              chunks.push(chunk.subarray(0, req.maxBytes - size));
              size = req.maxBytes;
              truncated = true;
              done();
            }
            // The rest is not wanted: the connection goes rather than reading it to its end.
            c.abort(new Error('answer cut at its cap'));
            return;
          }
          chunks.push(chunk);
          size += chunk.length;
        },
        onResponseEnd() {
          done();
        },
        onResponseError(_c, err) {
          fail(err);
        },
      };
      try {
        this.pool(req.origin, req.address).dispatch(
          {
            path: req.target,
            method: req.method as Dispatcher.HttpMethod,
            headers: req.headers,
            body: req.body ?? null,
            // The one overall deadline is the timer above; undici's own timers only back it up.
            headersTimeout: req.timeoutMs + 1000,
            bodyTimeout: req.timeoutMs + 1000,
          },
          handler,
        );
      } catch (err) {
        if (controller) controller.abort(err as Error);
        fail(err);
      }
    });
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map((p) => p.destroy()));
  }
}
