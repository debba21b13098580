/**
 * The passport service's root module: agents, grants, passports, signing keys and the
 * revocation fan-out (DESIGN.md §3, §4), and drop-offs between agents (issue 9). It hosts the node's revocation state like every
 * service that checks credentials (RevocationModule) and publishes the stream's heartbeat.
 */
import { Module } from '@nestjs/common';

import { CredentialsModule } from '@stack/runtime';

import { ClientAgentsConsumer } from './agents/client-agents.consumer';
import { BearerCallerResolver, CALLER_RESOLVER } from './api/caller-resolver';
import { PassportBusHandlers } from './api/passport.bus-handlers';
import { PassportController } from './api/passport.controller';
import { DropoffBusHandlers } from './dropoffs/dropoff.bus-handlers';
import { DropoffController } from './dropoffs/dropoff.controller';
import { DropoffService } from './dropoffs/dropoff.service';
import { DropoffStore } from './dropoffs/dropoff.store';
import { SigningKeys } from './keys/signing-keys.service';
import { PassportService } from './passports/passport.service';
import { RevocationRelay } from './revocation/revocation-relay.service';
import { PassportStore } from './store/passport.store';

@Module({
  imports: [CredentialsModule],
  controllers: [PassportController, DropoffController],
  providers: [PassportStore, DropoffStore, DropoffService, DropoffBusHandlers, SigningKeys, ClientAgentsConsumer, PassportService, PassportBusHandlers, RevocationRelay, { provide: CALLER_RESOLVER, useClass: BearerCallerResolver }],
  exports: [PassportService, DropoffService],
})
export class PassportModule {}
