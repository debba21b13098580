/**
 * The credential-proxy service (DESIGN.md §5): catalog, connections, the vault and the proxy, over
 * REST and the bus. `createCredentialProxyService(seams)` builds the service with STACK's own
 * caller, passport and in-flight seams, any of them replaced by `seams`; `credentialProxyService`
 * is the default build.
 */
import { Inject, Injectable, Module, type DynamicModule, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { Credentials, CredentialsModule, serviceKitToken, type ServiceDefinition, type ServiceKit } from '@stack/runtime';
import { KeyRotation } from '@stack/security';

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
const REWRAP_EVERY_MS = 10 * 60_000;

@Injectable()
class CredentialProxyLifecycle implements OnApplicationBootstrap, OnModuleDestroy {
  private handles: Handle[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    @Inject(CredentialProxyCore) private readonly core: CredentialProxyCore,
    @Inject(KIT) private readonly kit: ServiceKit,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.handles = serveProxyCommands(this.kit.bus, this.core);
    const rewrap = () => void this.rewrapInBackground();
    setImmediate(rewrap);
    this.timer = setInterval(rewrap, REWRAP_EVERY_MS);
    this.timer.unref();
  }

  /** One replica at a time re-wraps data keys left under a retired-to-be key (rotation step 2). */
  private async rewrapInBackground(): Promise<void> {
    const lock = 'cp:vault-rewrap';
    try {
      if (!(await this.kit.cache.setIfAbsent(lock, this.kit.config.instanceId, { ttlMs: 5 * 60_000 }))) return;
      try {
        const report = await new KeyRotation(this.core.repo, this.core.vault.cipher).rewrapAll({
          // The message only: a vault or SQL error object may carry the sealed row as query parameters.
          onError: (id, err) => this.kit.logger.warn({ connection_id: id, error: errorMessage(err) }, 'vault: a connection could not be re-wrapped'),
        });
        if (report.rewrapped || report.failed) this.kit.logger.info({ ...report, byKey: await this.core.repo.countByKey() }, 'vault: data keys re-wrapped under the current key');
      } finally {
        await this.kit.cache.delIfEquals(lock, this.kit.config.instanceId);
      }
    } catch (err) {
      this.kit.logger.warn({ err }, 'vault: background re-wrap failed; it runs again later');
    }
  }

  async onModuleDestroy(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
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
    passportAuthority: seams.passportAuthority ?? { verify: async (token) => credentials.passports.verify(token) },
    inFlight: seams.inFlight ?? credentials.revocations.state.inFlight,
    resolver: seams.resolver,
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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
