/**
 * DESIGN.md §2: an OAuth client a member approves is recorded as an agent too, so every action
 * has an agent and a member behind it. Auth publishes `oauth_client.approved`; this durable
 * consumer (shared by the replicas) records one agent per operator and client, idempotently.
 */
import { createHash } from 'node:crypto';

import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { AGENT_NAME_MAX, ClientApprovedEvent, type PayloadOf } from '@stack/contracts';
import { claimMessage } from '@stack/persistence';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';

import { newId } from '../passports/passport.service';
import { PassportStore } from '../store/passport.store';

const CONSUMER = 'passport-client-agents';

/** `Claude Code` + client id → `claude-code-1a2b3c`: a valid, stable agent name. */
export function clientAgentName(clientName: string | undefined, clientId: string): string {
  const suffix = createHash('sha256').update(clientId).digest('hex').slice(0, 6);
  const base = (clientName ?? 'oauth-client')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, AGENT_NAME_MAX - suffix.length - 1)
    .replace(/-+$/g, '');
  return `${base || 'oauth-client'}-${suffix}`;
}

@Injectable()
export class ClientAgentsConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private handle?: Handle;

  constructor(
    @Inject(serviceKitToken('passport')) private readonly kit: ServiceKit,
    private readonly store: PassportStore,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.handle = await this.kit.bus.consume({ durable: CONSUMER, events: [ClientApprovedEvent] }, async (_event, payload, ctx) => {
      const p = payload as PayloadOf<typeof ClientApprovedEvent>;
      await this.store.transaction(async (m) => {
        if (!(await claimMessage(m, CONSUMER, ctx.id))) return;
        await this.store.insertClientAgent(m, {
          id: newId('agt'),
          operator_id: p.operator_id,
          name: clientAgentName(p.client_name, p.client_id),
          description: `OAuth client ${p.client_name ?? p.client_id}${p.redirect_host ? ` (${p.redirect_host})` : ''}, approved by ${p.member_id}`,
          created_by: p.member_id,
          client_id: p.client_id,
        });
      });
    });
  }

  async onModuleDestroy(): Promise<void> {
    await this.handle?.stop();
  }
}
