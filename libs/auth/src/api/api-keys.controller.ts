/** REST under /v1/api-keys: the caller's API keys. The key itself is shown once, at creation. */
import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { StackError } from '@stack/contracts';
import type { Request } from 'express';

import { AccountsService } from '../accounts/accounts.service';
import { CallerService } from './caller.service';

@ApiTags('api-keys')
@ApiBearerAuth()
@Controller('v1/api-keys')
export class ApiKeysController {
  constructor(
    private readonly accounts: AccountsService,
    private readonly callers: CallerService,
  ) {}

  @Get()
  async list(@Req() req: Request) {
    const { member } = await this.callers.authenticate(req);
    return { api_keys: await this.accounts.listApiKeys(member.operator_id, member.id) };
  }

  /** An active member's new key: the scopes their role allows that the calling credential holds too. */
  @Post()
  async create(@Req() req: Request, @Body() body: unknown) {
    const { member, scopes } = await this.callers.authenticate(req);
    if (member.role === 'readonly') throw new StackError('FORBIDDEN', 'a readonly member cannot create API keys');
    const name = (body as { name?: unknown } | undefined)?.name;
    if (typeof name !== 'string' || !name.trim() || name.length > 100) throw new StackError('INVALID_REQUEST', 'name must be a non-empty string', { field: 'name' });
    const { key, record } = await this.accounts.createApiKey(member, name.trim(), scopes);
    return { ...record, key };
  }

  @Delete(':id')
  @HttpCode(204)
  async revoke(@Req() req: Request, @Param('id') id: string): Promise<void> {
    const { member } = await this.callers.authenticate(req);
    await this.accounts.revokeApiKey(member, id);
  }
}
