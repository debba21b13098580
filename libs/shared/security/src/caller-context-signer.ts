/**
 * Signs and verifies the caller context that rides on every bus message (DESIGN.md §2:
 * "inside, the bus is not trusted on its own"). A compact JWS with HS256 over the shared
 * internal secret: cheap enough to verify on every message (a few microseconds), and a
 * receiver acts only on a context some STACK service vouched for in the last minute.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

import { StackError, isServiceName, type CallerContext } from '@stack/contracts';

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'stack-caller+jwt' })).toString('base64url');
const DEFAULT_TTL_MS = 60_000;
/** A signed token is reused for this long before a fresh one is made (well inside its TTL). */
const REUSE_MS = 20_000;
const CACHE_LIMIT = 10_000;

interface Claims extends CallerContext {
  iat: number;
  exp: number;
}

export class CallerContextSigner {
  private readonly signed = new Map<string, { token: string; madeAt: number }>();
  /** The same context object (a service's own system caller, say) skips the JSON key. */
  private readonly signedByIdentity = new WeakMap<CallerContext, { token: string; madeAt: number }>();
  private readonly verified = new Map<string, { context: CallerContext; exp: number }>();

  constructor(
    private readonly secret: Buffer,
    private readonly ttlMs = DEFAULT_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {
    if (secret.length < 32) throw new Error('the internal secret must be at least 32 bytes');
  }

  sign(context: CallerContext): string {
    const now = this.now();
    const same = this.signedByIdentity.get(context);
    if (same && now - same.madeAt < REUSE_MS) return same.token;
    const key = JSON.stringify(context);
    const hit = this.signed.get(key);
    if (hit && now - hit.madeAt < REUSE_MS) {
      this.signedByIdentity.set(context, hit);
      return hit.token;
    }
    const claims: Claims = { ...context, iat: Math.floor(now / 1000), exp: Math.floor((now + this.ttlMs) / 1000) };
    const body = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const token = `${body}.${this.mac(body)}`;
    if (this.signed.size >= CACHE_LIMIT) this.signed.clear();
    const entry = { token, madeAt: now };
    this.signed.set(key, entry);
    this.signedByIdentity.set(context, entry);
    return token;
  }

  /** Returns the context, or throws StackError UNAUTHORIZED for a missing, forged, malformed or expired token. */
  verify(token: string | undefined): CallerContext {
    if (!token) throw new StackError('UNAUTHORIZED', 'bus message carries no caller context');
    const nowSec = this.now() / 1000;
    const hit = this.verified.get(token);
    if (hit && hit.exp > nowSec) return hit.context;
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== HEADER) throw new StackError('UNAUTHORIZED', 'malformed caller context');
    const expected = Buffer.from(this.mac(`${parts[0]}.${parts[1]}`));
    const given = Buffer.from(parts[2] ?? '');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw new StackError('UNAUTHORIZED', 'caller context signature is invalid');
    let claims: Claims;
    try {
      claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as Claims;
    } catch {
      throw new StackError('UNAUTHORIZED', 'malformed caller context');
    }
    if (typeof claims.exp !== 'number' || claims.exp <= nowSec) throw new StackError('UNAUTHORIZED', 'caller context has expired');
    const { iat: _iat, exp, ...context } = claims;
    if (!isCallerContext(context)) throw new StackError('UNAUTHORIZED', 'caller context has an invalid shape');
    if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
    this.verified.set(token, { context, exp });
    return context;
  }

  private mac(input: string): string {
    return createHmac('sha256', this.secret).update(input).digest('base64url');
  }
}

function isCallerContext(value: Record<string, unknown>): value is CallerContext {
  const kinds = ['member', 'agent', 'system'];
  if (typeof value.issuer !== 'string' || !isServiceName(value.issuer) || typeof value.kind !== 'string' || !kinds.includes(value.kind)) return false;
  if (!Array.isArray(value.scopes) || !value.scopes.every((s) => typeof s === 'string')) return false;
  for (const k of ['operator_id', 'member_id', 'agent_id', 'client_id', 'passport_jti', 'session_id']) {
    if (value[k] !== undefined && typeof value[k] !== 'string') return false;
  }
  const allowed = value.allowed_connections;
  if (allowed !== undefined && (!Array.isArray(allowed) || !allowed.every((c) => typeof c === 'string'))) return false;
  return true;
}
