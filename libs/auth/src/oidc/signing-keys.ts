/**
 * Auth's own signing keys for access tokens (RFC 9068), distinct from the passport keys: an
 * Ed25519 key generated on first start, stored sealed with the vault's envelope encryption (the
 * STACK_MASTER_KEYS keyring), and shared by every auth replica. Creation runs under a
 * transaction-scoped advisory lock so replicas starting together agree on one key.
 */
import { createHash, generateKeyPairSync, randomBytes, type JsonWebKey } from 'node:crypto';

import { qualifiedTable, schemaOf } from '@stack/persistence';
import { EnvelopeCipher, Keyring, type SealedSecret } from '@stack/security';
import type { DataSource } from 'typeorm';

export interface SigningJwk extends JsonWebKey {
  kid: string;
  alg: string;
  use: 'sig';
}

const BINDING_OPERATOR = 'stack-auth';
const LOCK_KEY = 0x5354_4b41; // "STKA"

export async function loadOrCreateSigningKeys(dataSource: DataSource, masterKeys: string): Promise<SigningJwk[]> {
  const cipher = new EnvelopeCipher(Keyring.parse(masterKeys));
  const table = qualifiedTable(schemaOf(dataSource), 'signing_keys');

  const read = async (): Promise<SigningJwk[]> => {
    const rows = (await dataSource.query(`SELECT kid, alg, sealed FROM ${table} WHERE retired_at IS NULL ORDER BY created_at DESC`)) as { kid: string; alg: string; sealed: SealedSecret }[];
    const keys: SigningJwk[] = [];
    for (const row of rows) {
      const jwk = JSON.parse(await cipher.open({ operatorId: BINDING_OPERATOR, recordId: row.kid }, row.sealed)) as JsonWebKey;
      keys.push({ ...jwk, kid: row.kid, alg: row.alg, use: 'sig' });
    }
    return keys;
  };

  const existing = await read();
  if (existing.length) return existing;

  // Everything slow (key generation, sealing) happens before the transaction opens.
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = createHash('sha256').update(`${jwk.x}.${randomBytes(8).toString('hex')}`).digest('base64url').slice(0, 16);
  const sealed = await cipher.seal({ operatorId: BINDING_OPERATOR, recordId: kid }, JSON.stringify(jwk));
  await dataSource.transaction(async (m) => {
    await m.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    const rows = (await m.query(`SELECT 1 FROM ${table} WHERE retired_at IS NULL`)) as unknown[];
    if (!rows.length) await m.query(`INSERT INTO ${table} (kid, alg, sealed) VALUES ($1, 'EdDSA', $2::jsonb)`, [kid, JSON.stringify(sealed)]);
  });
  return read();
}

/** The public half of each key, as /oauth/jwks shows it. */
export function publicJwks(keys: readonly SigningJwk[]): JsonWebKey[] {
  return keys.map(({ kty, crv, x, kid, alg, use }) => ({ kty, crv, x, kid, alg, use }));
}
