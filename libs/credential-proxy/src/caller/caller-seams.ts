/**
 * The seams through which the proxy learns who is calling and what they may do. Issue 3 (API
 * keys, OAuth access tokens) and issue 5 (passports, revocation, in-flight registry) plug their
 * verifiers in here; nothing else in the proxy changes.
 *
 * - Bus callers (the MCP gateway): the runtime verifies the signed caller context before the
 *   handler runs; it is used as it is.
 * - REST callers, until issue 3 wires API keys and access tokens: `Authorization: Bearer <signed
 *   caller context>` — the same HS256 JWS over STACK_INTERNAL_SECRET the bus carries
 *   (`typ: stack-caller+jwt`, 60 s lifetime). Only a holder of the internal secret (a STACK
 *   service, an operator's own tooling, the tests) can mint one, so it authenticates no less than
 *   the bus does; it is the one REST credential this session can justify.
 * - Passports: a `PassportAuthority` (issue 5's PassportVerifier fits it as it is). Without one, a
 *   `passport_token` is refused with UNAUTHORIZED rather than ignored.
 */
import { StackError, type CallerContext, type PassportClaims } from '@stack/contracts';
import { CallerContextSigner, InFlightRegistry, type CredentialSubject, type InFlightCall } from '@stack/security';

import type { HostResolver } from '../proxy/network-guard';

export interface RestCallerAuthenticator {
  /** The caller behind an `Authorization` header, or StackError UNAUTHORIZED. */
  authenticate(authorization: string | undefined): Promise<CallerContext>;
}

export interface PassportAuthority {
  /** Signature, typ, aud, expiry and revocation — or StackError UNAUTHORIZED / PASSPORT_EXPIRED / PASSPORT_REVOKED. */
  verify(token: string): Promise<{ claims: PassportClaims; subject: CredentialSubject }>;
}

export interface InFlightTracker {
  track(subject: CredentialSubject): InFlightCall;
}

export interface CredentialProxySeams {
  restAuthenticator?: RestCallerAuthenticator;
  passportAuthority?: PassportAuthority;
  inFlight?: InFlightTracker;
  /** DNS seam (tests answer a name with a private address). Default: the system resolver. */
  resolver?: HostResolver;
}

export class SignedContextAuthenticator implements RestCallerAuthenticator {
  private readonly signer: CallerContextSigner;

  constructor(internalSecret: string) {
    this.signer = new CallerContextSigner(Buffer.from(internalSecret, 'base64'));
  }

  async authenticate(authorization: string | undefined): Promise<CallerContext> {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    if (!m) throw new StackError('UNAUTHORIZED', 'send Authorization: Bearer <credential>');
    try {
      return this.signer.verify(m[1]);
    } catch {
      throw new StackError('UNAUTHORIZED', 'the bearer credential is not valid here');
    }
  }
}

export const NO_PASSPORT_AUTHORITY: PassportAuthority = {
  async verify() {
    throw new StackError('UNAUTHORIZED', 'passports cannot be checked by this node yet');
  },
};

export function defaultInFlight(): InFlightTracker {
  return new InFlightRegistry();
}
