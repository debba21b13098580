/**
 * Envelope encryption of one secret (DESIGN.md §5): AES-256-GCM under a fresh 32-byte data key,
 * the data key wrapped by a `KeyEncryptionProvider`. The operator id and the record id are bound
 * as additional authenticated data to both layers, so a ciphertext copied to another row or
 * another operator fails to open instead of leaking a credential across tenants.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import { StackError } from '@stack/contracts';

import type { KeyEncryptionProvider } from './keyring';

export interface SecretBinding {
  operatorId: string;
  recordId: string;
}

/** What is stored: plain JSON, every binary field base64. `v` lets a later format sit beside it. */
export interface SealedSecret {
  v: 1;
  /** Id of the key-encryption key that wrapped `dk`. */
  kid: string;
  dk: string;
  iv: string;
  ct: string;
  tag: string;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

function aadOf(binding: SecretBinding, layer: 'data' | 'key'): Buffer {
  for (const [name, value] of Object.entries(binding)) {
    if (typeof value !== 'string' || value.length === 0 || value.includes('\n')) throw new StackError('INTERNAL_ERROR', `vault: ${name} must be a non-empty single-line string`);
  }
  // Newline-separated: ids never hold one, so no two bindings produce the same bytes.
  return Buffer.from(`stack-vault/v1/${layer}\n${binding.operatorId}\n${binding.recordId}`, 'utf8');
}

export class EnvelopeCipher {
  constructor(private readonly kek: KeyEncryptionProvider) {}

  get currentKeyId(): string {
    return this.kek.currentKeyId;
  }

  async seal(binding: SecretBinding, plaintext: string): Promise<SealedSecret> {
    const dataKey = randomBytes(32);
    try {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', dataKey, iv);
      cipher.setAAD(aadOf(binding, 'data'));
      const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const wrapped = await this.kek.wrap(dataKey, aadOf(binding, 'key'));
      return { v: 1, kid: wrapped.keyId, dk: wrapped.wrapped.toString('base64'), iv: iv.toString('base64'), ct: ct.toString('base64'), tag: cipher.getAuthTag().toString('base64') };
    } finally {
      dataKey.fill(0);
    }
  }

  async open(binding: SecretBinding, sealed: SealedSecret): Promise<string> {
    if (sealed?.v !== 1) throw new StackError('INTERNAL_ERROR', 'vault: unknown sealed-secret format');
    const dataKey = await this.kek.unwrap({ keyId: sealed.kid, wrapped: Buffer.from(sealed.dk, 'base64') }, aadOf(binding, 'key'));
    try {
      // The full 16-byte tag only: Node otherwise accepts a tag cut to 4 bytes, which a forger needs far fewer tries to hit.
      const decipher = createDecipheriv('aes-256-gcm', dataKey, Buffer.from(sealed.iv, 'base64'), { authTagLength: TAG_BYTES });
      decipher.setAAD(aadOf(binding, 'data'));
      decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
      return Buffer.concat([decipher.update(Buffer.from(sealed.ct, 'base64')), decipher.final()]).toString('utf8');
    } catch {
      throw new StackError('INTERNAL_ERROR', 'vault: a secret could not be decrypted (wrong record or operator, or tampered)');
    } finally {
      dataKey.fill(0);
    }
  }

  /** True when the secret's data key is wrapped by a key other than the current one. */
  needsRewrap(sealed: SealedSecret): boolean {
    return sealed.kid !== this.kek.currentKeyId;
  }

  /**
   * Re-wraps the data key under the current KEK. The secret's own ciphertext is not touched and
   * the plaintext is never produced, so rotation can run in the background while reads go on.
   */
  async rewrap(binding: SecretBinding, sealed: SealedSecret): Promise<SealedSecret> {
    if (!this.needsRewrap(sealed)) return sealed;
    const aad = aadOf(binding, 'key');
    const dataKey = await this.kek.unwrap({ keyId: sealed.kid, wrapped: Buffer.from(sealed.dk, 'base64') }, aad);
    try {
      const wrapped = await this.kek.wrap(dataKey, aad);
      return { ...sealed, kid: wrapped.keyId, dk: wrapped.wrapped.toString('base64') };
    } finally {
      dataKey.fill(0);
    }
  }
}
