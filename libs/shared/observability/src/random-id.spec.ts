import { randomId } from './random-id';

describe('randomId', () => {
  it('has the prefix and the base64url length of its bytes', () => {
    expect(randomId('req_', 12)).toMatch(/^req_[A-Za-z0-9_-]{16}$/);
    expect(randomId('aud_', 16)).toMatch(/^aud_[A-Za-z0-9_-]{22}$/);
  });

  it('never repeats across many pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50_000; i++) seen.add(randomId('x', 16));
    expect(seen.size).toBe(50_000);
  });

  it('is not a run of zero bytes after the pool is consumed', () => {
    const ids = Array.from({ length: 1000 }, () => randomId('', 16));
    expect(ids.filter((id) => id === 'AAAAAAAAAAAAAAAAAAAAAA')).toHaveLength(0);
  });

  it('refuses nonsense lengths', () => {
    expect(() => randomId('x', 0)).toThrow(RangeError);
    expect(() => randomId('x', 1.5)).toThrow(RangeError);
  });
});
