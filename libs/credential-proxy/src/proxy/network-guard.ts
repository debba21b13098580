/**
 * Where the proxy may connect (DESIGN.md §5). The host is resolved once; every address it
 * resolves to must be public — not private, loopback, link-local (cloud metadata included),
 * CGNAT, IPv4-mapped, NAT64, multicast or reserved — unless it lies in the deployment-wide
 * STACK_PROXY_PRIVATE_ALLOWLIST. The proxy then connects to that checked address only, so a
 * second DNS answer (rebinding) can never redirect it. IPv4 spellings such as `2130706433` or
 * `0x7f.1` are normalised by the WHATWG URL parser before they arrive here.
 */
import { StackError } from '@stack/contracts';
import { AddressPolicy, normaliseHost, systemResolver, type HostResolver, type ResolvedAddress } from '@stack/security';

import { causeCode } from './cause-code';

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
  private readonly policy: AddressPolicy;
  private readonly resolver: HostResolver;
  private readonly answerTtlMs: number;
  /** Answers by name, until when they are reused; a lookup in flight is shared by every call that needs it. */
  private readonly answers = new Map<string, { until: number; answers: Promise<ResolvedAddress[]> }>();

  constructor(options: NetworkGuardOptions) {
    this.policy = new AddressPolicy(options.privateAllowlist);
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
    return this.policy.isAllowed(address);
  }

  /** Resolves `hostname` once and returns the address to connect to, or throws FORBIDDEN. */
  async resolve(hostname: string): Promise<ResolvedAddress> {
    let verdict;
    try {
      verdict = await this.policy.check(hostname, (host) => this.lookup(host));
    } catch (err) {
      // ENOTFOUND (no such name) and EAI_AGAIN (the resolver failed) call for different fixes.
      const cause = causeCode(err);
      throw new StackError('UPSTREAM_ERROR', `the upstream host '${normaliseHost(hostname)}' could not be resolved`, cause ? { cause_code: cause } : undefined);
    }
    if ('address' in verdict) return verdict.address;
    if (verdict.refused === 'no_address') throw new StackError('UPSTREAM_ERROR', `the upstream host '${verdict.host}' could not be resolved`);
    throw refused(verdict.host);
  }
}

function refused(host: string): StackError {
  return new StackError('FORBIDDEN', `the upstream host '${host}' resolves to an address the proxy may not reach`, { reason: 'address_not_allowed', host });
}
