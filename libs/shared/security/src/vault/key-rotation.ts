/**
 * Key rotation without downtime (DESIGN.md §5), for any table of envelope-sealed values: a new key
 * is put first in STACK_MASTER_KEYS (the old one stays, so everything still opens), every value's
 * data key is re-wrapped under it in the background — the ciphertext untouched, the plaintext
 * never produced — and once nothing is wrapped by the old key it is removed from the keyring. A
 * row changed meanwhile (a token refresh, a collected drop-off) is skipped: it needs no re-wrap.
 */
import type { EnvelopeCipher, SealedSecret } from './envelope-cipher';

/** A sealed value and what it is bound to (operator and record id, the additional data). */
export interface SealedRow {
  id: string;
  operator_id: string;
  secret: SealedSecret;
}

/** What the rotation needs of a table of sealed values. */
export interface RewrapStore {
  /** Rows whose data key is wrapped by a key other than `currentKeyId`, in a stable order. */
  wrappedByOtherKeys(currentKeyId: string, limit: number): Promise<SealedRow[]>;
  /** Replaces `before` by `after` only if the row still holds `before`; false when it changed meanwhile. */
  swapSecret(id: string, before: SealedSecret, after: SealedSecret): Promise<boolean>;
}

export interface RewrapReport {
  rewrapped: number;
  skipped: number;
  failed: number;
}

export class KeyRotation {
  constructor(
    private readonly store: RewrapStore,
    private readonly cipher: EnvelopeCipher,
  ) {}

  async rewrapAll(options: { batch?: number; onError?: (id: string, err: unknown) => void } = {}): Promise<RewrapReport> {
    const batch = options.batch ?? 100;
    let rewrapped = 0;
    let skipped = 0;
    const failedIds = new Set<string>();
    for (;;) {
      const rows = (await this.store.wrappedByOtherKeys(this.cipher.currentKeyId, batch + failedIds.size)).filter((r) => !failedIds.has(r.id));
      if (rows.length === 0) break;
      for (const row of rows) {
        try {
          const next = await this.cipher.rewrap({ operatorId: row.operator_id, recordId: row.id }, row.secret);
          if (await this.store.swapSecret(row.id, row.secret, next)) rewrapped++;
          else skipped++;
        } catch (err) {
          // A key missing from the keyring, or a tampered row: report it, never loop on it.
          failedIds.add(row.id);
          options.onError?.(row.id, err);
        }
      }
    }
    return { rewrapped, skipped, failed: failedIds.size };
  }
}
