/**
 * The passport commands on the bus (what the MCP gateway calls for the passport tools). Each
 * acts for the verified `ctx.caller`; the same service methods serve REST.
 */
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { PASSPORT_COMMANDS } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';

import { SigningKeys } from '../keys/signing-keys.service';
import { PassportService, requireOperator } from '../passports/passport.service';

@Injectable()
export class PassportBusHandlers implements OnModuleInit, OnModuleDestroy {
  private handles: Handle[] = [];

  constructor(
    @Inject(serviceKitToken('passport')) private readonly kit: ServiceKit,
    private readonly passports: PassportService,
    private readonly keys: SigningKeys,
  ) {}

  onModuleInit(): void {
    const bus = this.kit.bus;
    const c = PASSPORT_COMMANDS;
    const p = this.passports;
    this.handles = [
      bus.handle(c.registerAgent, (req, ctx) => p.registerAgent(ctx.caller, req)),
      bus.handle(c.listAgents, async (_req, ctx) => ({ agents: await p.listAgents(ctx.caller) })),
      bus.handle(c.getAgent, (req, ctx) => p.getAgent(ctx.caller, req.agent_id)),
      bus.handle(c.updateAgent, (req, ctx) => p.updateAgent(ctx.caller, req)),
      bus.handle(c.deleteAgent, (req, ctx) => p.deleteAgent(ctx.caller, req.agent_id)),
      bus.handle(c.grantAgentAccess, (req, ctx) => p.grantAccess(ctx.caller, req)),
      bus.handle(c.listAgentGrants, async (req, ctx) => ({ grants: await p.listGrants(ctx.caller, req.agent_id) })),
      bus.handle(c.removeAgentGrant, (req, ctx) => p.removeGrant(ctx.caller, req.agent_id, req.connection_id)),
      bus.handle(c.issuePassport, (req, ctx) => p.issue(ctx.caller, req)),
      bus.handle(c.verifyPassport, (req) => p.verify(req.token)),
      bus.handle(c.refreshPassport, (req, ctx) => p.refresh(ctx.caller, req)),
      bus.handle(c.delegatePassport, (req, ctx) => p.delegate(ctx.caller, req)),
      bus.handle(c.listActivePassports, async (req, ctx) => ({ passports: await p.listActive(ctx.caller, req) })),
      bus.handle(c.revokePassport, async (req, ctx) => ({ revoked: await p.revoke(ctx.caller, { kind: 'jti', value: req.jti }, req.reason) })),
      bus.handle(c.revokeAgentPassports, async (req, ctx) => ({ revoked: await p.revoke(ctx.caller, { kind: 'agent', value: req.agent_id }, req.reason) })),
      bus.handle(c.revokeSession, async (req, ctx) => ({ revoked: await p.revoke(ctx.caller, { kind: 'session', value: req.session_id }, req.reason) })),
      bus.handle(c.revokeAllPassports, async (req, ctx) => ({ revoked: await p.revoke(ctx.caller, { kind: 'operator' }, req.reason) })),
      bus.handle(c.getJwks, async () => ({ keys: await this.keys.jwks() })),
      bus.handle(c.rotateSigningKey, async (_req, ctx) => {
        if (ctx.caller.kind !== 'system') requireOperator(ctx.caller, 'stack:admin');
        return { kid: await this.keys.rotate() };
      }),
    ];
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.stop()));
  }
}
