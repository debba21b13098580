/**
 * Starts a STACK process: any subset of the six services (STACK_SERVICES), on the real
 * servers (DATABASE_URL, NATS_URL, REDIS_URL) or on their embedded twins when those are
 * unset (the one-process default). Infrastructure comes up before Nest, in dependency order,
 * so a failure names the part that failed; shutdown takes it down in reverse.
 */
import 'reflect-metadata';

import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Module, type DynamicModule, type INestApplication, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { json, type NextFunction, type Request, type Response } from 'express';
import type { DataSource } from 'typeorm';

import { connectNatsBus, createInProcessBus, serviceInboxPrefix, type Bus, type BusConnection, type Handle } from '@stack/bus';
import { createCache, type Cache } from '@stack/cache';
import { loadConfig, runsAllServices, secretValues, type StackConfig } from '@stack/config';
import { SERVICE_NAMES, SYSTEM_COMMANDS, ServiceStartedEvent, type ServiceName } from '@stack/contracts';
import {
  HealthRegistry,
  NestLoggerAdapter,
  createLogger,
  createMetrics,
  initTracing,
  requestIdMiddleware,
  tracingMiddleware,
  type HttpMiddleware,
  type StackLogger,
  type StackMetrics,
  type TracingHandle,
} from '@stack/observability';
import { Outbox, OutboxRelay, createServiceDataSource, migrateUnderLock, startEmbeddedPostgres, waitForSchema } from '@stack/persistence';

import { AuditRecorder } from './audit-recorder';
import { JSON_BODY_LIMIT_BYTES, installFastRoutes, pathOf } from './fast-routes';
import { ensurePrivateDataDir, withLocalSecrets } from './local-secrets';
import { startRewrapJobs } from './rewrap-jobs';
import { ProcessState } from './process-state';
import { TOKENS, serviceKitToken, type ServiceDefinition } from './service-definition';
import { StackErrorFilter, toStackError, writeError } from './stack-error.filter';
import { SystemController } from './system.controller';
import { serveSystemCommands } from './system-handlers';

export const STACK_VERSION = process.env.npm_package_version ?? '0.1.0';

/** What a service gets from the runtime: its own bus facade, data source and logger. */
export interface ServiceKit {
  service: ServiceName;
  bus: Bus;
  dataSource: DataSource;
  outbox: typeof Outbox;
  logger: StackLogger;
  config: StackConfig;
  cache: Cache;
  /** Audit events: `record(entry)` waits for STACK_AUDIT's acknowledgement; `enqueue(manager, entry)` goes through the outbox. */
  audit: AuditRecorder;
}

export interface StartStackOptions {
  /** Service libraries this binary contains; the config's STACK_SERVICES picks among them. */
  available: readonly ServiceDefinition[];
  env?: NodeJS.ProcessEnv;
  /** Install SIGTERM/SIGINT handlers (a CLI does; tests usually do not). */
  handleSignals?: boolean;
  /** Overrides of HTTP_TIMEOUTS (tests shorten them). */
  httpTimeouts?: Partial<HttpTimeouts>;
}

export interface HttpTimeouts {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
}

/**
 * How long the HTTP server waits on a client, set on purpose rather than left at Node's defaults
 * (60 s for the headers, 300 s for the whole request: a client trickling a body held a connection
 * for five minutes).
 *
 * - headersTimeout, 20 s: from the first byte of a request to the end of its headers. Headers are
 *   a few KB; only a client stalling on purpose (or a dead one) needs longer.
 * - requestTimeout, 120 s: from the first byte to the last byte of the request *body*. The largest
 *   body STACK takes is a 10 MB `POST /v1/proxy` (the Ingress's proxy-body-size); 120 s lets it
 *   through at ~85 KB/s. It covers receiving the request only: once the body is in, a response may
 *   stream for as long as it likes — `GET /v1/audit?follow=true` (SSE) and streamed /mcp answers
 *   are not cut (start-stack.int-spec.ts checks it).
 * - keepAliveTimeout, 65 s: how long an idle kept-alive connection stays open. Above the idle
 *   timeout of the load balancers in front (ingress-nginx keeps upstream connections 60 s, AWS ALB
 *   60 s), so it is always the balancer that closes an idle connection, never STACK under a request
 *   the balancer is sending on it (a 502).
 * - connectionsCheckingInterval, 5 s: how often Node looks for connections past those timeouts (its
 *   default of 30 s would let a 20 s timeout run to 50 s).
 *
 * A client past a timeout gets 408 and its connection closed. The Ingress (proxy-read-timeout
 * 3600 s) holds long answers open on its side; these bound only what a client sends.
 */
export const HTTP_TIMEOUTS: Readonly<HttpTimeouts> = {
  headersTimeout: 20_000,
  requestTimeout: 120_000,
  keepAliveTimeout: 65_000,
  connectionsCheckingInterval: 5_000,
};

export interface RunningStack {
  app: INestApplication;
  config: StackConfig;
  url: string;
  port: number;
  logger: StackLogger;
  bus: BusConnection;
  dataSources: Map<ServiceName, DataSource>;
  stop(reason?: string): Promise<void>;
}

type Closer = { name: string; close: () => Promise<unknown> };

/**
 * Connections per service to the embedded Postgres. There is one backend, but every connection
 * with a statement waiting joins the server's next trip to the PGlite worker (execMany), so the
 * more a busy moment has, the more statements one trip runs; a service's requests must not queue
 * in its own pool while the backend idles. In-process connections cost a session object each
 * (no socket, no backend), so 32 are cheap: drop-off hand-offs at 64 in flight went from about
 * 300 to about 370 per second on 2 cores, against 8 connections.
 */
const EMBEDDED_POOL_SIZE = 32;

export async function startStack(options: StartStackOptions): Promise<RunningStack> {
  let config = loadConfig(options.env ?? process.env);
  const chosen = options.available.filter((d) => config.services.includes(d.service));
  const missing = config.services.filter((s) => !chosen.some((d) => d.service === s));
  if (missing.length) throw new Error(`this binary does not contain ${missing.join(', ')} (STACK_SERVICES)`);
  const processName = runsAllServices(config) ? 'stack' : config.services.join('+');

  const logger = createLogger({ level: config.logLevel, service: processName, instance: config.instanceId, secrets: secretValues(config) });
  config = withLocalSecrets(config, (msg) => logger.warn(msg));
  for (const s of secretValues(config)) logger.addSecret(s);

  // Signals are caught from the first moment: one that arrives while starting ends the start
  // and closes what was opened, instead of killing the process half-way.
  let stopRequested: string | undefined;
  let stopNow: ((reason: string) => Promise<void>) | undefined;
  if (options.handleSignals) {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        stopRequested = sig;
        if (stopNow) {
          void stopNow(sig).then(
            () => process.exit(0),
            () => process.exit(1),
          );
        } else {
          logger.info({ signal: sig }, 'signal received while starting: will stop once the current step ends');
        }
      });
    }
  }
  const abortIfStopped = () => {
    if (stopRequested) throw new StartAborted(stopRequested);
  };

  // Everything opened so far, closed in reverse if a later step fails or at shutdown.
  const closers: Closer[] = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c.close();
      } catch (err) {
        logger.warn({ part: c.name, err: (err as Error).message }, 'error while closing');
      }
    }
  };

  try {
    const tracing: TracingHandle = initTracing({ serviceName: `stack-${processName}`, instance: config.instanceId, otlpEndpoint: config.otlpEndpoint });
    closers.push({ name: 'tracing', close: () => tracing.shutdown() });
    const metrics: StackMetrics = createMetrics({ service: processName, instance: config.instanceId });
    const health = new HealthRegistry();

    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      ensurePrivateDataDir(config.dataDir, (msg) => logger.warn(msg));
      const embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, maxConnections: chosen.length * EMBEDDED_POOL_SIZE + 16, logger });
      closers.push({ name: 'embedded postgres', close: () => embedded.close() });
      databaseUrl = embedded.url;
      logger.info({ data_dir: config.dataDir }, 'embedded Postgres (PGlite) started');
      abortIfStopped();
    }

    const internalSecret = Buffer.from(config.internalSecret ?? '', 'base64');
    const busOptions = {
      prefix: config.busPrefix,
      internalSecret,
      timeoutMs: config.busTimeoutMs,
      instanceId: config.instanceId,
      logger,
      metrics: { requestCompleted: metrics.recordBusRequest.bind(metrics), messageHandled: metrics.recordBusHandled.bind(metrics) },
    };
    // A process of one service reads its replies under its own inbox prefix, the one its NATS user may read.
    const inboxPrefix = config.services.length === 1 ? serviceInboxPrefix(config.services[0]!) : undefined;
    const bus = config.natsUrl ? await connectNatsBus({ ...busOptions, servers: config.natsUrl, name: `stack-${processName}-${config.instanceId}`, streamReplicas: config.streamReplicas, inboxPrefix }) : createInProcessBus(busOptions);
    closers.push({ name: 'bus', close: () => bus.close() });
    await bus.ensureStreams();
    // A real round trip through the bus (to this process's own first service, or a replica
    // of it), so readiness means "messages flow", not just "a socket is open".
    const probe = chosen[0]!.service;
    health.register('bus', async () => {
      if (!bus.isHealthy()) throw new Error('bus is disconnected');
      await bus.forService(probe).request(SYSTEM_COMMANDS[probe].ping, { from: 'readyz' }, { timeoutMs: 1500 });
    });

    const cache = createCache({ url: config.redisUrl, keyPrefix: `${config.busPrefix}:` });
    closers.push({ name: 'cache', close: () => cache.close() });
    health.register('cache', () => cache.ping());

    const dataSources = new Map<ServiceName, DataSource>();
    for (const def of chosen) {
      const ds = createServiceDataSource({ service: def.service, url: databaseUrl, entities: [...def.entities], migrations: [...def.migrations], poolSize: config.databaseUrl ? 5 : EMBEDDED_POOL_SIZE });
      await ds.initialize();
      closers.push({ name: `database ${def.service}`, close: () => ds.destroy() });
      if (config.migrateOnStart) {
        const applied = await migrateUnderLock(ds, { logger });
        if (applied.length) logger.info({ service: def.service, migrations: applied }, 'migrations applied');
      } else {
        await waitForSchema(ds, { timeoutMs: 300_000 });
      }
      dataSources.set(def.service, ds);
      abortIfStopped();
      health.register(`database:${def.service}`, async () => {
        await ds.query('SELECT 1');
      });
    }

    const relays = chosen.map((def) => new OutboxRelay({ dataSource: dataSources.get(def.service)!, bus: bus.forService(def.service), logger }));
    for (const r of relays) r.start();
    closers.push({ name: 'outbox relays', close: () => Promise.all(relays.map((r) => r.stop())) });

    if (config.masterKeys) {
      const stopRewrap = startRewrapJobs({ services: chosen, dataSources, masterKeys: config.masterKeys, cache, logger, instanceId: config.instanceId });
      closers.push({ name: 'key re-wrap', close: async () => stopRewrap() });
    }

    const state = new ProcessState();
    state.instanceId = config.instanceId;
    state.services = [...config.services];

    const kitProviders: Provider[] = chosen.map((def) => ({
      provide: serviceKitToken(def.service),
      useValue: { service: def.service, bus: bus.forService(def.service), dataSource: dataSources.get(def.service)!, outbox: Outbox, logger: logger.child({ component: def.service }), config, cache, audit: new AuditRecorder(bus.forService(def.service)) } satisfies ServiceKit,
    }));
    const coreProviders: Provider[] = [
      { provide: TOKENS.config, useValue: config },
      { provide: TOKENS.logger, useValue: logger },
      { provide: TOKENS.metrics, useValue: metrics },
      { provide: TOKENS.health, useValue: health },
      { provide: TOKENS.busConnection, useValue: bus },
      { provide: TOKENS.cache, useValue: cache },
      { provide: ProcessState, useValue: state },
      ...kitProviders,
    ];

    @Module({})
    class StackCoreModule {}
    @Module({})
    class StackRootModule {}
    const core: DynamicModule = { module: StackCoreModule, global: true, providers: coreProviders, exports: coreProviders.map((p) => (p as { provide: string | symbol }).provide) };
    const root: DynamicModule = { module: StackRootModule, imports: [core, ...chosen.map((d) => d.module)], controllers: [SystemController] };

    const app = await NestFactory.create<NestExpressApplication>(root, new ExpressAdapter(), { logger: new NestLoggerAdapter(logger), bodyParser: false, abortOnError: false });
    closers.push({ name: 'http', close: () => app.close() });
    app.disable('x-powered-by');
    // API answers are computed per request: hashing each body for an ETag nobody revalidates is wasted work.
    app.set('etag', false);
    app.set('trust proxy', false);
    // The same chain serves the ordinary routes (through Express) and the hot ones (fast-routes.ts).
    const quiet = new Set(['/healthz', '/readyz', '/metrics']);
    const servicesHeader = runsAllServices(config) ? 'all' : config.services.join(',');
    const chain: HttpMiddleware[] = [
      requestIdMiddleware,
      tracingMiddleware(),
      metrics.httpMiddleware(),
      // One access line per request (probes and scrapes excepted), without the query string,
      // which may carry tokens.
      (req, res, next) => {
        const path = pathOf(req.url);
        if (quiet.has(path) || !logger.isLevelEnabled('info')) return next();
        const started = performance.now();
        const requestId = res.getHeader('X-Request-Id');
        res.once('finish', () => {
          logger.info({ request_id: requestId, method: req.method, path, status: res.statusCode, ms: Math.round((performance.now() - started) * 100) / 100 }, 'http request');
        });
        next();
      },
      (_req, res, next) => {
        res.setHeader('X-Stack-Services', servicesHeader);
        res.setHeader('X-Stack-Instance', config.instanceId);
        // Answers are JSON (or pages with their own type): never to be sniffed into HTML.
        res.setHeader('X-Content-Type-Options', 'nosniff');
        next();
      },
    ];
    for (const mw of chain) app.use(mw);
    // Our own JSON parser, after the chain (a refused body too gets its request id, metrics and
    // headers), so a malformed or oversized body gets the error envelope with a stable code rather
    // than the parser's message.
    // Matched the way Express routes (case-insensitive, one optional trailing slash): a body parsed
    // here for `/v1/proxy/` left the route that reads its own body waiting for bytes already read.
    const rawBodyPaths = new Set(chosen.flatMap((d) => d.rawBodyPaths ?? []).map(routingKey));
    const parseJson = json({ limit: JSON_BODY_LIMIT_BYTES });
    app.use((req: Request, res: Response, next: NextFunction) => (rawBodyPaths.has(routingKey(req.path)) ? next() : parseJson(req, res, next)));
    app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => (toStackError(err) ? writeError(res, err, logger) : next(err)));
    app.useGlobalFilters(new StackErrorFilter(logger));

    state.openApiDocument = SwaggerModule.createDocument(
      app,
      new DocumentBuilder().setTitle('STACK').setDescription('REST API of STACK, the control plane that lets AI agents use upstream services without holding their credentials.').setVersion(STACK_VERSION).addBearerAuth().addServer(`${config.publicUrl}`).build(),
    );

    const handles: Handle[] = chosen.flatMap((def) => serveSystemCommands(bus.forService(def.service), config.instanceId));
    closers.push({ name: 'bus handlers', close: () => Promise.all(handles.map((h) => h.stop())) });
    await bus.flush();

    await app.init();
    const server = app.getHttpServer() as Server;
    installFastRoutes(
      server,
      chosen.flatMap((def) => def.fastRoutes?.(app) ?? []),
      chain,
      logger,
    );
    // Before listen: Node starts its timeout checker, at connectionsCheckingInterval, on 'listening'.
    Object.assign(server, { ...HTTP_TIMEOUTS, ...options.httpTimeouts });
    await app.listen(config.port, config.host);
    const port = (server.address() as AddressInfo).port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;

    // Announce each service through its outbox: proves the database → outbox → stream path on every start.
    for (const def of chosen) {
      const ds = dataSources.get(def.service)!;
      await ds.transaction((manager) =>
        Outbox.enqueue(manager, ServiceStartedEvent, { service: def.service, instance: config.instanceId, version: STACK_VERSION, started_at: new Date().toISOString() }, { id: randomUUID() }),
      );
    }
    for (const r of relays) r.notify();

    logger.info({ url, public_url: config.publicUrl, services: config.services, bus: bus.kind, database: config.databaseUrl ? 'postgres' : 'embedded', cache: config.redisUrl ? 'redis' : 'memory' }, 'STACK is ready');

    let stopping: Promise<void> | undefined;
    const stop = (reason = 'stop') => {
      stopping ??= (async () => {
        state.draining = true;
        logger.info({ reason, deadline_ms: config.shutdownTimeoutMs }, 'shutting down: no new requests, finishing in-flight work');
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), config.shutdownTimeoutMs).unref());
        if ((await Promise.race([drained.then(() => 'drained' as const), timer])) === 'timeout') {
          logger.warn({}, 'shutdown deadline reached: closing remaining connections');
          server.closeAllConnections();
        }
        await closeAll();
        logger.info({}, 'stopped');
      })();
      return stopping;
    };

    stopNow = stop;
    if (stopRequested) {
      await stop(stopRequested);
      process.exit(0);
    }

    return { app, config, url, port, logger, bus, dataSources, stop };
  } catch (err) {
    if (err instanceof StartAborted) {
      await closeAll();
      logger.info({ signal: err.signal }, 'stopped before start finished');
      process.exit(0);
    }
    logger.error({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'STACK failed to start');
    await closeAll();
    throw err;
  }
}

/** A path as Express's router compares it: case-insensitive, one trailing slash optional. */
function routingKey(path: string): string {
  const lower = path.toLowerCase();
  return lower.length > 1 && lower.endsWith('/') ? lower.slice(0, -1) : lower;
}

class StartAborted extends Error {
  constructor(readonly signal: string) {
    super(`start aborted by ${signal}`);
  }
}

export { SERVICE_NAMES };
