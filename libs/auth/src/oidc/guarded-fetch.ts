/**
 * The only way auth fetches a URL someone else chose (a Client ID Metadata Document): https only,
 * DNS resolved once and every special-use address refused (private, loopback, link-local, CGNAT,
 * IPv4-mapped, NAT64, cloud metadata) unless STACK_PROXY_PRIVATE_ALLOWLIST covers it, the
 * connection pinned to the checked address, no redirects followed, a size cap and a timeout.
 * It has fetch's shape because oidc-provider calls it as its `fetch`.
 */
import { lookup } from 'node:dns/promises';
import { request } from 'node:https';
import { BlockList, isIP } from 'node:net';

export interface GuardedFetchOptions {
  /** CIDRs that may be reached even though they are special-use (tests' loopback fakes). */
  privateAllowlist: readonly string[];
  maxBytes?: number;
  timeoutMs?: number;
}

const SPECIAL_V4 = ['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4'];
const SPECIAL_V6 = ['::/128', '::1/128', '::ffff:0:0/96', '64:ff9b::/96', '64:ff9b:1::/48', '100::/64', '2001::/23', '2001:db8::/32', '2002::/16', 'fc00::/7', 'fe80::/10', 'ff00::/8'];

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [addr = '', bits] = cidr.split('/');
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return list;
}

const special = blockList([...SPECIAL_V4, ...SPECIAL_V6]);

export class FetchRefused extends Error {
  override readonly name = 'FetchRefused';
}

export function createGuardedFetch(options: GuardedFetchOptions): (url: string | URL, init?: RequestInit) => Promise<Response> {
  const allowed = blockList(options.privateAllowlist);
  const maxBytes = options.maxBytes ?? 64 * 1024;
  const timeoutMs = options.timeoutMs ?? 5000;

  const permitted = (address: string): boolean => {
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
    const mapped = family === 'ipv6' && /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : undefined;
    if (mapped) return permitted(mapped);
    return !special.check(address, family) || allowed.check(address, family);
  };

  return async (input, init = {}) => {
    const url = new URL(String(input));
    if (url.protocol !== 'https:') throw new FetchRefused('only https URLs are fetched');
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const addresses = isIP(hostname) ? [{ address: hostname }] : await lookup(hostname, { all: true, verbatim: true });
    const target = addresses.find((a) => permitted(a.address));
    if (!target) throw new FetchRefused(`${hostname} resolves only to special-use addresses`);
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
