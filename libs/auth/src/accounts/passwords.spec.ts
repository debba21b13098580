import { hashPassword, newApiKey, passwordProblem, verifyPassword } from './passwords';

describe('passwords', () => {
  it('hashes with scrypt and verifies only the right password', async () => {
    const hash = await hashPassword('correct horse battery');
    expect(hash).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(hash).not.toContain('correct');
    await expect(verifyPassword('correct horse battery', hash)).resolves.toBe(true);
    await expect(verifyPassword('correct horse batterY', hash)).resolves.toBe(false);
    await expect(verifyPassword('anything', undefined)).resolves.toBe(false);
  });

  it('refuses short passwords and makes API keys that are unique and prefixed', () => {
    expect(passwordProblem('short')).toMatch(/at least 10/);
    expect(passwordProblem('long enough pass')).toBeUndefined();
    const a = newApiKey();
    expect(a).toMatch(/^sk_live_[A-Za-z0-9_-]{43}$/);
    expect(newApiKey()).not.toBe(a);
  });
});
