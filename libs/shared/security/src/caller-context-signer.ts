/**
 * Signs and verifies the caller context that rides on every bus message (DESIGN.md §2:
 * "inside, the bus is not trusted on its own"). A compact JWS with HS256 over the shared
 * internal secret: cheap enough to verify on every message (a few microseconds), and a
 * receiver acts only on a context some STACK service vouched for in the last minute (for an
 * event, the minute before its stream stored it).
 *
 * A context the bus carries is bound to its subject (`aud`): lifted off one message (any
 * reader of a stream sees the event headers) it is refused on every other subject and as a
 * REST credential, which takes only unbound contexts (operators' tooling signs those). What is
 * not bound is the message itself: within its minute, a context can ride on another message to
 * the same subject. Binding the message id would cost an HMAC per message on both sides.
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
  /** The bus subject the context was signed for; absent on an unbound (REST) token. */
  aud?: string;
}

interface Signed {
  token: string;
  madeAt: number;
  /** The subject it is bound to ('' for none). */
  aud: string;
}

export interface VerifyOptions {
  /**
   * The subject the message came on: the token must be bound to it, or unbound (made before
   * contexts were bound). Without it only an unbound token passes (a REST credential).
   */
  audience?: string;
  /** When the message was made durable (ms), for an event read from a stream: its context is judged as of then. Defaults to now. */
  at?: number;
}

export class CallerContextSigner {
  private readonly signed = new Map<string, Signed>();
  /**
   * The same context object skips the JSON key. A context made for one request is signed for one
   * subject (its entry, no map); a service's own system caller, for many (a map by subject).
   */
  private readonly signedByIdentity = new WeakMap<CallerContext, Signed | Map<string, Signed>>();
  private readonly verified = new Map<string, { context: CallerContext; exp: number; aud: string | undefined }>();

  constructor(
    private readonly secret: Buffer,
    private readonly ttlMs = DEFAULT_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {
    if (secret.length < 32) throw new Error('the internal secret must be at least 32 bytes');
  }

  /** Signs `context`, bound to the bus subject `audience` when given (unbound: a REST credential). */
  sign(context: CallerContext, audience?: string): string {
    const now = this.now();
    const aud = audience ?? '';
    const mine = this.signedByIdentity.get(context);
    const same = mine instanceof Map ? mine.get(aud) : mine?.aud === aud ? mine : undefined;
    if (same && now - same.madeAt < REUSE_MS) return same.token;
    const key = `${aud}\n${JSON.stringify(context)}`;
    let entry = this.signed.get(key);
    if (!entry || now - entry.madeAt >= REUSE_MS) {
      const claims: Claims = { ...context, iat: Math.floor(now / 1000), exp: Math.floor((now + this.ttlMs) / 1000), ...(audience !== undefined ? { aud: audience } : {}) };
      const body = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
      entry = { token: `${body}.${this.mac(body)}`, madeAt: now, aud };
      if (this.signed.size >= CACHE_LIMIT) this.signed.clear();
      this.signed.set(key, entry);
    }
    if (mine instanceof Map) mine.set(aud, entry);
    else if (!mine || mine.aud === aud) this.signedByIdentity.set(context, entry);
    else this.signedByIdentity.set(context, new Map([[mine.aud, mine], [aud, entry]]));
    return entry.token;
  }

  /** Returns the context, or throws StackError UNAUTHORIZED for a missing, forged, malformed, expired or elsewhere-bound token. */
  verify(token: unknown, options: VerifyOptions = {}): CallerContext {
    if (!token) throw new StackError('UNAUTHORIZED', 'bus message carries no caller context');
    if (typeof token !== 'string') throw new StackError('UNAUTHORIZED', 'malformed caller context');
    const atSec = (options.at ?? this.now()) / 1000;
    // NaN would pass every expiry comparison below.
    if (!Number.isFinite(atSec)) throw new StackError('UNAUTHORIZED', 'caller context cannot be judged without a time');
    const hit = this.verified.get(token);
    if (hit && hit.exp > atSec) return bound(hit.context, hit.aud, options.audience);
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
    if (!claims || typeof claims !== 'object') throw new StackError('UNAUTHORIZED', 'malformed caller context');
    if (typeof claims.exp !== 'number' || claims.exp <= atSec) throw new StackError('UNAUTHORIZED', 'caller context has expired');
    const { iat: _iat, exp, aud, ...context } = claims;
    if (aud !== undefined && typeof aud !== 'string') throw new StackError('UNAUTHORIZED', 'caller context has an invalid shape');
    if (!isCallerContext(context)) throw new StackError('UNAUTHORIZED', 'caller context has an invalid shape');
    if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
    this.verified.set(token, { context, exp, aud });
    return bound(context, aud, options.audience);
  }

  private mac(input: string): string {
    return createHmac('sha256', this.secret).update(input).digest('base64url');
  }
}

/** The context when its binding fits where it was presented. */
function bound(context: CallerContext, aud: string | undefined, audience: string | undefined): CallerContext {
  if (aud === undefined || aud === audience) return context;
  throw new StackError('UNAUTHORIZED', audience === undefined ? 'a caller context signed for a bus message is not a credential here' : 'caller context was signed for another subject');
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
