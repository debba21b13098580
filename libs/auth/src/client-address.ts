/**
 * The address of the client behind a request. X-Forwarded-For is believed only when the
 * connection comes from a proxy in STACK_TRUSTED_PROXIES, and then only up to the first hop
 * that is not itself a trusted proxy (walking from the right), so a client cannot choose its
 * own address by sending the header.
 */
import { isIP, type BlockList } from 'node:net';

import type { Request } from 'express';

import { blockListOf } from '@stack/security';

export class ClientAddressResolver {
  private readonly trusted: BlockList;

  constructor(cidrs: readonly string[]) {
    this.trusted = blockListOf(cidrs);
  }

  isTrusted(address: string | undefined): boolean {
    const a = normalise(address);
    if (!a || !isIP(a)) return false;
    return this.trusted.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  }

  resolve(req: Pick<Request, 'headers' | 'socket'>): string {
    const peer = normalise(req.socket.remoteAddress) ?? 'unknown';
    if (!this.isTrusted(peer)) return peer;
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((h) => normalise(h.trim())).filter((h): h is string => !!h);
    for (let i = hops.length - 1; i >= 0; i -= 1) {
      if (!this.isTrusted(hops[i])) return hops[i]!;
    }
    return hops[0] ?? peer;
  }
}

function normalise(address: string | undefined): string | undefined {
  if (!address) return undefined;
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
