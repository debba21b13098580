/**
 * Device cookies (the OWASP pattern against lockout attacks): a browser that has signed in to an
 * account gets a signed cookie naming it. Failed sign-ins from that browser count against the
 * browser alone, so an attacker who locks the account out for everyone else (five failures, from
 * anywhere) cannot lock out the member on a browser they have used before. The cookie holds no
 * secret of the account: a random nonce, a tag of the email, and an HMAC over both.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

export const DEVICE_COOKIE = 'stack_device';
/** How long a browser stays known: 180 days from its last sign-in. */
export const DEVICE_COOKIE_MAX_AGE_S = 180 * 24 * 3600;

export class DeviceCookies {
  private readonly key: Buffer;

  constructor(internalSecret: Buffer) {
    this.key = Buffer.from(hkdfSync('sha256', internalSecret, 'stack-auth', 'device-cookie-v1', 32));
  }

  /** A new cookie value for a browser that just signed in as `email`. */
  issue(email: string): string {
    const body = `v1.${randomBytes(16).toString('base64url')}.${tagOf(email)}`;
    return `${body}.${this.mac(body)}`;
  }

  /** The browser's nonce when `value` is a cookie this deployment issued for `email`, else undefined. */
  nonceFor(value: string | undefined, email: string): string | undefined {
    if (!value || value.length > 200) return undefined;
    const parts = value.split('.');
    if (parts.length !== 4 || parts[0] !== 'v1') return undefined;
    const body = parts.slice(0, 3).join('.');
    const given = Buffer.from(parts[3]!);
    const expected = Buffer.from(this.mac(body));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    return parts[2] === tagOf(email) ? parts[1] : undefined;
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}

function tagOf(email: string): string {
  return createHash('sha256').update(email.trim().toLowerCase()).digest('base64url').slice(0, 22);
}
