/**
 * Who is calling a REST endpoint of the passport service, from `Authorization: Bearer …`
 * (resolved by the runtime's shared Credentials):
 * - an API key `sk_live_…`, resolved by auth over the bus (`auth.resolve_api_key`; revoked
 *   keys fail there);
 * - an OAuth access token for the REST resource (`typ: at+jwt`, aud `${STACK_PUBLIC_URL}/v1`),
 *   verified locally with auth's JWKS, then checked against this node's revocation state
 *   (its member, grant and client; a stale node refuses with REVOCATION_STATE_STALE);
 * - a caller context signed with STACK_INTERNAL_SECRET (`typ: stack-caller+jwt`, what services
 *   put on the bus): an operator-scoped credential only a holder of the internal secret can
 *   make, used by operators' tooling and by the test suites.
 */
import { Injectable } from '@nestjs/common';

import { StackError, type CallerContext } from '@stack/contracts';
import { Credentials } from '@stack/runtime';

export interface CallerResolver {
  /** The caller of an `Authorization` header, undefined without one; throws UNAUTHORIZED for a bad one. */
  resolve(authorization: string | undefined): Promise<CallerContext | undefined>;
}

export const CALLER_RESOLVER = Symbol.for('stack.passport.caller-resolver');

@Injectable()
export class BearerCallerResolver implements CallerResolver {
  constructor(private readonly credentials: Credentials) {}

  async resolve(authorization: string | undefined): Promise<CallerContext | undefined> {
    if (!authorization) return undefined;
    const resolved = await this.credentials.restCaller(authorization);
    // Passports act through the proxy and drop-offs, not on the passport service's own API.
    if (resolved.kind === 'passport') throw new StackError('UNAUTHORIZED', 'a passport cannot manage agents or passports; use an API key or an access token');
    return resolved.caller;
  }
}
