import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

import { StackError } from '@stack/contracts';

import { AccessTokenVerifier } from './access-token-verifier';

const issuer = 'https://stack.example';
const audience = `${issuer}/v1`;

function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' } };
}

function token(privateKey: KeyObject, kid: string, claims: Record<string, unknown>, typ = 'at+jwt', alg = 'EdDSA'): string {
  const now = Math.floor(Date.now() / 1000);
  const header = Buffer.from(JSON.stringify({ alg, typ, kid })).toString('base64url');
  const body = Buffer.from(
    JSON.stringify({ iss: issuer, aud: audience, sub: 'mem_1', client_id: 'c1', jti: 'j1', scope: 'stack:services stack:admin', iat: now, exp: now + 60, stk: { operator_id: 'op_1', member_id: 'mem_1', grant_id: 'g1' }, ...claims }),
  ).toString('base64url');
  return `${header}.${body}.${sign(null, Buffer.from(`${header}.${body}`), privateKey).toString('base64url')}`;
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StackError);
    expect((err as StackError).code).toBe('UNAUTHORIZED');
    return (err as StackError).message;
  }
  throw new Error('expected a refusal');
}

describe('AccessTokenVerifier', () => {
  const k1 = keyPair('k1');
  let served: object[] = [k1.jwk];
  let fetches = 0;
  const fetchImpl = (async () => {
    fetches += 1;
    return new Response(JSON.stringify({ keys: served }), { status: 200 });
  }) as typeof fetch;

  beforeEach(() => {
    served = [k1.jwk];
    fetches = 0;
  });

  it('accepts a valid token and returns its claims, fetching the JWKS once', async () => {
    const v = new AccessTokenVerifier({ issuer, audience, fetchImpl });
    const claims = await v.verify(token(k1.privateKey, 'k1', {}));
    expect(claims).toMatchObject({ sub: 'mem_1', client_id: 'c1', scopes: ['stack:services', 'stack:admin'], stk: { operator_id: 'op_1', member_id: 'mem_1', grant_id: 'g1' } });
    await v.verify(token(k1.privateKey, 'k1', {}));
    expect(fetches).toBe(1);
  });

  it('refuses the wrong audience, issuer, typ, an expired token and a bad signature', async () => {
    const v = new AccessTokenVerifier({ issuer, audience, fetchImpl });
    expect(await reason(v.verify(token(k1.privateKey, 'k1', { aud: `${issuer}/mcp` })))).toMatch(/another resource/);
    expect(await reason(v.verify(token(k1.privateKey, 'k1', { iss: 'https://evil.example' })))).toMatch(/issuer/);
    expect(await reason(v.verify(token(k1.privateKey, 'k1', {}, 'passport+jwt')))).toMatch(/typ/);
    expect(await reason(v.verify(token(k1.privateKey, 'k1', { exp: Math.floor(Date.now() / 1000) - 60 })))).toMatch(/expired/);
    const other = keyPair('k1');
    expect(await reason(v.verify(token(other.privateKey, 'k1', {})))).toMatch(/signature/);
    expect(await reason(v.verify('not.a-token'))).toMatch(/malformed|JWS/);
  });

  it('refuses a valid token spelled with anything but base64url (which the decoder would skip)', async () => {
    const v = new AccessTokenVerifier({ issuer, audience, fetchImpl });
    const good = token(k1.privateKey, 'k1', {});
    const [h, p, sig] = good.split('.') as [string, string, string];
    await expect(v.verify(good)).resolves.toMatchObject({ sub: 'mem_1' });
    for (const spelled of [`${good} `, `${good}=`, `${h}.${p}.${sig.slice(0, 20)}\n${sig.slice(20)}`, `${h}.${p} .${sig}`]) {
      expect(await reason(v.verify(spelled))).toMatch(/not a JWS/);
    }
  });

  it('refetches the JWKS when a token names an unknown key (rotation), but not more often than allowed', async () => {
    const v = new AccessTokenVerifier({ issuer, audience, fetchImpl, minRefetchMs: 0 });
    await v.verify(token(k1.privateKey, 'k1', {}));
    const k2 = keyPair('k2');
    served = [k1.jwk, k2.jwk];
    await v.verify(token(k2.privateKey, 'k2', {}));
    expect(fetches).toBe(2);

    const slow = new AccessTokenVerifier({ issuer, audience, fetchImpl, minRefetchMs: 60_000 });
    served = [k1.jwk];
    await slow.verify(token(k1.privateKey, 'k1', {}));
    const k3 = keyPair('k3');
    served = [k1.jwk, k3.jwk];
    expect(await reason(slow.verify(token(k3.privateKey, 'k3', {})))).toMatch(/unknown key/);
  });

  it('refuses an alg that does not match the key, or that it does not accept, as UNAUTHORIZED (never a crypto error)', async () => {
    const v = new AccessTokenVerifier({ issuer, audience, fetchImpl });
    await v.verify(token(k1.privateKey, 'k1', {}));
    // An Ed25519 key named with ES256, whatever the signature.
    const [h, p] = token(k1.privateKey, 'k1', {}, 'at+jwt', 'ES256').split('.') as [string, string];
    for (const sig of ['AAAA', Buffer.alloc(64, 1).toString('base64url')]) {
      expect(await reason(v.verify(`${h}.${p}.${sig}`))).toMatch(/algorithm/);
    }
    for (const alg of ['RS256', 'HS256', 'none', 'ES384']) {
      expect(await reason(v.verify(token(k1.privateKey, 'k1', {}, 'at+jwt', alg)))).toMatch(/algorithm/);
    }
    // A P-256 key named with EdDSA; and the same key with ES256 but a P-384 curve.
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    served = [k1.jwk, { ...ec.publicKey.export({ format: 'jwk' }), kid: 'e1', use: 'sig' }, { ...ec384.publicKey.export({ format: 'jwk' }), kid: 'e2', use: 'sig' }];
    const ecv = new AccessTokenVerifier({ issuer, audience, fetchImpl });
    const ecToken = (kid: string, alg: string, key: KeyObject) => {
      const [eh, ep] = token(k1.privateKey, kid, {}, 'at+jwt', alg).split('.') as [string, string];
      return `${eh}.${ep}.${sign('sha256', Buffer.from(`${eh}.${ep}`), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    };
    await expect(ecv.verify(ecToken('e1', 'ES256', ec.privateKey))).resolves.toMatchObject({ sub: 'mem_1' });
    expect(await reason(ecv.verify(ecToken('e1', 'EdDSA', ec.privateKey)))).toMatch(/algorithm/);
    expect(await reason(ecv.verify(ecToken('e2', 'ES256', ec384.privateKey)))).toMatch(/algorithm/);
  });

  it('refuses a token whose alg differs from the one its key is published for', async () => {
    served = [{ ...k1.jwk, alg: 'ES256' }];
    const v = new AccessTokenVerifier({ issuer, audience, fetchImpl });
    expect(await reason(v.verify(token(k1.privateKey, 'k1', {})))).toMatch(/algorithm/);
  });
});
