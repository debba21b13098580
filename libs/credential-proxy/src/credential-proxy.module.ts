/**
 * The credential-proxy service (DESIGN.md §5): catalog, connections, the vault and the proxy, over
 * REST and the bus. `createCredentialProxyService(seams)` builds the service with STACK's own
 * caller, passport and in-flight seams, any of them replaced by `seams`; `credentialProxyService`
 * is the default build.
 */
import { Inject, Injectable, Module, type DynamicModule, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { Credentials, CredentialsModule, serviceKitToken, type ServiceDefinition, type ServiceKit } from '@stack/runtime';

import { ConnectPageController, CONNECT_PATH } from './api/connect-page.controller';
import { ConnectionsController } from './api/connections.controller';
import { PROXY_PATH, ProxyController, proxyFastRoute } from './api/proxy.controller';
import { serveProxyCommands } from './api/proxy-bus.handlers';
import type { CredentialProxySeams, FilledSeams } from './caller/caller-seams';
import { CredentialProxyInit1764400000000 } from './connections/credential-proxy-init.migration';
import { ConnectionRepository } from './connections/connection.repository';
import { CredentialProxyCore } from './credential-proxy.core';

const KIT = serviceKitToken('credential-proxy');
const SEAMS = Symbol.for('stack.credential-proxy.seams');

@Injectable()
class CredentialProxyLifecycle implements OnApplicationBootstrap, OnModuleDestroy {
  private handles: Handle[] = [];

  constructor(
    @Inject(CredentialProxyCore) private readonly core: CredentialProxyCore,
    @Inject(KIT) private readonly kit: ServiceKit,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.handles = serveProxyCommands(this.kit.bus, this.core);
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.stop()));
    await this.core.close();
  }
}

/**
 * The seams filled with STACK's own credentials: API keys and OAuth access tokens for REST
 * (and the operators' signed caller context, see Credentials.restCaller), passports verified by
 * this node against its revocation state, and the node's in-flight registry, so a revocation
 * cuts the calls made with the passport. A seam given in `seams` takes the place of STACK's.
 */
function credentialSeams(credentials: Credentials, seams: CredentialProxySeams): FilledSeams {
  return {
    restAuthenticator: seams.restAuthenticator ?? { authenticate: async (authorization) => (await credentials.restCaller(authorization)).caller },
    passportAuthority: seams.passportAuthority ?? { verify: (token) => credentials.passports.verify(token) },
    inFlight: seams.inFlight ?? credentials.revocations.state.inFlight,
    resolver: seams.resolver,
  };
}

export function createCredentialProxyModule(seams: CredentialProxySeams = {}): DynamicModule {
  @Module({})
  class CredentialProxyModule {}
  return {
    module: CredentialProxyModule,
    // The connect page's controller comes first: `/v1/connections/connect` must not reach `:id`.
    controllers: [ConnectPageController, ProxyController, ConnectionsController],
    imports: [CredentialsModule],
    providers: [
      { provide: SEAMS, useFactory: (credentials: Credentials) => credentialSeams(credentials, seams), inject: [Credentials] },
      {
        provide: CredentialProxyCore,
        useFactory: (kit: ServiceKit, s: FilledSeams) => new CredentialProxyCore({ dataSource: kit.dataSource, cache: kit.cache, config: kit.config, logger: kit.logger, audit: kit.audit }, s),
        inject: [KIT, SEAMS],
      },
      CredentialProxyLifecycle,
    ],
  };
}

export function createCredentialProxyService(seams: CredentialProxySeams = {}): ServiceDefinition {
  const dynamic = createCredentialProxyModule(seams);
  @Module({ imports: [dynamic] })
  class CredentialProxyRootModule {}
  return {
    service: 'credential-proxy',
    module: CredentialProxyRootModule,
    entities: [],
    migrations: [CredentialProxyInit1764400000000],
    rawBodyPaths: [PROXY_PATH, CONNECT_PATH],
    fastRoutes: (app) => [proxyFastRoute(app.get(CredentialProxyCore, { strict: false }))],
    sealedValues: (dataSource) => [{ label: 'connection(s)', store: new ConnectionRepository(dataSource) }],
  };
}
