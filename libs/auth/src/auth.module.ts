/**
 * The auth service's root module: accounts (operators, members, API keys), the OAuth 2.1
 * authorization server mounted under /oauth, the login and consent pages, REST under /v1/team
 * and /v1/api-keys, and `auth.resolve_api_key` / `auth.resolve_member_access` on the bus.
 */
import { Inject, Module, type MiddlewareConsumer, type NestModule, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { ResolveApiKeyCommand, ResolveMemberAccessCommand, StackError } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import type { Handle } from '@stack/bus';
import { urlencoded } from 'express';

import { AccountsService } from './accounts/accounts.service';
import { ApiKeysController } from './api/api-keys.controller';
import { CallerService } from './api/caller.service';
import { TeamController } from './api/team.controller';
import { OidcProviderService } from './oidc/oidc-provider.service';
import { InteractionController } from './pages/interaction.controller';

@Module({
  controllers: [InteractionController, TeamController, ApiKeysController],
  providers: [AccountsService, OidcProviderService, CallerService],
})
export class AuthModule implements NestModule, OnApplicationBootstrap, OnModuleDestroy {
  private handles: Handle[] = [];

  constructor(
    @Inject(serviceKitToken('auth')) private readonly kit: ServiceKit,
    private readonly accounts: AccountsService,
  ) {}

  configure(consumer: MiddlewareConsumer): void {
    // The runtime parses JSON only; the pages post forms.
    consumer.apply(urlencoded({ extended: false, limit: '16kb' })).forRoutes('login', 'login/*path', 'consent');
  }

  onApplicationBootstrap(): void {
    this.handles.push(this.kit.bus.handle(ResolveApiKeyCommand, async ({ api_key }) => this.accounts.resolveApiKey(api_key)));
    this.handles.push(
      this.kit.bus.handle(ResolveMemberAccessCommand, async ({ operator_id, member_id }, ctx) => {
        // A service asks for its callers; a caller of an operator learns only about its own operator.
        if (ctx.caller.kind !== 'system' && ctx.caller.operator_id !== operator_id) throw new StackError('NOT_FOUND', 'no such member');
        return this.accounts.memberAccess(operator_id, member_id);
      }),
    );
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.handles.splice(0).map((h) => h.stop()));
  }
}
