/**
 * Key rotation without downtime (DESIGN.md §5): a new key is put first in STACK_MASTER_KEYS (the
 * old one stays, so everything still opens), every connection's data key is re-wrapped under it
 * in the background — the secret's ciphertext untouched, the plaintext never produced — and once
 * nothing is wrapped by the old key it is removed from the keyring. A row changed meanwhile (a
 * token refresh) is skipped: its new secret is already under the current key.
 */
import type { EnvelopeCipher } from '@stack/security';

import type { ConnectionRepository } from '../connections/connection.repository';

export interface RewrapReport {
  rewrapped: number;
  skipped: number;
  failed: number;
}

export class VaultRotation {
  constructor(
    private readonly repo: ConnectionRepository,
    private readonly cipher: EnvelopeCipher,
  ) {}

  async rewrapAll(options: { batch?: number; onError?: (id: string, err: unknown) => void } = {}): Promise<RewrapReport> {
    const batch = options.batch ?? 100;
    let rewrapped = 0;
    let skipped = 0;
    const failedIds = new Set<string>();
    for (;;) {
      const rows = (await this.repo.wrappedByOtherKeys(this.cipher.currentKeyId, batch + failedIds.size)).filter((r) => !failedIds.has(r.id));
      if (rows.length === 0) break;
      for (const row of rows) {
        try {
          const next = await this.cipher.rewrap({ operatorId: row.operator_id, recordId: row.id }, row.secret);
          if (await this.repo.swapSecret(row.id, row.secret, next)) rewrapped++;
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
