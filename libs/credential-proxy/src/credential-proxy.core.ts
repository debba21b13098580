/**
 * Builds the credential proxy's object graph from the service kit and the seams, once per
 * process: catalog, vault, network guard, upstream client, OAuth manager, pipeline, connections.
 * Plain classes, so unit tests and the benchmark build the same graph without Nest.
 */
import type { Cache } from '@stack/cache';
import type { StackConfig } from '@stack/config';
import type { StackLogger } from '@stack/observability';
import type { DataSource } from 'typeorm';

import { Catalog } from './catalog/catalog';
import { NO_PASSPORT_AUTHORITY, SignedContextAuthenticator, defaultInFlight, type CredentialProxySeams, type RestCallerAuthenticator } from './caller/caller-seams';
import { ConnectionDirectory } from './connections/connection-directory';
import { ConnectionRepository } from './connections/connection.repository';
import { ConnectionsService, newConnectionId } from './connections/connections.service';
import { UpstreamOAuthManager } from './oauth/upstream-oauth';
import { IdempotencyStore } from './proxy/idempotency-store';
import { NetworkGuard } from './proxy/network-guard';
import { ProxyPipeline, type AuditSink } from './proxy/proxy-pipeline';
import { UpstreamClient } from './proxy/upstream-client';
import { CredentialVault } from './vault/credential-vault';

export interface CoreDeps {
  dataSource: DataSource;
  cache: Cache;
  config: StackConfig;
  logger: StackLogger;
  audit?: AuditSink;
}

export class CredentialProxyCore {
  readonly repo: ConnectionRepository;
  /** Connections and custom services as the proxy reads them on every call (memory, checked against a shared generation). */
  readonly directory: ConnectionDirectory;
  readonly catalog: Catalog;
  readonly vault: CredentialVault;
  readonly upstream = new UpstreamClient();
  readonly oauth: UpstreamOAuthManager;
  readonly pipeline: ProxyPipeline;
  readonly connections: ConnectionsService;
  readonly rest: RestCallerAuthenticator;
  readonly publicUrl: string;

  constructor(deps: CoreDeps, seams: CredentialProxySeams = {}) {
    const { config, logger } = deps;
    this.publicUrl = config.publicUrl;
    if (!config.masterKeys) throw new Error('credential-proxy: STACK_MASTER_KEYS is not set (the runtime generates one for local use)');
    this.repo = new ConnectionRepository(deps.dataSource, { changed: (operatorId) => this.directory.changed(operatorId) });
    this.directory = new ConnectionDirectory(this.repo, deps.cache);
    this.catalog = new Catalog(this.directory, config.serviceBaseUrls ?? {});
    this.vault = CredentialVault.fromMasterKeys(config.masterKeys, logger);
    this.oauth = new UpstreamOAuthManager({ repo: this.repo, vault: this.vault, cache: deps.cache, clients: config.upstreamOAuthClients ?? {}, publicUrl: config.publicUrl, newConnectionId });
    // Until the audit log is wired (issue 7's kit.audit), entries go to the log as lines.
    const audit: AuditSink = deps.audit ?? {
      async record(input) {
        logger.info({ audit: { ...input, caller: undefined } }, 'audit (no audit sink)');
        return 'aud_unrecorded';
      },
    };
    this.pipeline = new ProxyPipeline({
      connections: this.directory,
      catalog: this.catalog,
      guard: new NetworkGuard({ privateAllowlist: config.proxyPrivateAllowlist, resolver: seams.resolver }),
      upstream: this.upstream,
      oauth: this.oauth,
      idempotency: new IdempotencyStore(deps.cache),
      passports: seams.passportAuthority ?? NO_PASSPORT_AUTHORITY,
      inFlight: seams.inFlight ?? defaultInFlight(),
      audit,
      logger,
      timeoutMs: config.proxyTimeoutMs ?? 30_000,
    });
    this.connections = new ConnectionsService({ repo: this.repo, catalog: this.catalog, vault: this.vault, cache: deps.cache, pipeline: this.pipeline, publicUrl: config.publicUrl });
    this.rest = seams.restAuthenticator ?? new SignedContextAuthenticator(config.internalSecret ?? '');
  }

  async close(): Promise<void> {
    await this.upstream.close();
  }
}
