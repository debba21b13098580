/**
 * Encoding and signing of the passport token (DESIGN.md §3): a compact JWS with header
 * `{alg: EdDSA, typ: passport+jwt, kid}`, signed with node:crypto's Ed25519 (faster than a
 * JOSE library here, see DEPENDENCIES.md). The passport service signs; anyone verifies.
 */
import { createPublicKey, sign, type KeyObject } from 'node:crypto';

import { PASSPORT_ALG, PASSPORT_TYP, type PassportClaims, type PassportJwk } from '@stack/contracts';

export function signPassport(claims: PassportClaims, key: { kid: string; privateKey: KeyObject }): string {
  const header = Buffer.from(JSON.stringify({ alg: PASSPORT_ALG, typ: PASSPORT_TYP, kid: key.kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const input = `${header}.${payload}`;
  return `${input}.${sign(null, Buffer.from(input), key.privateKey).toString('base64url')}`;
}

/** The JWKS entry of an Ed25519 public key. */
export function publicJwkOf(kid: string, publicKey: KeyObject): PassportJwk {
  const jwk = publicKey.export({ format: 'jwk' }) as { x?: string; crv?: string };
  if (jwk.crv !== 'Ed25519' || !jwk.x) throw new Error('passport keys are Ed25519');
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid, alg: 'EdDSA', use: 'sig' };
}

export function publicKeyOfJwk(jwk: Pick<PassportJwk, 'x'>): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
}
