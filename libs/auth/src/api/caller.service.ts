/**
 * Who is calling auth's REST API: an API key (`sk_live_…`) or an access token issued for the
 * REST API (`aud` = `${public}/v1`). A token whose grant was revoked, or whose member was, is
 * refused at once: auth checks its own tables, not only the signature.
 */
import { Injectable } from '@nestjs/common';
import { StackError } from '@stack/contracts';
import { bearerOf } from '@stack/runtime';
import type { Request } from 'express';

import { AccountsService, canAdminister, type MemberRecord } from '../accounts/accounts.service';
import { API_KEY_PREFIX } from '../accounts/passwords';
import { OidcProviderService } from '../oidc/oidc-provider.service';

export interface Caller {
  member: MemberRecord;
  scopes: string[];
  via: 'api_key' | 'access_token';
  client_id?: string;
}

@Injectable()
export class CallerService {
  constructor(
    private readonly accounts: AccountsService,
    private readonly oidc: OidcProviderService,
  ) {}

  async authenticate(req: Request): Promise<Caller> {
    const token = bearerOf(req.headers.authorization);
    if (!token) throw new StackError('UNAUTHORIZED', 'send Authorization: Bearer with an API key or an access token for the REST API');
    if (token.startsWith(API_KEY_PREFIX)) {
      // One query: the key's member comes with it, and only while active.
      const { resolved, member } = await this.accounts.resolveApiKeyWithMember(token);
      return { member, scopes: resolved.scopes, via: 'api_key' };
    }
    const claims = await this.oidc.verifyApiToken(token);
    if (!(await this.accounts.grantAlive(claims.stk.grant_id))) throw new StackError('UNAUTHORIZED', 'access token was revoked');
    const member = await this.accounts.findMember(claims.stk.member_id);
    if (!member || member.status !== 'active' || member.operator_id !== claims.stk.operator_id) throw new StackError('UNAUTHORIZED', 'access token was revoked');
    return { member, scopes: claims.scopes, via: 'access_token', client_id: claims.client_id };
  }

  /** Team administration: an owner or admin, and (through OAuth) the stack:admin scope. */
  async authenticateAdmin(req: Request): Promise<Caller> {
    const caller = await this.authenticate(req);
    if (!canAdminister(caller.member.role)) throw new StackError('FORBIDDEN', 'only an owner or admin may do this');
    if (!caller.scopes.includes('stack:admin')) throw new StackError('OUT_OF_SCOPE', 'this needs the stack:admin scope');
    return caller;
  }
}
