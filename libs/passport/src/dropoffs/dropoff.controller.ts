/**
 * Drop-offs over REST (DESIGN.md §7), for any runtime — a script in another language holds an
 * agent's passport and uses plain HTTP: `POST /v1/dropoffs`, `GET /v1/dropoffs/:id` (with
 * `?wait=N` a long-poll until the deposit arrives), `POST /v1/dropoffs/:id/deposit`,
 * `POST /v1/dropoffs/:id/collect` (`?wait=N` waits for the deposit first). Passports are welcome
 * here: a drop-off is collected with the recipient agent's own credential.
 */
import { Body, Controller, Get, Headers, HttpCode, Param, Post, Query } from '@nestjs/common';
import { Type } from '@sinclair/typebox';

import { assertValid } from '@stack/bus';
import { CollectRequest, CreateDropoffRequest, DROPOFF_LIMITS, StackError, type CallerContext, type CollectResult, type DropoffView } from '@stack/contracts';
import { Credentials } from '@stack/runtime';

import { DropoffService } from './dropoff.service';

const DepositBody = Type.Object({ payload: Type.Unknown() });

function waitOf(value: string | undefined): number {
  if (value === undefined || value === '') return 0;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > DROPOFF_LIMITS.maxWaitSeconds) throw new StackError('INVALID_REQUEST', `wait is a whole number of seconds from 0 to ${DROPOFF_LIMITS.maxWaitSeconds}`, { field: 'wait' });
  return n;
}

@Controller('v1/dropoffs')
export class DropoffController {
  constructor(
    private readonly dropoffs: DropoffService,
    private readonly credentials: Credentials,
  ) {}

  private async caller(authorization: string | undefined): Promise<CallerContext> {
    return (await this.credentials.restCaller(authorization)).caller;
  }

  @Post()
  @HttpCode(201)
  async create(@Headers('authorization') authorization: string | undefined, @Body() body: unknown): Promise<DropoffView> {
    const caller = await this.caller(authorization);
    assertValid(CreateDropoffRequest, body ?? {}, 'request body');
    return this.dropoffs.create(caller, body as never);
  }

  @Get(':id')
  async get(@Headers('authorization') authorization: string | undefined, @Param('id') id: string, @Query('wait') wait?: string): Promise<DropoffView> {
    const caller = await this.caller(authorization);
    return this.dropoffs.get(caller, id, waitOf(wait));
  }

  @Post(':id/deposit')
  @HttpCode(200)
  async deposit(@Headers('authorization') authorization: string | undefined, @Param('id') id: string, @Body() body: unknown): Promise<DropoffView> {
    const caller = await this.caller(authorization);
    assertValid(DepositBody, body ?? {}, 'request body');
    if (!Object.prototype.hasOwnProperty.call(body, 'payload')) throw new StackError('INVALID_REQUEST', 'send {"payload": …}', { field: 'payload' });
    return this.dropoffs.deposit(caller, { dropoff_id: id, payload: (body as { payload: unknown }).payload });
  }

  @Post(':id/collect')
  @HttpCode(200)
  async collect(@Headers('authorization') authorization: string | undefined, @Param('id') id: string, @Body() body: unknown, @Query('wait') wait?: string): Promise<CollectResult> {
    const caller = await this.caller(authorization);
    const input = { ...((body as object | undefined) ?? {}), dropoff_id: id } as { dropoff_id: string; wait_seconds?: number };
    if (wait !== undefined) input.wait_seconds = waitOf(wait);
    assertValid(CollectRequest, input, 'request');
    return this.dropoffs.collect(caller, input);
  }
}
