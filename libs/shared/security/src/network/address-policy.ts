/**
 * Which IP addresses a STACK component may connect to when someone else chose the URL — the
 * credential proxy's upstreams, auth's client metadata documents. One list for both, so the two
 * cannot drift: private, loopback, link-local, CGNAT, benchmarking, documentation, multicast and
 * reserved ranges are refused, and so is every address that translates to an IPv4 one
 * (IPv4-mapped, NAT64), since what it reaches depends on the network; only the deployment's
 * allowlist (STACK_PROXY_PRIVATE_ALLOWLIST, CIDRs) reopens a private range, never a translated one.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

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

/** A URL host judged: the address to connect to, or why there is none. `host` is the name as checked. */
export type HostVerdict = { host: string; address: ResolvedAddress } | { host: string; refused: 'metadata_name' | 'address_not_allowed' | 'no_address' };

/** A URL's hostname as it is checked: brackets, case and a trailing dot removed. */
export function normaliseHost(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
}

// Besides the special-use ranges: Azure's WireServer (168.63.129.16, a public address that serves
// VM agents and, from inside a VM, platform secrets) — a metadata endpoint in all but name.
const V4_BLOCKED = [
  '168.63.129.16/32', '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24',
  '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
];
// IPv4-compatible (::/96), discard, IETF protocol assignments (Teredo, benchmarking, ORCHID…),
// documentation (both prefixes), 6to4, unique local, link-local, site-local and multicast.
const V6_BLOCKED = ['::/128', '::1/128', '::/96', '100::/64', '2001::/23', '2001:db8::/32', '3fff::/20', '2002::/16', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8'];
// IPv4-mapped, SIIT's IPv4-translated (`::ffff:0:a.b.c.d`, RFC 7915: a stateless translator turns it
// into that IPv4 address) and NAT64's well-known and local-use prefixes.
const V6_TRANSLATED = ['::ffff:0:0/96', '::ffff:0:0:0/96', '64:ff9b::/96', '64:ff9b:1::/48'];

/** Cloud metadata endpoints reached by name (their addresses are link-local and refused anyway). */
export const METADATA_HOSTNAMES: ReadonlySet<string> = new Set(['metadata.google.internal', 'metadata', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal']);

export function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net = '', bits] = cidr.split('/');
    const family = isIP(net) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(net, family);
    else list.addSubnet(net, Number(bits), family);
  }
  return list;
}

const blockedV4 = blockListOf(V4_BLOCKED);
const blockedV6 = blockListOf(V6_BLOCKED);
const translatedV6 = blockListOf(V6_TRANSLATED);

export type AddressVerdict = 'public' | 'private' | 'translated';

/** What an address is; anything that is not an IP literal counts as private. */
export function classifyAddress(address: string): AddressVerdict {
  const family = isIP(address);
  if (family === 4) return blockedV4.check(address, 'ipv4') ? 'private' : 'public';
  if (family === 6) {
    if (translatedV6.check(address, 'ipv6')) return 'translated';
    return blockedV6.check(address, 'ipv6') ? 'private' : 'public';
  }
  return 'private';
}

/** Most verdicts an AddressPolicy remembers (an address string's verdict never changes for one policy). */
export const REMEMBERED_VERDICTS = 4096;

/** The verdict plus the deployment's allowlist. */
export class AddressPolicy {
  private readonly allow: BlockList;
  /** Verdict by address string: the block lists answer through a SocketAddress built per check, on every proxy call. */
  private readonly verdicts = new Map<string, boolean>();

  constructor(privateAllowlist: readonly string[]) {
    this.allow = blockListOf(privateAllowlist);
  }

  /**
   * Resolves a URL's host once (an IP literal as itself) and judges it: metadata names are refused
   * before DNS, and every answer must pass — a name with one public and one special-use address is
   * refused rather than raced. The caller connects to the address returned, only. Lookup failures
   * propagate.
   */
  async check(hostname: string, resolve: HostResolver): Promise<HostVerdict> {
    const host = normaliseHost(hostname);
    if (METADATA_HOSTNAMES.has(host)) return { host, refused: 'metadata_name' };
    const literal = isIP(host);
    const answers: ResolvedAddress[] = literal ? [{ address: host, family: literal === 6 ? 6 : 4 }] : await resolve(host);
    if (answers.length === 0) return { host, refused: 'no_address' };
    if (!answers.every((a) => this.isAllowed(a.address))) return { host, refused: 'address_not_allowed' };
    return { host, address: answers[0]! };
  }

  isAllowed(address: string): boolean {
    const known = this.verdicts.get(address);
    if (known !== undefined) return known;
    const allowed = this.judge(address);
    if (this.verdicts.size >= REMEMBERED_VERDICTS) this.verdicts.clear();
    this.verdicts.set(address, allowed);
    return allowed;
  }

  private judge(address: string): boolean {
    const verdict = classifyAddress(address);
    if (verdict === 'public') return true;
    if (verdict === 'translated') return false;
    const family = isIP(address);
    if (family === 0) return false;
    return this.allow.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}
