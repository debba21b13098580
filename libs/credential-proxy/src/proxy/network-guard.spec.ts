import { AddressPolicy, REMEMBERED_VERDICTS, classifyAddress } from '@stack/security';

import { NetworkGuard } from './network-guard';

describe('network guard', () => {
  it.each([
    ['127.0.0.1', 'private'], ['10.1.2.3', 'private'], ['172.16.0.1', 'private'], ['192.168.1.1', 'private'], ['169.254.169.254', 'private'],
    ['100.64.0.1', 'private'], ['100.100.100.200', 'private'], ['0.0.0.0', 'private'], ['224.0.0.1', 'private'], ['::1', 'private'], ['::', 'private'],
    ['fe80::1', 'private'], ['fd00:ec2::254', 'private'], ['::ffff:127.0.0.1', 'translated'], ['::ffff:8.8.8.8', 'translated'],
    ['64:ff9b::a9fe:a9fe', 'translated'],
    ['::ffff:0:7f00:1', 'translated'], ['168.63.129.16', 'private'], ['168.63.129.17', 'public'], ['::ffff:0:a9fe:a9fe', 'translated'], ['64:ff9b:1::7f00:1', 'translated'], ['3fff::1', 'private'], ['::7f00:1', 'private'], ['fec0::1', 'private'], ['2001:2::1', 'private'], ['8.8.8.8', 'public'], ['140.82.112.5', 'public'], ['2606:4700::1111', 'public'],
  ])('classifies %s as %s', (address, verdict) => {
    expect(classifyAddress(address)).toBe(verdict);
  });

  it('lets the deployment allowlist open one private range, never a translated address', () => {
    const guard = new NetworkGuard({ privateAllowlist: ['127.0.0.1/32'] });
    expect(guard.isAllowed('127.0.0.1')).toBe(true);
    expect(guard.isAllowed('127.0.0.2')).toBe(false);
    expect(guard.isAllowed('::ffff:127.0.0.1')).toBe(false);
    expect(guard.isAllowed('::ffff:0:7f00:1')).toBe(false);
    expect(guard.isAllowed('169.254.169.254')).toBe(false);
  });

  it('gives the same verdict from memory as fresh, for every kind of address, asked again and again past the memory bound', () => {
    const policy = new AddressPolicy(['127.0.0.1/32', '10.9.0.0/16']);
    const addresses = ['127.0.0.1', '127.0.0.2', '10.9.1.1', '10.8.1.1', '8.8.8.8', '::ffff:127.0.0.1', '::1', '169.254.169.254', '64:ff9b::a9fe:a9fe', 'not-an-ip', '2606:4700::1111'];
    const fresh = addresses.map((a) => new AddressPolicy(['127.0.0.1/32', '10.9.0.0/16']).isAllowed(a));
    expect(fresh).toEqual([true, false, true, false, true, false, false, false, false, false, true]);
    for (let round = 0; round < 3; round++) {
      expect(addresses.map((a) => policy.isAllowed(a))).toEqual(fresh);
      // Enough other addresses to overflow the memory between rounds.
      for (let i = 0; i < REMEMBERED_VERDICTS + 10; i++) expect(policy.isAllowed(`10.${i >> 8 & 255}.${i & 255}.1`)).toBe(i >> 8 === 9);
    }
  });

  it('refuses a hostname whose DNS answer is private, and one with any private answer', async () => {
    const guard = new NetworkGuard({ privateAllowlist: [], resolver: async (h) => (h === 'mixed.test' ? [{ address: '8.8.8.8', family: 4 }, { address: '10.0.0.1', family: 4 }] : [{ address: '192.168.0.10', family: 4 }]) });
    await expect(guard.resolve('internal.test')).rejects.toMatchObject({ code: 'FORBIDDEN', details: { reason: 'address_not_allowed' } });
    await expect(guard.resolve('mixed.test')).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('refuses metadata host names before asking DNS', async () => {
    const resolver = jest.fn(async () => [{ address: '8.8.8.8', family: 4 as const }]);
    const guard = new NetworkGuard({ privateAllowlist: [], resolver });
    await expect(guard.resolve('metadata.google.internal')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(resolver).not.toHaveBeenCalled();
  });

  it('pins the one public answer it checked', async () => {
    const guard = new NetworkGuard({ privateAllowlist: [], resolver: async () => [{ address: '140.82.112.5', family: 4 }] });
    await expect(guard.resolve('api.github.com')).resolves.toEqual({ address: '140.82.112.5', family: 4 });
  });

  it('says which DNS failure it was in the details, the message unchanged', async () => {
    const failing = (code: string) => new NetworkGuard({ privateAllowlist: [], resolver: async (h) => Promise.reject(Object.assign(new Error(`getaddrinfo ${code} ${h}`), { code })) });
    const message = "the upstream host 'nowhere.test' could not be resolved";
    await expect(failing('ENOTFOUND').resolve('nowhere.test')).rejects.toMatchObject({ code: 'UPSTREAM_ERROR', message, details: { cause_code: 'ENOTFOUND' } });
    await expect(failing('EAI_AGAIN').resolve('nowhere.test')).rejects.toMatchObject({ code: 'UPSTREAM_ERROR', message, details: { cause_code: 'EAI_AGAIN' } });
    const empty = new NetworkGuard({ privateAllowlist: [], resolver: async () => [] });
    await expect(empty.resolve('nowhere.test')).rejects.toMatchObject({ code: 'UPSTREAM_ERROR', message, details: undefined });
  });

  it('sees decimal, hex and octal IPv4 spellings as the address they are (WHATWG URL)', () => {
    expect(new URL('http://2130706433/').hostname).toBe('127.0.0.1');
    expect(new URL('http://0x7f.0.0.1/').hostname).toBe('127.0.0.1');
    expect(new URL('http://0177.0.0.1/').hostname).toBe('127.0.0.1');
    expect(new URL('http://2852039166/').hostname).toBe('169.254.169.254');
  });

  describe('answer cache', () => {
    const answer = (address: string) => [{ address, family: 4 as const }];

    it('asks DNS once for concurrent and repeated calls while the answer is fresh, then again', async () => {
      const resolver = jest.fn(async () => {
        await new Promise((r) => setTimeout(r, 10));
        return answer('140.82.112.5');
      });
      const guard = new NetworkGuard({ privateAllowlist: [], resolver, answerTtlMs: 60 });
      const first = await Promise.all([guard.resolve('api.github.com'), guard.resolve('API.github.com.'), guard.resolve('api.github.com')]);
      expect(first).toEqual([answer('140.82.112.5')[0], answer('140.82.112.5')[0], answer('140.82.112.5')[0]]);
      await guard.resolve('api.github.com');
      expect(resolver).toHaveBeenCalledTimes(1);
      await new Promise((r) => setTimeout(r, 80));
      await guard.resolve('api.github.com');
      expect(resolver).toHaveBeenCalledTimes(2);
    });

    it('keeps no failure and no empty answer: the next call asks again', async () => {
      let calls = 0;
      const guard = new NetworkGuard({
        privateAllowlist: [],
        resolver: async () => {
          calls += 1;
          if (calls === 1) throw Object.assign(new Error('getaddrinfo EAI_AGAIN x'), { code: 'EAI_AGAIN' });
          if (calls === 2) return [];
          return answer('140.82.112.5');
        },
      });
      await expect(guard.resolve('flaky.test')).rejects.toMatchObject({ code: 'UPSTREAM_ERROR', details: { cause_code: 'EAI_AGAIN' } });
      await expect(guard.resolve('flaky.test')).rejects.toMatchObject({ code: 'UPSTREAM_ERROR' });
      await expect(guard.resolve('flaky.test')).resolves.toEqual(answer('140.82.112.5')[0]);
      expect(calls).toBe(3);
    });

    it('refuses a cached private answer on every use', async () => {
      const resolver = jest.fn(async () => answer('10.0.0.7'));
      const guard = new NetworkGuard({ privateAllowlist: [], resolver });
      for (let i = 0; i < 3; i++) await expect(guard.resolve('sneaky.test')).rejects.toMatchObject({ code: 'FORBIDDEN' });
      expect(resolver).toHaveBeenCalledTimes(1);
    });

    it('with a zero TTL asks on every call', async () => {
      const resolver = jest.fn(async () => answer('140.82.112.5'));
      const guard = new NetworkGuard({ privateAllowlist: [], resolver, answerTtlMs: 0 });
      await guard.resolve('a.test');
      await guard.resolve('a.test');
      expect(resolver).toHaveBeenCalledTimes(2);
    });
  });
});
