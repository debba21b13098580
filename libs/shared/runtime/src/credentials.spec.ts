import { generateKeyPairSync, randomBytes } from 'node:crypto';

import type { BusConnection } from '@stack/bus';
import type { StackConfig } from '@stack/config';
import { PASSPORT_COMMANDS, StackError, type CallerContext, type PassportClaims } from '@stack/contracts';
import { CallerContextSigner, RevocationState, signPassport, type RevocationEntry, type RevocationFeed } from '@stack/security';

import { Credentials, jwtTyp } from './credentials.module';
import type { RevocationHost } from './revocation.module';

describe('Credentials (REST callers)', () => {
  const secret = randomBytes(32);
  const requests: unknown[] = [];
  let revoked: (() => void) | undefined;
  const bus = {
    request: async (_cmd: unknown, payload: { api_key: string }) => {
      requests.push(payload);
      // Answers as a stale or faulty auth could: a standard member's key listing stack:admin.
      if (payload.api_key === 'sk_live_standard') return { api_key_id: 'key_2', operator_id: 'op_1', member_id: 'mem_2', role: 'standard', scopes: ['stack:services', 'stack:admin'] };
      if (payload.api_key === 'sk_live_admin_only') return { api_key_id: 'key_3', operator_id: 'op_1', member_id: 'mem_3', role: 'readonly', scopes: ['stack:admin'] };
      if (payload.api_key !== 'sk_live_good') throw new StackError('UNAUTHORIZED', 'unknown API key');
      return { api_key_id: 'key_1', operator_id: 'op_1', member_id: 'mem_1', role: 'admin', scopes: ['stack:passports', 'stack:admin'] };
    },
  };
  const connection = { forService: () => bus } as unknown as BusConnection;
  const config = { internalSecret: secret.toString('base64'), publicUrl: 'http://stack.test', services: ['passport'] } as unknown as StackConfig;
  const host = {
    state: {
      check: () => undefined,
      revocationOf: () => undefined,
      assertFresh: () => undefined,
      onRevoked: (l: () => void) => {
        revoked = l;
        return () => undefined;
      },
    },
  } as unknown as RevocationHost;
  const credentials = new Credentials(connection, config, host);

  beforeEach(() => requests.splice(0));

  it('refuses a missing, malformed or unknown credential', async () => {
    await expect(credentials.restCaller(undefined)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(credentials.restCaller('Basic abc')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(credentials.restCaller('Bearer not.a.token')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('resolves an API key through auth on the bus, caches it, and forgets it on a revocation', async () => {
    const expected = { issuer: 'auth', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:passports', 'stack:admin'] };
    expect((await credentials.restCaller('Bearer sk_live_good')).caller).toEqual(expected);
    expect((await credentials.restCaller('Bearer sk_live_good')).caller).toEqual(expected);
    expect(requests).toHaveLength(1);
    revoked?.();
    await credentials.restCaller('Bearer sk_live_good');
    expect(requests).toHaveLength(2);
    await expect(credentials.restCaller('Bearer sk_live_bad')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it("limits an API key to the scopes its member's role allows, and refuses one left with none", async () => {
    expect((await credentials.restCaller('Bearer sk_live_standard')).caller.scopes).toEqual(['stack:services']);
    // No scope must never mean every scope.
    await expect(credentials.restCaller('Bearer sk_live_admin_only')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('accepts a caller context signed with the internal secret, and only that secret', async () => {
    const caller: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_2', member_id: 'mem_2', scopes: [] };
    expect((await credentials.restCaller(`Bearer ${new CallerContextSigner(secret).sign(caller)}`)).caller).toEqual(caller);
    await expect(credentials.restCaller(`Bearer ${new CallerContextSigner(randomBytes(32)).sign(caller)}`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('refuses a service’s own (system) context lifted off the bus', async () => {
    const system: CallerContext = { issuer: 'passport', kind: 'system', scopes: [] };
    await expect(credentials.restCaller(`Bearer ${new CallerContextSigner(secret).sign(system)}`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  describe('passports signed with a key this node has not fetched yet', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const x = (publicKey.export({ format: 'jwk' }) as { x: string }).x;
    const passport = (jti: string): string => {
      const now = Math.floor(Date.now() / 1000);
      const claims: PassportClaims = {
        jti,
        sub: 'agt_1',
        iss: config.publicUrl,
        aud: config.publicUrl,
        iat: now,
        exp: now + 900,
        stk: { operator_id: 'op_1', agent_id: 'agt_1', agent_name: 'bot', member_id: 'mem_1', session_id: 'ses_1', issued_at_ms: Date.now(), chain: [], delegation_depth: 0, intent_summary: '', intent_services: [], services: [{ connection_id: 'scon_1', service_id: 'github', service_name: 'GitHub', scopes: ['read'], constraints: [] }] },
      };
      return `Bearer ${signPassport(claims, { kid: 'k1', privateKey })}`;
    };
    const node = (answer: () => Promise<unknown>) => {
      const asked: unknown[] = [];
      const jwksBus = {
        request: async (cmd: unknown) => {
          asked.push(cmd);
          return answer();
        },
      };
      const state = { ...host.state, check: () => undefined, revocationOf: () => undefined };
      return { creds: new Credentials({ forService: () => jwksBus } as unknown as BusConnection, config, { state } as unknown as RevocationHost), asked };
    };
    const jwks = async () => {
      await new Promise((r) => setTimeout(r, 50));
      return { keys: [{ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: 'k1', x }] };
    };

    it('lets every request that arrives during the key fetch wait for it: one fetch, all accepted', async () => {
      const { creds, asked } = node(jwks);
      const got = await Promise.all(['ppt_a', 'ppt_b', 'ppt_c'].map((jti) => creds.restCaller(passport(jti))));
      expect(got.map((g) => g.caller.passport_jti)).toEqual(['ppt_a', 'ppt_b', 'ppt_c']);
      expect(asked).toEqual([PASSPORT_COMMANDS.getJwks]);
    });

    it('gives every request with one passport the same frozen caller, and each passport its own', async () => {
      const { creds } = node(jwks);
      const token = passport('ppt_same');
      const [a, b] = [await creds.restCaller(token), await creds.restCaller(token)];
      expect(a.caller).toBe(b.caller);
      // An agent reaches only the connections its passport grants.
      expect(a.caller).toEqual({ issuer: 'passport', kind: 'agent', operator_id: 'op_1', member_id: 'mem_1', agent_id: 'agt_1', passport_jti: 'ppt_same', session_id: 'ses_1', scopes: ['stack:services', 'stack:dropoffs'], allowed_connections: ['scon_1'] });
      expect(Object.isFrozen(a.caller) && Object.isFrozen(a.caller.scopes)).toBe(true);
      expect(() => (a.caller.scopes as string[]).push('stack:admin')).toThrow(TypeError);
      const other = await creds.restCaller(passport('ppt_other'));
      expect(other.caller).not.toBe(a.caller);
      expect(other.caller.passport_jti).toBe('ppt_other');
    });

    it('accepts at once a passport under a key made just after this node fetched the set (a rotation), and bounds made-up kids', async () => {
      const next = generateKeyPairSync('ed25519');
      const x2 = (next.publicKey.export({ format: 'jwk' }) as { x: string }).x;
      const served = [{ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: 'k1', x }];
      const { creds, asked } = node(async () => ({ keys: [...served] }));
      expect((await creds.restCaller(passport('ppt_before'))).caller.passport_jti).toBe('ppt_before');
      // The passport service rotates: its new passports name k2 from now on.
      served.push({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: 'k2', x: x2 });
      const now = Math.floor(Date.now() / 1000);
      const claims = { jti: 'ppt_after', sub: 'agt_1', iss: config.publicUrl, aud: config.publicUrl, iat: now, exp: now + 900, stk: { operator_id: 'op_1', agent_id: 'agt_1', agent_name: 'bot', member_id: 'mem_1', session_id: 'ses_1', issued_at_ms: Date.now(), chain: [], delegation_depth: 0, intent_summary: '', intent_services: [], services: [] } } as PassportClaims;
      expect((await creds.restCaller(`Bearer ${signPassport(claims, { kid: 'k2', privateKey: next.privateKey })}`)).caller.passport_jti).toBe('ppt_after');
      expect(asked).toHaveLength(2);
      // Forty made-up kids at once share one fetch; asked again at once, none fetches.
      const forged = (kid: string) => `Bearer ${signPassport({ ...claims, jti: `ppt_${kid}` }, { kid, privateKey: next.privateKey })}`;
      const kids = Array.from({ length: 40 }, (_, i) => `kx${i}`);
      for (const r of await Promise.allSettled(kids.map((k) => creds.restCaller(forged(k))))) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'UNAUTHORIZED' } });
      expect(asked).toHaveLength(3);
      for (const r of await Promise.allSettled(kids.map((k) => creds.restCaller(forged(k))))) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'UNAUTHORIZED' } });
      expect(asked).toHaveLength(3);
    });

    it('fails with the bus error when the fetch fails, and fetches again on the next request', async () => {
      let fail = true;
      const { creds, asked } = node(async () => {
        if (fail) throw new StackError('BUS_TIMEOUT', 'passport did not answer');
        return jwks();
      });
      await expect(creds.restCaller(passport('ppt_d'))).rejects.toMatchObject({ code: 'BUS_TIMEOUT' });
      fail = false;
      expect((await creds.restCaller(passport('ppt_e'))).caller.passport_jti).toBe('ppt_e');
      expect(asked).toHaveLength(2);
    });
  });
});

describe('Credentials: API keys against the node’s revocation state', () => {
  // Auth's answers as one that has not seen the revocation yet would give (a reply in flight, a
  // lagging replica): only the node's own revocation state can refuse the key.
  const answers: Record<string, unknown> = {
    sk_live_one: { api_key_id: 'key_1', operator_id: 'op_1', member_id: 'mem_1', role: 'admin', scopes: ['stack:services'] },
    sk_live_two: { api_key_id: 'key_2', operator_id: 'op_1', member_id: 'mem_1', role: 'admin', scopes: ['stack:services'] },
    sk_live_three: { api_key_id: 'key_3', operator_id: 'op_1', member_id: 'mem_2', role: 'standard', scopes: ['stack:services'] },
  };
  let asked = 0;
  const bus = {
    request: async (_cmd: unknown, payload: { api_key: string }) => {
      asked++;
      return answers[payload.api_key];
    },
  };
  const config = { internalSecret: randomBytes(32).toString('base64'), publicUrl: 'http://stack.test', services: ['credential-proxy'] } as unknown as StackConfig;
  const feed = {} as RevocationFeed;
  let state: RevocationState;
  let credentials: Credentials;
  const revocation = (over: Partial<RevocationEntry>): RevocationEntry => ({ id: `rev_${Math.random()}`, kind: 'api_key', value: 'key_1', operator_id: 'op_1', revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 330_000, ...over });

  beforeEach(() => {
    asked = 0;
    state = new RevocationState({ feed, maxStalenessMs: 60_000 });
    // Fresh: a heartbeat of an empty stream.
    state.receive({ type: 'heartbeat', seq: 1, at_ms: Date.now(), last_seq: 0 });
    credentials = new Credentials({ forService: () => bus } as unknown as BusConnection, config, { state } as unknown as RevocationHost);
  });

  it('refuses a revoked key (kind api_key) as soon as the entry is applied, cached or asked again, and only that key', async () => {
    expect((await credentials.restCaller('Bearer sk_live_one')).caller.member_id).toBe('mem_1');
    expect((await credentials.restCaller('Bearer sk_live_two')).caller.member_id).toBe('mem_1');
    expect(asked).toBe(2);
    state.apply(revocation({ value: 'key_1' }));
    await expect(credentials.restCaller('Bearer sk_live_one')).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: 'API key is unknown or revoked' });
    expect((await credentials.restCaller('Bearer sk_live_two')).caller.member_id).toBe('mem_1');
  });

  it('refuses a cached key whose id is in the set even if the cache was not dropped', async () => {
    await credentials.restCaller('Bearer sk_live_one');
    // Straight into the set: no listener runs, the cache entry stays.
    state.set.add(revocation({ value: 'key_1' }));
    await expect(credentials.restCaller('Bearer sk_live_one')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect(asked).toBe(1);
  });

  it("refuses every key of a revoked member, whenever the key was made, and leaves other members' keys alone", async () => {
    await credentials.restCaller('Bearer sk_live_one');
    state.apply(revocation({ kind: 'member', value: 'mem_1', revoked_at_ms: Date.now() - 60_000 }));
    await expect(credentials.restCaller('Bearer sk_live_one')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(credentials.restCaller('Bearer sk_live_two')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await credentials.restCaller('Bearer sk_live_three')).caller.member_id).toBe('mem_2');
  });

  it("keeps an operator-wide passport revocation from signing members' API keys out", async () => {
    state.apply(revocation({ kind: 'operator', value: 'op_1' }));
    expect((await credentials.restCaller('Bearer sk_live_one')).caller.member_id).toBe('mem_1');
  });
});

describe('jwtTyp', () => {
  const header = (h: unknown) => Buffer.from(JSON.stringify(h)).toString('base64url');
  it('reads the typ of a JWT header, lower-cased, the same every time, and nothing from what is not one', () => {
    const token = `${header({ alg: 'EdDSA', typ: 'Stack-Passport+JWT' })}.e30.sig`;
    expect(jwtTyp(token)).toBe('stack-passport+jwt');
    expect(jwtTyp(token)).toBe('stack-passport+jwt');
    for (const bad of ['', 'nodot', '.e30.x', `${header(null)}.e30.x`, `${header({ typ: 7 })}.e30.x`, '!!!.e30.x', `${header({ alg: 'none' })}.e30.x`]) expect(jwtTyp(bad)).toBeUndefined();
  });

  it('answers right through a flood of distinct headers', () => {
    for (let i = 0; i < 600; i++) expect(jwtTyp(`${header({ typ: `t${i}`, n: i })}.e30.x`)).toBe(`t${i}`);
    expect(jwtTyp(`${header({ typ: 't5', n: 5 })}.e30.x`)).toBe('t5');
  });
});
