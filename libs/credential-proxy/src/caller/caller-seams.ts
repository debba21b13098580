/**
 * The seams through which the proxy learns who is calling and what they may do. The service
 * module fills them with STACK's own credentials (see credentialSeams in credential-proxy.module);
 * a seam given to createCredentialProxyService replaces the one it names, and nothing else in the
 * proxy changes.
 *
 * - Bus callers (the MCP gateway): the runtime verifies the signed caller context before the
 *   handler runs; it is used as it is.
 * - REST callers: a `RestCallerAuthenticator` turns the `Authorization` header into the caller
 *   (API keys, OAuth access tokens and the operators' signed caller context).
 * - Passports: a `PassportAuthority` checks signature, audience, expiry and revocation.
 * - Calls in flight: an `InFlightTracker`, so a revocation cuts the calls made with the passport.
 */
import type { CallerContext, PassportClaims } from '@stack/contracts';
import type { CredentialSubject, HostResolver, InFlightCall } from '@stack/security';

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

/** Replacements for the module's own seams; any left out keeps STACK's. */
export interface CredentialProxySeams {
  restAuthenticator?: RestCallerAuthenticator;
  passportAuthority?: PassportAuthority;
  inFlight?: InFlightTracker;
  /** DNS seam (tests answer a name with a private address). Default: the system resolver. */
  resolver?: HostResolver;
}

/** The seams the proxy runs with: the caller seams always filled, DNS optional. */
export interface FilledSeams extends CredentialProxySeams {
  restAuthenticator: RestCallerAuthenticator;
  passportAuthority: PassportAuthority;
  inFlight: InFlightTracker;
}
