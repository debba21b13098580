/**
 * Who is calling a REST route of the audit service: an API key, an OAuth access token for the
 * REST API, a passport, or an operator's signed caller context — resolved by the runtime's
 * shared Credentials (the provider stays a seam so tests can bind their own).
 */
import type { Request } from 'express';

import type { CallerContext } from '@stack/contracts';
import type { Credentials } from '@stack/runtime';

export const AUDIT_CALLER_RESOLVER = Symbol.for('stack.audit.caller-resolver');

export interface AuditCallerResolver {
  /** Returns the caller, or throws StackError UNAUTHORIZED. */
  resolve(req: Request): Promise<CallerContext>;
}

export function credentialsCallerResolver(credentials: Credentials): AuditCallerResolver {
  return { resolve: async (req) => (await credentials.restCaller(req.headers.authorization)).caller };
}
