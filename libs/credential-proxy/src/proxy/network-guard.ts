/**
 * Where the proxy may connect (DESIGN.md §5). The host is resolved once; every address it
 * resolves to must be public — not private, loopback, link-local (cloud metadata included),
 * CGNAT, IPv4-mapped, NAT64, multicast or reserved — unless it lies in the deployment-wide
 * STACK_PROXY_PRIVATE_ALLOWLIST. The proxy then connects to that checked address only, so a
 * second DNS answer (rebinding) can never redirect it. IPv4 spellings such as `2130706433` or
 * `0x7f.1` are normalised by the WHATWG URL parser before they arrive here.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

import { StackError } from '@stack/contracts';

import { causeCode } from './cause-code';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** DNS seam: tests substitute a resolver that answers with a private address. */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: HostResolver = async (hostname) => {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

const V4_BLOCKED = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24',
  '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
];
const V6_BLOCKED = [
  '::/128', '::1/128', '::/96', '100::/64', '2001::/32', '2001:db8::/32', '2002::/16', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8',
];
/** Translated forms of IPv4 in IPv6: refused outright (the allowlist does not apply to them). */
const V6_TRANSLATED = ['::ffff:0:0/96', '64:ff9b::/96', '64:ff9b:1::/48'];
const METADATA_HOSTNAMES = new Set(['metadata.google.internal', 'metadata', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal']);

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split('/');
    const family = isIP(net!) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(net!, Number(bits ?? (family === 'ipv6' ? 128 : 32)), family);
  }
  return list;
}

const blockedV4 = blockList(V4_BLOCKED);
const blockedV6 = blockList(V6_BLOCKED);
const translatedV6 = blockList(V6_TRANSLATED);

export type AddressVerdict = 'public' | 'private' | 'translated';

/** Classifies one IP address (no allowlist). */
export function classifyAddress(address: string): AddressVerdict {
  const family = isIP(address);
  if (family === 4) return blockedV4.check(address, 'ipv4') ? 'private' : 'public';
  if (family === 6) {
    if (translatedV6.check(address, 'ipv6')) return 'translated';
    return blockedV6.check(address, 'ipv6') ? 'private' : 'public';
  }
  return 'private';
}

export interface NetworkGuardOptions {
  /** STACK_PROXY_PRIVATE_ALLOWLIST: CIDRs of private addresses that may be reached. */
  privateAllowlist: readonly string[];
  resolver?: HostResolver;
  /**
   * How long a name's answers are reused, ms (default 30 s; 0: resolve on every call). Without
   * it every call to api.github.com waits for getaddrinfo on libuv's four-thread pool — in a
   * cluster, a round of search-domain queries to its DNS — before it may connect.
   */
  answerTtlMs?: number;
}

/** Names whose answers are kept at most; past it the oldest go first. */
const MAX_CACHED_NAMES = 1024;

export class NetworkGuard {
  private readonly allow: BlockList;
  private readonly resolver: HostResolver;
  private readonly answerTtlMs: number;
  /** Answers by name, until when they are reused; a lookup in flight is shared by every call that needs it. */
  private readonly answers = new Map<string, { until: number; answers: Promise<ResolvedAddress[]> }>();

  constructor(options: NetworkGuardOptions) {
    this.allow = blockList(options.privateAllowlist);
    this.resolver = options.resolver ?? systemResolver;
    this.answerTtlMs = options.answerTtlMs ?? 30_000;
  }

  /**
   * The name's addresses: from the cache while fresh, else one lookup shared by concurrent
   * callers. Failures are not kept. Every use still checks every address (resolve below), so
   * a cached answer can never reach what the guard refuses, and a name that changes its answer
   * (DNS rebinding) is seen only at the next lookup — never between the check and the connect.
   */
  private lookup(host: string): Promise<ResolvedAddress[]> {
    if (this.answerTtlMs <= 0) return this.resolver(host);
    const now = Date.now();
    const hit = this.answers.get(host);
    if (hit && hit.until > now) return hit.answers;
    if (hit) this.answers.delete(host);
    if (this.answers.size >= MAX_CACHED_NAMES) this.answers.delete(this.answers.keys().next().value!);
    const answers = this.resolver(host);
    const entry = { until: now + this.answerTtlMs, answers };
    this.answers.set(host, entry);
    answers.then(
      (found) => {
        if (found.length === 0 && this.answers.get(host) === entry) this.answers.delete(host);
      },
      () => {
        if (this.answers.get(host) === entry) this.answers.delete(host);
      },
    );
    return answers;
  }

  isAllowed(address: string): boolean {
    const verdict = classifyAddress(address);
    if (verdict === 'public') return true;
    if (verdict === 'translated') return false;
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    return this.allow.check(address, family);
  }

  /** Resolves `hostname` once and returns the address to connect to, or throws FORBIDDEN. */
  async resolve(hostname: string): Promise<ResolvedAddress> {
    const host = hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
    if (METADATA_HOSTNAMES.has(host)) throw refused(host);
    const literal = isIP(host);
    let answers: ResolvedAddress[];
    if (literal) {
      answers = [{ address: host, family: literal === 6 ? 6 : 4 }];
    } else {
      try {
        answers = await this.lookup(host);
      } catch (err) {
        // ENOTFOUND (no such name) and EAI_AGAIN (the resolver failed) call for different fixes.
        const cause = causeCode(err);
        throw new StackError('UPSTREAM_ERROR', `the upstream host '${host}' could not be resolved`, cause ? { cause_code: cause } : undefined);
      }
      if (answers.length === 0) throw new StackError('UPSTREAM_ERROR', `the upstream host '${host}' could not be resolved`);
    }
    // Every answer must pass: a name that resolves to one public and one private address is refused
    // rather than raced.
    for (const a of answers) if (!this.isAllowed(a.address)) throw refused(host);
    return answers[0]!;
  }
}

function refused(host: string): StackError {
  return new StackError('FORBIDDEN', `the upstream host '${host}' resolves to an address the proxy may not reach`, { reason: 'address_not_allowed', host });
}
