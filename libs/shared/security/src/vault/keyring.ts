/**
 * Key-encryption keys (KEKs) for the vault's envelope encryption (DESIGN.md §5). A data key is
 * wrapped by a `KeyEncryptionProvider`; the built-in one is a keyring parsed from
 * STACK_MASTER_KEYS (`id:base64key,…`, the first entry current). A KMS implements the same
 * interface: the vault never touches key material itself, only `wrap` and `unwrap`.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import { StackError } from '@stack/contracts';

export interface WrappedKey {
  /** Which KEK wrapped it; rotation re-wraps everything whose key is not the current one. */
  keyId: string;
  /** Opaque to the vault (for the keyring: iv ‖ tag ‖ ciphertext). */
  wrapped: Buffer;
}

export interface KeyEncryptionProvider {
  /** The key new data keys are wrapped with. */
  readonly currentKeyId: string;
  /** Every key this provider can still unwrap with. */
  readonly keyIds: readonly string[];
  wrap(dataKey: Buffer, aad: Buffer): Promise<WrappedKey>;
  /** Throws StackError INTERNAL_ERROR when the key is unknown or the wrapped bytes or AAD do not match. */
  unwrap(key: WrappedKey, aad: Buffer): Promise<Buffer>;
}

const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A parse error names the entry (by position and id) but never shows key material. */
export class KeyringError extends Error {
  override readonly name = 'KeyringError';
}

export class Keyring implements KeyEncryptionProvider {
  private readonly keys: ReadonlyMap<string, Buffer>;
  readonly currentKeyId: string;

  constructor(entries: ReadonlyArray<{ id: string; key: Buffer }>) {
    if (entries.length === 0) throw new KeyringError('keyring: at least one key is required');
    const keys = new Map<string, Buffer>();
    entries.forEach(({ id, key }, i) => {
      if (!KEY_ID.test(id)) throw new KeyringError(`keyring: entry ${i + 1} has an invalid id (letters, digits, _ . - only)`);
      if (key.length !== 32) throw new KeyringError(`keyring: key '${id}' must be 32 bytes (got ${key.length})`);
      if (keys.has(id)) throw new KeyringError(`keyring: key id '${id}' appears twice`);
      keys.set(id, Buffer.from(key));
    });
    this.keys = keys;
    this.currentKeyId = entries[0]!.id;
  }

  /** Parses STACK_MASTER_KEYS: `id:base64key` entries, comma-separated, first current. */
  static parse(value: string): Keyring {
    const entries = value
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean)
      .map((entry, i) => {
        const colon = entry.indexOf(':');
        if (colon <= 0) throw new KeyringError(`keyring: entry ${i + 1} is not \`id:base64key\``);
        return { id: entry.slice(0, colon), key: Buffer.from(entry.slice(colon + 1), 'base64') };
      });
    return new Keyring(entries);
  }

  /** A fresh keyring entry, for `stack admin rotate-master-key` and tests. */
  static generateEntry(id: string): string {
    return `${id}:${randomBytes(32).toString('base64')}`;
  }

  get keyIds(): readonly string[] {
    return [...this.keys.keys()];
  }

  async wrap(dataKey: Buffer, aad: Buffer): Promise<WrappedKey> {
    const kek = this.keys.get(this.currentKeyId)!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', kek, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { keyId: this.currentKeyId, wrapped: Buffer.concat([iv, cipher.getAuthTag(), body]) };
  }

  async unwrap(key: WrappedKey, aad: Buffer): Promise<Buffer> {
    const kek = this.keys.get(key.keyId);
    if (!kek) throw new StackError('INTERNAL_ERROR', `the vault key '${key.keyId}' is not in the keyring`);
    if (key.wrapped.length <= IV_BYTES + TAG_BYTES) throw new StackError('INTERNAL_ERROR', 'a wrapped data key is malformed');
    try {
      const decipher = createDecipheriv('aes-256-gcm', kek, key.wrapped.subarray(0, IV_BYTES));
      decipher.setAAD(aad);
      decipher.setAuthTag(key.wrapped.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(key.wrapped.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw new StackError('INTERNAL_ERROR', 'a data key could not be unwrapped (wrong key, record or operator)');
    }
  }
}
