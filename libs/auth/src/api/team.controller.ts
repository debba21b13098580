/**
 * REST under /v1/team (DESIGN.md §7): members (list, get, invite, update, revoke, password-reset
 * link) and the caller's connected apps. Another operator's member is 404, never 403.
 */
import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { StackError, isMemberRole } from '@stack/contracts';
import type { Request } from 'express';

import { AccountsService, type MemberRecord } from '../accounts/accounts.service';
import { OidcProviderService } from '../oidc/oidc-provider.service';
import { CallerService } from './caller.service';

function obj(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new StackError('INVALID_REQUEST', 'expected a JSON object body');
  return body as Record<string, unknown>;
}

function text(body: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = body[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.trim() === '' || v.length > 200) throw new StackError('INVALID_REQUEST', `${key} must be a non-empty string`, { field: key });
  return v.trim();
}

@ApiTags('team')
@ApiBearerAuth()
@Controller('v1/team')
export class TeamController {
  constructor(
    private readonly accounts: AccountsService,
    private readonly callers: CallerService,
    private readonly oidc: OidcProviderService,
  ) {}

  @Get('members')
  async list(@Req() req: Request) {
    const { member } = await this.callers.authenticate(req);
    return { members: await this.accounts.listMembers(member.operator_id) };
  }

  @Get('members/:id')
  async get(@Req() req: Request, @Param('id') id: string) {
    const { member } = await this.callers.authenticate(req);
    return this.accounts.getMember(member.operator_id, id);
  }

  @Post('members/invite')
  async invite(@Req() req: Request, @Body() raw: unknown) {
    const { member } = await this.callers.authenticateAdmin(req);
    // The new member would not be limited: an admin limited to some connections could invite
    // another address of their own and use every connection through it.
    if (member.allowed_connections) throw new StackError('FORBIDDEN', 'a member limited to some connections cannot invite members', { reason: 'connections_limited' });
    const body = obj(raw);
    const role = body.role ?? 'standard';
    if (!isMemberRole(role)) throw new StackError('INVALID_REQUEST', 'role must be admin, standard or readonly', { field: 'role' });
    const inv = await this.accounts.invite({ operatorId: member.operator_id, invitedBy: member.id, email: text(body, 'email', true)!, name: text(body, 'name', true)!, role });
    return { invitation_id: inv.invitation_id, accept_url: `${this.oidc.issuer}/login/accept?token=${inv.token}`, expires_at: inv.expires_at, mailed: false };
  }

  @Patch('members/:id')
  async update(@Req() req: Request, @Param('id') id: string, @Body() raw: unknown) {
    const { member } = await this.callers.authenticateAdmin(req);
    await this.assertMayManage(member, id);
    const body = obj(raw);
    const role = body.role;
    if (role !== undefined && !isMemberRole(role)) throw new StackError('INVALID_REQUEST', 'role must be owner, admin, standard or readonly', { field: 'role' });
    if (role === 'owner' && member.role !== 'owner') throw new StackError('FORBIDDEN', 'only an owner may make another owner');
    const allowed = body.allowed_connections;
    if (allowed !== undefined && allowed !== null && (!Array.isArray(allowed) || !allowed.every((c) => typeof c === 'string'))) {
      throw new StackError('INVALID_REQUEST', 'allowed_connections must be an array of connection ids or null', { field: 'allowed_connections' });
    }
    // A limited caller gives no one (themselves included) more than their own list: they would lift their own limit.
    const own = member.allowed_connections;
    if (own && allowed !== undefined && (allowed === null || !(allowed as string[]).every((c) => own.includes(c)))) {
      throw new StackError('FORBIDDEN', 'a member limited to some connections can only limit others to those connections', { reason: 'connections_limited', field: 'allowed_connections' });
    }
    return this.accounts.updateMember(member.operator_id, id, { name: text(body, 'name', false), role, allowed_connections: allowed as string[] | null | undefined });
  }

  @Delete('members/:id')
  async revoke(@Req() req: Request, @Param('id') id: string) {
    const { member } = await this.callers.authenticateAdmin(req);
    if (id === member.id) throw new StackError('INVALID_REQUEST', 'a member cannot revoke themselves');
    await this.assertMayManage(member, id);
    return this.accounts.revokeMember(member.operator_id, id, member.id);
  }

  @Post('members/:id/password-reset')
  async passwordReset(@Req() req: Request, @Param('id') id: string) {
    const { member } = await this.callers.authenticateAdmin(req);
    await this.assertMayManage(member, id);
    const reset = await this.accounts.createPasswordReset(member.operator_id, id);
    return { reset_url: `${this.oidc.issuer}/login/reset?token=${reset.token}`, expires_at: reset.expires_at, mailed: false };
  }

  /**
   * Only an owner changes, revokes or resets the password of an owner: an admin with an owner's
   * reset link would sign in as that owner. (Another operator's member is NOT_FOUND, as ever.)
   */
  private async assertMayManage(caller: MemberRecord, id: string): Promise<void> {
    const target = await this.accounts.getMember(caller.operator_id, id);
    if (target.role === 'owner' && caller.role !== 'owner') throw new StackError('FORBIDDEN', 'only an owner may change, revoke or reset the password of an owner');
  }

  @Get('connected-apps')
  async connectedApps(@Req() req: Request) {
    const { member } = await this.callers.authenticate(req);
    return { connected_apps: await this.accounts.connectedApps(member.id) };
  }

  @Delete('connected-apps/:clientId')
  @HttpCode(204)
  async disconnect(@Req() req: Request, @Param('clientId') clientId: string): Promise<void> {
    const { member } = await this.callers.authenticate(req);
    await this.accounts.revokeConnectedApp(member, clientId);
  }
}
