/**
 * The drop-off commands on the bus: what the MCP gateway calls for `stack_create_dropoff`,
 * `stack_deposit` and `stack_collect`. Each acts for the verified `ctx.caller`.
 */
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { DROPOFF_COMMANDS } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';

import { DropoffService } from './dropoff.service';

@Injectable()
export class DropoffBusHandlers implements OnModuleInit, OnModuleDestroy {
  private handles: Handle[] = [];

  constructor(
    @Inject(serviceKitToken('passport')) private readonly kit: ServiceKit,
    private readonly dropoffs: DropoffService,
  ) {}

  onModuleInit(): void {
    const bus = this.kit.bus;
    const d = this.dropoffs;
    this.handles = [
      bus.handle(DROPOFF_COMMANDS.create, (req, ctx) => d.create(ctx.caller, req)),
      bus.handle(DROPOFF_COMMANDS.deposit, (req, ctx) => d.deposit(ctx.caller, req)),
      bus.handle(DROPOFF_COMMANDS.collect, (req, ctx) => d.collect(ctx.caller, req)),
      bus.handle(DROPOFF_COMMANDS.get, (req, ctx) => d.get(ctx.caller, req.dropoff_id, req.wait_seconds ?? 0)),
    ];
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.stop()));
  }
}
