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
import { EnvelopeCipher, Keyring, RefreshOnMiss, publicJwkOf, publicKeyOfJwk, type SealedSecret } from '@stack/security';

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
  /** An unknown kid re-reads the table (a key another replica has just made), shared and paced. */
  private readonly lookup = new RefreshOnMiss<KeyObject>({ lookup: (kid) => this.publicKeys.get(kid)?.key, refresh: () => this.reload() });
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

  /**
   * The public key of a kid. An unknown kid waits for a re-read of the table that starts after it
   * was asked for — a key another replica has just made is there, since nothing is signed with a
   * key before its row commits — and only then is answered unknown (RefreshOnMiss: shared,
   * paced, a kid still unknown remembered for a second).
   */
  publicKey(kid: string): Promise<KeyObject | undefined> {
    return this.lookup.get(kid);
  }

  async jwks(): Promise<PassportJwk[]> {
    if (Date.now() - this.lastReload > 10_000) await this.reload();
    const now = Date.now();
    return [...this.publicKeys.values()].filter((k) => k.publishUntil === null || k.publishUntil > now).map((k) => k.jwk);
  }

  /**
   * Retires the active key and makes a new one; returns the new kid. Two rotations at the same
   * moment (two admins, two replicas) make one new key: the one that loses the race answers with
   * the kid the winner made, as if that rotation had been its own.
   */
  async rotate(): Promise<string> {
    const kid = await this.retireAndReplace();
    if (kid) {
      this.kit.logger.info({ kid }, 'passport signing key rotated');
      return kid;
    }
    // Lost the race: the key the winner made is active (read after its commit, which the loser's UPDATE waited for).
    const active = await this.signingKey();
    this.kit.logger.info({ kid: active.kid }, 'passport signing key rotated by a concurrent request');
    return active.kid;
  }

  /**
   * Retires the active key — only if it is `kid`, when given — and inserts a new active one in
   * the same transaction. With `kid`, only the replica whose UPDATE retires that very key goes
   * on to insert the next one (undefined for the others). Without, the one whose UPDATE found no
   * active key left because a concurrent rotation retired it and committed its own (the unique
   * index on the active key) inserts nothing either: undefined. Returns the new kid.
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
      const inserted = await runStatement(
        m,
        `INSERT INTO ${this.table()} (kid, status, public_x, private_sealed) VALUES ($1, 'active', $2, $3::jsonb) ON CONFLICT (status) WHERE status = 'active' DO NOTHING RETURNING kid`,
        [fresh.kid, fresh.x, JSON.stringify(fresh.sealed)],
      );
      return inserted.rows.length === 1;
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
