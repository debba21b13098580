import { randomBytes } from 'node:crypto';

import { DeviceCookies } from './device-cookie';

describe('DeviceCookies', () => {
  const cookies = new DeviceCookies(randomBytes(32));

  it('recognises its own cookie for the account it was issued for, in any case', () => {
    const value = cookies.issue('Owner@Example.test');
    expect(cookies.nonceFor(value, 'owner@example.test')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(cookies.nonceFor(cookies.issue('a@example.test'), 'a@example.test')).not.toBe(cookies.nonceFor(value, 'owner@example.test'));
  });

  it('refuses a cookie of another account, of another deployment, altered, or malformed', () => {
    const value = cookies.issue('owner@example.test');
    expect(cookies.nonceFor(value, 'other@example.test')).toBeUndefined();
    expect(new DeviceCookies(randomBytes(32)).nonceFor(value, 'owner@example.test')).toBeUndefined();
    const [v, nonce, tag, mac] = value.split('.');
    // The first character: it always carries six bits (a base64url string's last one may carry
    // padding bits only, and was already the letter written over it one time in four).
    const altered = (text: string) => `${text[0] === 'A' ? 'B' : 'A'}${text.slice(1)}`;
    expect(altered(nonce!)).not.toBe(nonce);
    expect(cookies.nonceFor([v, altered(nonce!), tag, mac].join('.'), 'owner@example.test')).toBeUndefined();
    expect(cookies.nonceFor([v, nonce, altered(tag!), mac].join('.'), 'owner@example.test')).toBeUndefined();
    expect(cookies.nonceFor([v, nonce, tag, altered(mac!)].join('.'), 'owner@example.test')).toBeUndefined();
    for (const bad of [undefined, '', 'v1.a.b', 'v2.a.b.c', `${value}.x`, 'x'.repeat(500)]) expect(cookies.nonceFor(bad, 'owner@example.test')).toBeUndefined();
  });
});
