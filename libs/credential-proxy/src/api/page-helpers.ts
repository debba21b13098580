/**
 * What the credential proxy's HTML pages share (the connect-link page, the upstream OAuth
 * confirmation and callback pages): their headers, a constant-time comparison of form tokens,
 * and reading a cookie.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import type { Request, Response } from 'express';

/**
 * HTML page headers; `formTarget` is an origin a form on the page may end up at (the provider,
 * after STACK's redirect). `Referrer-Policy: same-origin`, not `no-referrer`: under no-referrer a
 * browser posts the page's forms with `Origin: null`, which the Origin check refuses; same-origin
 * still sends nothing to other sites.
 */
export function pageHeaders(res: Response, formTarget?: string): void {
  const formAction = formTarget ? `'self' ${formTarget}` : "'self'";
  res.set({
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'same-origin',
    'Content-Security-Policy': `default-src 'none'; style-src 'unsafe-inline'; form-action ${formAction}; frame-ancestors 'none'`,
  });
}

/** `a` equals `b`, compared in constant time; false when `a` is absent. */
export function sameSecret(a: string | undefined, b: string): boolean {
  if (!a) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A cookie's value; undefined when absent or not valid percent-encoding. */
export function cookieValue(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) {
      try {
        return decodeURIComponent(v.join('='));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * The name of a cookie that belongs to one link or flow (`secret`: its token or state): its own
 * name, so two open in one browser do not overwrite each other's, and the secret is not in it.
 */
export function linkCookieName(prefix: string, secret: string): string {
  return `${prefix}_${createHash('sha256').update(secret).digest('base64url').slice(0, 16)}`;
}
