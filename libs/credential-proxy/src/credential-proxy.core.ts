/**
 * Builds the credential proxy's object graph from the service kit and the filled seams, once per
 * process: catalog, vault, network guard, upstream client, OAuth manager, pipeline, connections.
 * The service module is its one builder; the classes themselves stay plain.
 */
import type { Cache } from '@stack/cache';
import type { StackConfig } from '@stack/config';
import type { StackLogger } from '@stack/observability';
import type { DataSource } from 'typeorm';

import { Catalog } from './catalog/catalog';
import type { FilledSeams, RestCallerAuthenticator } from './caller/caller-seams';
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
  /** The runtime's `kit.audit`. */
  audit: AuditSink;
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

  constructor(deps: CoreDeps, seams: FilledSeams) {
    const { config, logger } = deps;
    this.publicUrl = config.publicUrl;
    if (!config.masterKeys) throw new Error('credential-proxy: STACK_MASTER_KEYS is not set (the runtime generates one for local use)');
    this.repo = new ConnectionRepository(deps.dataSource, { changed: (operatorId) => this.directory.changed(operatorId) });
    this.vault = CredentialVault.fromMasterKeys(config.masterKeys, logger);
    // A connection disconnected on another replica: its secrets leave this one's log redactor at the next reload.
    this.directory = new ConnectionDirectory(this.repo, deps.cache, { onGone: (operatorId, ids) => ids.forEach((id) => this.vault.forget(operatorId, id)) });
    this.catalog = new Catalog(this.directory, config.serviceBaseUrls ?? {});
    this.oauth = new UpstreamOAuthManager({ repo: this.repo, vault: this.vault, cache: deps.cache, clients: config.upstreamOAuthClients ?? {}, publicUrl: config.publicUrl, newConnectionId, logger });
    this.pipeline = new ProxyPipeline({
      connections: this.directory,
      catalog: this.catalog,
      guard: new NetworkGuard({ privateAllowlist: config.proxyPrivateAllowlist, resolver: seams.resolver }),
      upstream: this.upstream,
      oauth: this.oauth,
      idempotency: new IdempotencyStore(deps.cache),
      passports: seams.passportAuthority,
      inFlight: seams.inFlight,
      audit: deps.audit,
      logger,
      timeoutMs: config.proxyTimeoutMs ?? 30_000,
    });
    this.connections = new ConnectionsService({ repo: this.repo, directory: this.directory, catalog: this.catalog, vault: this.vault, cache: deps.cache, pipeline: this.pipeline, publicUrl: config.publicUrl });
    this.rest = seams.restAuthenticator;
  }

  async close(): Promise<void> {
    await this.upstream.close();
  }
}
