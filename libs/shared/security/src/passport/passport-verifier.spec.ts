import { generateKeyPairSync, sign } from 'node:crypto';

import type { PassportClaims } from '@stack/contracts';

import { RevocationState } from '../revocation/revocation-state';
import { PassportVerifier } from './passport-verifier';
import { signPassport } from './passport-token';

const AUD = 'http://stack.test';
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');

function claims(over: Partial<PassportClaims['stk']> = {}, top: Partial<PassportClaims> = {}): PassportClaims {
  const now = Math.floor(Date.now() / 1000);
  return {
    jti: 'ppt_1',
    sub: 'agt_1',
    iss: AUD,
    aud: AUD,
    iat: now,
    exp: now + 900,
    stk: { operator_id: 'op_1', agent_id: 'agt_1', agent_name: 'bot', member_id: 'mem_1', session_id: 'ses_1', issued_at_ms: Date.now(), chain: [], delegation_depth: 0, intent_summary: '', intent_services: [], services: [], ...over },
    ...top,
  };
}

function verifier(revocations?: RevocationState) {
  let lookups = 0;
  const v = new PassportVerifier({
    audience: AUD,
    keys: (kid) => {
      lookups++;
      return kid === 'k1' ? publicKey : undefined;
    },
    revocations,
  });
  return { v, lookups: () => lookups };
}

describe('PassportVerifier', () => {
  it('accepts a good passport, then answers from the cache without verifying the signature again', async () => {
    const { v, lookups } = verifier();
    const token = signPassport(claims(), { kid: 'k1', privateKey });
    expect((await v.verify(token)).claims.jti).toBe('ppt_1');
    expect((await v.verify(token)).subject).toMatchObject({ jti: 'ppt_1', agent_id: 'agt_1', session_id: 'ses_1' });
    expect(lookups()).toBe(1);
  });

  it('hits its cache only with the very token it checked: one changed byte anywhere is verified afresh and refused', async () => {
    const { v, lookups } = verifier();
    const token = signPassport(claims(), { kid: 'k1', privateKey });
    await v.verify(token);
    const [h, p, sig] = token.split('.') as [string, string, string];
    const flip = (segment: string, at: number) => segment.slice(0, at) + (segment[at] === 'A' ? 'B' : 'A') + segment.slice(at + 1);
    for (const tampered of [`${h}.${flip(p, 10)}.${sig}`, `${h}.${p}.${flip(sig, 5)}`, `${flip(h, 3)}.${p}.${sig}`, `${token} `, `${token}=`, `${h}.${p}.${sig.slice(0, 40)}\n${sig.slice(40)}`]) {
      await expect(v.verify(tampered)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    }
    expect(lookups()).toBeGreaterThan(1);
    // The tampered tokens sharing its signature segment (its cache key) left the checked one cached.
    const before = lookups();
    expect((await v.verify(token)).claims.jti).toBe('ppt_1');
    expect(lookups()).toBe(before);
  });

  it('refuses a signature spelled non-canonically (spare bits of its last base64url character set), cached token or not', async () => {
    const token = signPassport(claims(), { kid: 'k1', privateKey });
    const [h, p, sig] = token.split('.') as [string, string, string];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(sig[sig.length - 1]!);
    // 64 bytes in 86 characters: the last one carries 2 bits and 4 the decoder ignores.
    const variants = [1, 2, 4, 8, 15].map((bits) => `${h}.${p}.${sig.slice(0, -1)}${alphabet[last ^ bits]}`);
    for (const v of variants) expect(Buffer.from(v.split('.')[2]!, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
    for (const v of variants) await expect(verifier().v.verify(v)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    const { v } = verifier();
    await v.verify(token);
    for (const variant of variants) await expect(v.verify(variant)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('refuses a cached passport once it expires, as a rejected promise, and forgets it', async () => {
    let now = Date.now();
    const v = new PassportVerifier({ audience: AUD, keys: () => publicKey, now: () => now });
    const token = signPassport(claims({}, { exp: Math.floor(now / 1000) + 60 }), { kid: 'k1', privateKey });
    await v.verify(token);
    now += 61_000;
    const pending = v.verify(token);
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).rejects.toMatchObject({ code: 'PASSPORT_EXPIRED' });
    // Forgotten: verified afresh, the expiry is found again.
    await expect(v.authenticate(token)).rejects.toMatchObject({ code: 'PASSPORT_EXPIRED' });
  });

  it.each([
    ['a forged signature', () => signPassport(claims(), { kid: 'k1', privateKey: other.privateKey }), 'UNAUTHORIZED'],
    ['an unknown kid', () => signPassport(claims(), { kid: 'k9', privateKey }), 'UNAUTHORIZED'],
    ['another audience', () => signPassport(claims({}, { aud: 'http://elsewhere' }), { kid: 'k1', privateKey }), 'UNAUTHORIZED'],
    ['an expired passport', () => signPassport(claims({}, { exp: Math.floor(Date.now() / 1000) - 1 }), { kid: 'k1', privateKey }), 'PASSPORT_EXPIRED'],
    ['garbage', () => 'a.b', 'UNAUTHORIZED'],
    ['a chain longer than its depth says', () => signPassport(claims({ chain: ['ppt_0'], delegation_depth: 0 }), { kid: 'k1', privateKey }), 'UNAUTHORIZED'],
    [
      'another typ',
      () => {
        const h = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' })).toString('base64url');
        const p = Buffer.from(JSON.stringify(claims())).toString('base64url');
        return `${h}.${p}.${sign(null, Buffer.from(`${h}.${p}`), privateKey).toString('base64url')}`;
      },
      'UNAUTHORIZED',
    ],
  ])('refuses %s', async (_what, make, code) => {
    await expect(verifier().v.verify(make())).rejects.toMatchObject({ code });
  });

  it('consults the revocation state on every use, cached or not, and refuses on a stale node', async () => {
    const feed = { lastSequence: async () => 0, snapshot: async () => ({ seq: 0, entries: [] }), follow: async () => ({ stop: async () => undefined }) };
    const state = new RevocationState({ feed, maxStalenessMs: 60_000 });
    state.start();
    expect(await state.whenFresh(1000)).toBe(true);
    const { v } = verifier(state);
    const child = signPassport(claims({ chain: ['ppt_parent'], delegation_depth: 1 }), { kid: 'k1', privateKey });
    await v.verify(child);
    state.apply({ id: 'rev_1', kind: 'jti', value: 'ppt_parent', operator_id: 'op_1', revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 60_000 });
    await expect(v.verify(child)).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    await state.stop();
    const stale = new RevocationState({ feed, maxStalenessMs: 60_000 });
    await expect(verifier(stale).v.verify(signPassport(claims(), { kid: 'k1', privateKey }))).rejects.toMatchObject({ code: 'REVOCATION_STATE_STALE' });
  });
});
