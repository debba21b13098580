/**
 * The passport signing keys: Ed25519, generated here, the private half sealed with the master
 * keyring (the vault's envelope cipher, AES-256-GCM) in `signing_keys`. One key is active and
 * signs; it is rotated on a schedule (STACK_PASSPORT_KEY_ROTATION_SECONDS) and on demand, and a
 * retired key stays in the JWKS until every passport it could have signed has expired.
 * Replicas share the table: a unique index keeps one active key, and a replica that meets an
 * unknown `kid` re-reads the table.
 */
import { generateKeyPairSync, createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';

import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';

import { PASSPORT_TTL, type PassportJwk } from '@stack/contracts';
import { qualifiedTable, runStatement, schemaOf } from '@stack/persistence';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import { EnvelopeCipher, Keyring, publicJwkOf, publicKeyOfJwk, type SealedSecret } from '@stack/security';

/** Retired keys are published this long past the longest passport TTL (clock skew between nodes). */
const PUBLISH_MARGIN_MS = 5 * 60_000;
const BINDING_OPERATOR = 'stack-passport-signing-keys';

interface KeyRow {
  kid: string;
  status: 'active' | 'retired';
  public_x: string;
  private_sealed: SealedSecret;
  created_at: Date;
  publish_until: Date | null;
}

@Injectable()
export class SigningKeys implements OnModuleInit, OnModuleDestroy {
  private readonly cipher: EnvelopeCipher;
  private active?: { kid: string; privateKey: KeyObject; createdAt: number };
  private publicKeys = new Map<string, { key: KeyObject; jwk: PassportJwk; publishUntil: number | null }>();
  private lastReload = 0;
  private timer?: NodeJS.Timeout;

  constructor(@Inject(serviceKitToken('passport')) private readonly kit: ServiceKit) {
    if (!kit.config.masterKeys) throw new Error('STACK_MASTER_KEYS is required to seal the passport signing keys');
    this.cipher = new EnvelopeCipher(Keyring.parse(kit.config.masterKeys));
  }

  private table(): string {
    return qualifiedTable(schemaOf(this.kit.dataSource), 'signing_keys');
  }

  async onModuleInit(): Promise<void> {
    await this.reload();
    if (!this.active) await this.insertActive();
    const every = Math.max(1000, Math.min(60_000, Math.floor(this.kit.config.passportKeyRotationMs / 4)));
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  async signingKey(): Promise<{ kid: string; privateKey: KeyObject }> {
    if (!this.active) await this.reload();
    if (!this.active) await this.insertActive();
    return this.active!;
  }

  /** The public key of a kid; an unknown kid makes one re-read (at most once a second). */
  async publicKey(kid: string): Promise<KeyObject | undefined> {
    const hit = this.publicKeys.get(kid);
    if (hit) return hit.key;
    if (Date.now() - this.lastReload > 1000) await this.reload();
    return this.publicKeys.get(kid)?.key;
  }

  async jwks(): Promise<PassportJwk[]> {
    if (Date.now() - this.lastReload > 10_000) await this.reload();
    const now = Date.now();
    return [...this.publicKeys.values()].filter((k) => k.publishUntil === null || k.publishUntil > now).map((k) => k.jwk);
  }

  /** Retires the active key and makes a new one; returns the new kid. */
  async rotate(): Promise<string> {
    const kid = (await this.retireAndReplace())!;
    this.kit.logger.info({ kid }, 'passport signing key rotated');
    return kid;
  }

  /**
   * Retires the active key — only if it is `kid`, when given — and inserts a new active one in
   * the same transaction. With `kid`, only the replica whose UPDATE retires that very key goes
   * on to insert the next one (undefined for the others). Returns the new kid.
   */
  private async retireAndReplace(kid?: string): Promise<string | undefined> {
    const fresh = await this.generate();
    const replaced = await this.kit.dataSource.transaction(async (m) => {
      const r = await runStatement(
        m,
        `UPDATE ${this.table()} SET status = 'retired', retired_at = now(), publish_until = now() + ($1::text || ' milliseconds')::interval WHERE status = 'active' AND ($2::text IS NULL OR kid = $2)`,
        [String(PASSPORT_TTL.maxSeconds * 1000 + PUBLISH_MARGIN_MS), kid ?? null],
      );
      if (kid !== undefined && r.affected !== 1) return false;
      await m.query(`INSERT INTO ${this.table()} (kid, status, public_x, private_sealed) VALUES ($1, 'active', $2, $3::jsonb)`, [fresh.kid, fresh.x, JSON.stringify(fresh.sealed)]);
      return true;
    });
    await this.reload();
    return replaced ? fresh.kid : undefined;
  }

  private async tick(): Promise<void> {
    try {
      await this.reload();
      if (this.active && Date.now() - this.active.createdAt >= this.kit.config.passportKeyRotationMs) await this.retireAndReplace(this.active.kid);
      await this.kit.dataSource.query(`DELETE FROM ${this.table()} WHERE status = 'retired' AND publish_until < now()`);
    } catch (err) {
      this.kit.logger.warn({ err: (err as Error).message }, 'passport signing key maintenance failed; will retry');
    }
  }

  private async insertActive(): Promise<void> {
    const fresh = await this.generate();
    await this.kit.dataSource.query(`INSERT INTO ${this.table()} (kid, status, public_x, private_sealed) VALUES ($1, 'active', $2, $3::jsonb) ON CONFLICT (status) WHERE status = 'active' DO NOTHING`, [
      fresh.kid,
      fresh.x,
      JSON.stringify(fresh.sealed),
    ]);
    await this.reload();
  }

  private async generate(): Promise<{ kid: string; x: string; sealed: SealedSecret }> {
    const kid = `ppk_${randomBytes(12).toString('base64url')}`;
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const x = publicJwkOf(kid, publicKey).x;
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const sealed = await this.cipher.seal({ operatorId: BINDING_OPERATOR, recordId: kid }, pem);
    return { kid, x, sealed };
  }

  private async reload(): Promise<void> {
    this.lastReload = Date.now();
    const rows = (await this.kit.dataSource.query(`SELECT kid, status, public_x, private_sealed, created_at, publish_until FROM ${this.table()}`)) as KeyRow[];
    const keys = new Map<string, { key: KeyObject; jwk: PassportJwk; publishUntil: number | null }>();
    let active: SigningKeys['active'];
    for (const r of rows) {
      const jwk: PassportJwk = { kty: 'OKP', crv: 'Ed25519', x: r.public_x, kid: r.kid, alg: 'EdDSA', use: 'sig' };
      keys.set(r.kid, { key: this.publicKeys.get(r.kid)?.key ?? publicKeyOfJwk(jwk), jwk, publishUntil: r.publish_until ? new Date(r.publish_until).getTime() : null });
      if (r.status === 'active') {
        const privateKey = this.active?.kid === r.kid ? this.active.privateKey : createPrivateKey(await this.cipher.open({ operatorId: BINDING_OPERATOR, recordId: r.kid }, r.private_sealed));
        active = { kid: r.kid, privateKey, createdAt: new Date(r.created_at).getTime() };
      }
    }
    this.publicKeys = keys;
    if (active) this.active = active;
  }
}
