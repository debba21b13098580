/**
 * The only way auth fetches a URL someone else chose (a Client ID Metadata Document): https only,
 * DNS resolved once and refused if any answer is special-use (private, loopback, link-local, CGNAT,
 * IPv4-mapped, NAT64, cloud metadata — the proxy's AddressPolicy) unless
 * STACK_PROXY_PRIVATE_ALLOWLIST covers it (never a translated address), the
 * connection pinned to the checked address, no redirects followed, a size cap and a timeout.
 * It has fetch's shape because oidc-provider calls it as its `fetch`.
 */
import { request } from 'node:https';
import { isIP } from 'node:net';

import { AddressPolicy, systemResolver } from '@stack/security';

export interface GuardedFetchOptions {
  /** CIDRs that may be reached even though they are special-use (tests' loopback fakes). */
  privateAllowlist: readonly string[];
  maxBytes?: number;
  timeoutMs?: number;
}

export class FetchRefused extends Error {
  override readonly name = 'FetchRefused';
}

export function createGuardedFetch(options: GuardedFetchOptions): (url: string | URL, init?: RequestInit) => Promise<Response> {
  // The proxy's own address policy (@stack/security), so the two never drift apart.
  const policy = new AddressPolicy(options.privateAllowlist);
  const maxBytes = options.maxBytes ?? 64 * 1024;
  const timeoutMs = options.timeoutMs ?? 5000;

  return async (input, init = {}) => {
    const url = new URL(String(input));
    if (url.protocol !== 'https:') throw new FetchRefused('only https URLs are fetched');
    const verdict = await policy.check(url.hostname, systemResolver);
    const hostname = verdict.host;
    if (!('address' in verdict)) throw new FetchRefused(verdict.refused === 'metadata_name' ? `${hostname} is a special-use (metadata) name` : `${hostname} resolves to a special-use address`);
    const target = verdict.address;
    const headers: Record<string, string> = { host: url.host, 'user-agent': 'STACK', accept: 'application/json' };
    new Headers(init.headers).forEach((v, k) => {
      if (k !== 'host') headers[k] = v;
    });
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        { host: target.address, port: url.port || 443, path: `${url.pathname}${url.search}`, method: init.method ?? 'GET', servername: isIP(hostname) ? undefined : hostname, headers, agent: false, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBytes) {
              req.destroy(new FetchRefused(`response larger than ${maxBytes} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => {
            const responseHeaders = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') responseHeaders.set(k, v);
            const status = res.statusCode ?? 502;
            // Redirects are not followed: the caller sees the 3xx itself.
            resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers: responseHeaders }));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new FetchRefused(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  };
}
