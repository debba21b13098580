/**
 * REST of agents and passports (DESIGN.md §7): thin, every rule lives in PassportService.
 * Bodies are checked against the same contract schemas the bus commands use.
 */
import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import type { TSchema } from '@sinclair/typebox';

import { assertValid } from '@stack/bus';
import {
  DelegatePassportRequest,
  GrantAgentAccessRequest,
  IssuePassportRequest,
  RefreshPassportRequest,
  RegisterAgentRequest,
  StackError,
  UpdateAgentRequest,
  VerifyPassportRequest,
  type CallerContext,
  type DelegatePassportInput,
  type IssuePassportInput,
} from '@stack/contracts';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

import { SigningKeys } from '../keys/signing-keys.service';
import { PassportService, requireOperator, type RevokeTarget } from '../passports/passport.service';
import { CALLER_RESOLVER, type CallerResolver } from './caller-resolver';

const RevokeBody = Type.Object({
  jti: Type.Optional(Type.String()),
  agent_id: Type.Optional(Type.String()),
  session_id: Type.Optional(Type.String()),
  all: Type.Optional(Type.Boolean()),
  confirm: Type.Optional(Type.Boolean()),
  reason: Type.Optional(Type.String({ maxLength: 500 })),
});

function body<S extends TSchema>(schema: S, value: unknown): Static<S> {
  assertValid(schema, value ?? {}, 'request body');
  return (value ?? {}) as Static<S>;
}

@Controller('v1')
export class PassportController {
  constructor(
    private readonly passports: PassportService,
    private readonly keys: SigningKeys,
    @Inject(CALLER_RESOLVER) private readonly callers: CallerResolver,
  ) {}

  private async caller(authorization: string | undefined): Promise<CallerContext> {
    const c = await this.callers.resolve(authorization);
    if (!c) throw new StackError('UNAUTHORIZED', 'this endpoint needs Authorization: Bearer <credential>');
    return c;
  }

  @Get('.well-known/jwks.json')
  async jwks(): Promise<{ keys: unknown[] }> {
    return { keys: await this.keys.jwks() };
  }

  @Post('agents/register')
  async register(@Headers('authorization') auth: string | undefined, @Body() b: unknown) {
    return this.passports.registerAgent(await this.caller(auth), body(RegisterAgentRequest, b));
  }

  @Get('agents')
  async agents(@Headers('authorization') auth: string | undefined) {
    return { agents: await this.passports.listAgents(await this.caller(auth)) };
  }

  @Get('agents/:id')
  async agent(@Headers('authorization') auth: string | undefined, @Param('id') id: string) {
    return this.passports.getAgent(await this.caller(auth), id);
  }

  @Patch('agents/:id')
  async updateAgent(@Headers('authorization') auth: string | undefined, @Param('id') id: string, @Body() b: unknown) {
    return this.passports.updateAgent(await this.caller(auth), body(UpdateAgentRequest, { ...(b as object), agent_id: id }));
  }

  @Delete('agents/:id')
  async deleteAgent(@Headers('authorization') auth: string | undefined, @Param('id') id: string) {
    return this.passports.deleteAgent(await this.caller(auth), id);
  }

  @Get('agents/:id/grants')
  async grants(@Headers('authorization') auth: string | undefined, @Param('id') id: string) {
    return { grants: await this.passports.listGrants(await this.caller(auth), id) };
  }

  @Post('agents/:id/grants')
  async grant(@Headers('authorization') auth: string | undefined, @Param('id') id: string, @Body() b: unknown) {
    return this.passports.grantAccess(await this.caller(auth), body(GrantAgentAccessRequest, { ...(b as object), agent_id: id }));
  }

  @Delete('agents/:id/grants/:connection')
  async removeGrant(@Headers('authorization') auth: string | undefined, @Param('id') id: string, @Param('connection') connection: string) {
    return this.passports.removeGrant(await this.caller(auth), id, connection);
  }

  @Post('passports/issue')
  async issue(@Headers('authorization') auth: string | undefined, @Body() b: unknown) {
    return this.passports.issue(await this.caller(auth), body(IssuePassportRequest, b) as IssuePassportInput);
  }

  /** No authentication: anyone holding a passport may ask whether it is good. */
  @Post('passports/verify')
  @HttpCode(200)
  async verify(@Body() b: unknown) {
    return this.passports.verify(body(VerifyPassportRequest, b).token);
  }

  /** The passport itself is the credential here; an Authorization header, if sent, must be of the same operator. */
  @Post('passports/refresh')
  async refresh(@Headers('authorization') auth: string | undefined, @Body() b: unknown) {
    return this.passports.refresh(await this.callers.resolve(auth), body(RefreshPassportRequest, b));
  }

  @Post('passports/delegate')
  async delegate(@Headers('authorization') auth: string | undefined, @Body() b: unknown) {
    return this.passports.delegate(await this.callers.resolve(auth), body(DelegatePassportRequest, b) as DelegatePassportInput);
  }

  @Post('passports/revoke')
  @HttpCode(200)
  async revoke(@Headers('authorization') auth: string | undefined, @Body() b: unknown) {
    const caller = await this.caller(auth);
    const r = body(RevokeBody, b);
    const given = [r.jti !== undefined, r.agent_id !== undefined, r.session_id !== undefined, r.all === true].filter(Boolean).length;
    if (given !== 1) throw new StackError('INVALID_REQUEST', 'give exactly one of jti, agent_id, session_id or all: true');
    let target: RevokeTarget;
    if (r.jti !== undefined) target = { kind: 'jti', value: r.jti };
    else if (r.agent_id !== undefined) target = { kind: 'agent', value: r.agent_id };
    else if (r.session_id !== undefined) target = { kind: 'session', value: r.session_id };
    else {
      if (r.confirm !== true) throw new StackError('INVALID_REQUEST', 'revoking every passport of the operator needs confirm: true', { field: 'confirm' });
      target = { kind: 'operator' };
    }
    return { revoked: await this.passports.revoke(caller, target, r.reason) };
  }

  @Get('passports')
  async list(@Headers('authorization') auth: string | undefined, @Query('agent_id') agentId?: string, @Query('session_id') sessionId?: string) {
    return { passports: await this.passports.listActive(await this.caller(auth), { ...(agentId ? { agent_id: agentId } : {}), ...(sessionId ? { session_id: sessionId } : {}) }) };
  }

  @Post('passports/keys/rotate')
  @HttpCode(200)
  async rotate(@Headers('authorization') auth: string | undefined) {
    requireOperator(await this.caller(auth), 'stack:admin');
    return { kid: await this.keys.rotate() };
  }
}
