/**
 * Sends a canonical request to the upstream over undici, connecting only to the address the
 * network guard checked (a fixed `lookup`), while the URL, the Host header and TLS SNI keep the
 * original name. Redirects are never followed; the answer is read up to a cap; a timeout or an
 * abort signal (revocation) cuts the call at any point.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';

import { Pool } from 'undici';

import { StackError } from '@stack/contracts';
import type { ResolvedAddress } from '@stack/security';

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
  signals?: readonly AbortSignal[];
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

  async send(req: UpstreamRequest): Promise<UpstreamResponse> {
    // One controller for the deadline and every outside signal, joined by listeners removed when
    // the call ends (AbortSignal.any costs more per call and holds its sources until collected).
    const controller = new AbortController();
    let cause: { kind: 'timeout' } | { kind: 'signal'; reason: unknown } | undefined;
    const timer = setTimeout(() => {
      cause ??= { kind: 'timeout' };
      controller.abort();
    }, req.timeoutMs);
    const joined: Array<[AbortSignal, () => void]> = [];
    for (const s of req.signals ?? []) {
      const onAbort = () => {
        cause ??= { kind: 'signal', reason: s.reason };
        controller.abort();
      };
      if (s.aborted) onAbort();
      else {
        s.addEventListener('abort', onAbort, { once: true });
        joined.push([s, onAbort]);
      }
    }
    const signal = controller.signal;
    const cut = (err?: unknown): StackError => {
      if (cause?.kind === 'signal') {
        return cause.reason instanceof StackError ? cause.reason : new StackError('PASSPORT_REVOKED', 'the call was cut because its authority was revoked');
      }
      const code = (err as { code?: string } | undefined)?.code;
      if (cause?.kind === 'timeout' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return new StackError('UPSTREAM_TIMEOUT', `the upstream did not answer within ${req.timeoutMs} ms`);
      // The message stays generic; the code (ECONNREFUSED, a TLS certificate failure…) says why.
      const why = causeCode(err);
      return new StackError('UPSTREAM_ERROR', 'the upstream connection failed', why ? { cause_code: why } : undefined);
    };
    try {
      const res = await this.pool(req.origin, req.address).request({
        method: req.method as 'GET',
        path: req.target,
        headers: req.headers,
        body: req.body,
        signal,
        // The one overall deadline is the timer above; undici's own timers only back it up.
        headersTimeout: req.timeoutMs + 1000,
        bodyTimeout: req.timeoutMs + 1000,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (size + chunk.length > req.maxBytes) {
            if (req.overflow === 'refuse') {
              res.body.destroy();
              throw new StackError('PAYLOAD_TOO_LARGE', `the upstream answer is larger than ${req.maxBytes} bytes`, { limit_bytes: req.maxBytes });
            }
            chunks.push(chunk.subarray(0, req.maxBytes - size));
            size = req.maxBytes;
            truncated = true;
            res.body.destroy();
            break;
          }
          chunks.push(chunk);
          size += chunk.length;
        }
      } catch (err) {
        if (err instanceof StackError) throw err;
        throw cut(err);
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(res.headers)) {
        if (value === undefined) continue;
        headers[name] = Array.isArray(value) ? value.join(', ') : value;
      }
      return { status: res.statusCode, headers, body: Buffer.concat(chunks, size), truncated };
    } catch (err) {
      if (err instanceof StackError) throw err;
      throw cut(err);
    } finally {
      clearTimeout(timer);
      for (const [s, onAbort] of joined) s.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map((p) => p.destroy()));
  }
}
