import { Keyring, KeyringError } from './keyring';
import { EnvelopeCipher, type SealedSecret } from './envelope-cipher';

const bind = { operatorId: 'op_1', recordId: 'scon_1' };

describe('vault envelope encryption', () => {
  const k1 = Keyring.generateEntry('k1');
  const k2 = Keyring.generateEntry('k2');

  it('round-trips a secret with a fresh data key each time', async () => {
    const cipher = new EnvelopeCipher(Keyring.parse(k1));
    const a = await cipher.seal(bind, 'ghp_secret');
    const b = await cipher.seal(bind, 'ghp_secret');
    expect(a.dk).not.toEqual(b.dk);
    expect(a.ct).not.toEqual(b.ct);
    expect(JSON.stringify(a)).not.toContain('ghp_secret');
    expect(a.kid).toBe('k1');
    await expect(cipher.open(bind, a)).resolves.toBe('ghp_secret');
  });

  it('refuses a ciphertext moved to another record', async () => {
    const cipher = new EnvelopeCipher(Keyring.parse(k1));
    const sealed = await cipher.seal(bind, 'secret');
    await expect(cipher.open({ ...bind, recordId: 'scon_2' }, sealed)).rejects.toMatchObject({ code: 'INTERNAL_ERROR' });
  });

  it('refuses a ciphertext moved to another operator', async () => {
    const cipher = new EnvelopeCipher(Keyring.parse(k1));
    const sealed = await cipher.seal(bind, 'secret');
    await expect(cipher.open({ ...bind, operatorId: 'op_2' }, sealed)).rejects.toMatchObject({ code: 'INTERNAL_ERROR' });
  });

  it('refuses a data key swapped in from another secret (both layers are bound)', async () => {
    const cipher = new EnvelopeCipher(Keyring.parse(k1));
    const mine = await cipher.seal(bind, 'secret');
    const other = await cipher.seal({ ...bind, recordId: 'scon_9' }, 'other');
    const franken: SealedSecret = { ...mine, dk: other.dk };
    await expect(cipher.open(bind, franken)).rejects.toMatchObject({ code: 'INTERNAL_ERROR' });
  });

  it('refuses a tampered ciphertext', async () => {
    const cipher = new EnvelopeCipher(Keyring.parse(k1));
    const sealed = await cipher.seal(bind, 'secret');
    const ct = Buffer.from(sealed.ct, 'base64');
    ct[0] = ct[0]! ^ 1;
    await expect(cipher.open(bind, { ...sealed, ct: ct.toString('base64') })).rejects.toMatchObject({ code: 'INTERNAL_ERROR' });
  });

  it('refuses a truncated authentication tag (only the full 16 bytes count)', async () => {
    const cipher = new EnvelopeCipher(Keyring.parse(k1));
    const sealed = await cipher.seal(bind, 'secret-value');
    for (const bytes of [4, 8, 12, 15]) {
      const tag = Buffer.from(sealed.tag, 'base64').subarray(0, bytes).toString('base64');
      await expect(cipher.open(bind, { ...sealed, tag })).rejects.toMatchObject({ code: 'INTERNAL_ERROR' });
    }
    await expect(cipher.open(bind, sealed)).resolves.toBe('secret-value');
  });

  it('rotates without downtime: add a key, old secrets still open, re-wrap, retire the old key', async () => {
    const before = new EnvelopeCipher(Keyring.parse(k1));
    const sealed = await before.seal(bind, 'xoxb-token');
    // Step 1: the new key is put first; the old one stays for reading.
    const during = new EnvelopeCipher(Keyring.parse(`${k2},${k1}`));
    expect(during.needsRewrap(sealed)).toBe(true);
    await expect(during.open(bind, sealed)).resolves.toBe('xoxb-token');
    const fresh = await during.seal(bind, 'new-secret');
    expect(fresh.kid).toBe('k2');
    // Step 2: background re-wrap touches only the wrapped data key.
    const rewrapped = await during.rewrap(bind, sealed);
    expect(rewrapped.kid).toBe('k2');
    expect(rewrapped.ct).toBe(sealed.ct);
    expect(during.needsRewrap(rewrapped)).toBe(false);
    // Step 3: the old key is retired; everything still opens.
    const after = new EnvelopeCipher(Keyring.parse(k2));
    await expect(after.open(bind, rewrapped)).resolves.toBe('xoxb-token');
    await expect(after.open(bind, fresh)).resolves.toBe('new-secret');
    // A secret that missed the re-wrap fails loudly instead of silently.
    await expect(after.open(bind, sealed)).rejects.toThrow(/not in the keyring/);
  });

  it('rejects malformed keyrings without echoing key material', () => {
    expect(() => Keyring.parse('k1:c2hvcnQ=')).toThrow(KeyringError);
    expect(() => Keyring.parse('nocolon')).toThrow(/entry 1/);
    expect(() => Keyring.parse(`${k1},${k1}`)).toThrow(/twice/);
    try {
      Keyring.parse('k1:c2hvcnQ=');
    } catch (err) {
      expect((err as Error).message).not.toContain('c2hvcnQ=');
    }
  });
});
