/**
 * The foundation on the distributed topology: six processes (one per service) on the real
 * Postgres, NATS and Redis, behind the reverse proxy with the Ingress's routes.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type BusConnection } from '@stack/bus';
import { SERVICE_NAMES, SYSTEM_COMMANDS, ServiceStartedEvent, type ServiceName } from '@stack/contracts';
import { startDistributedStack, type DistributedStack } from '@stack/testing';

import { expectErrorEnvelope, expectMetrics, expectOpenApiParses, expectPeersAnswer, expectReady, expectRequestIdLogged, expectRoutesToOwners } from './support/foundation-checks';
import { startOtlpCollector, type OtlpCollector } from './support/otlp-collector';
import { eventually } from './support/wait';

describe('foundation, distributed: six processes behind the reverse proxy', () => {
  let stack: DistributedStack;
  let collector: OtlpCollector;
  let bus: BusConnection;

  beforeAll(async () => {
    collector = await startOtlpCollector();
    stack = await startDistributedStack({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url } });
    bus = await connectNatsBus({ servers: stack.natsUrl, prefix: stack.busPrefix, internalSecret: Buffer.from(stack.internalSecret, 'base64'), timeoutMs: 5000, instanceId: 'e2e' });
  });

  afterAll(async () => {
    await bus?.close();
    await stack?.stop();
    await collector?.stop();
  });

  it('runs each service in its own process, each ready: its database, a bus round trip and the cache', async () => {
    expect(stack.processes.map((p) => p.service).sort()).toEqual([...SERVICE_NAMES].sort());
    expect(new Set(stack.processes.map((p) => p.process.pid)).size).toBe(6);
    for (const p of stack.processes) await expectReady(p.url, [p.service]);
  });

  it('has every service answer a ping from every other service over the bus', async () => {
    for (const p of stack.processes) await expectPeersAnswer(p.url, [p.service]);
    // And straight from a bus client of the test: each service, asked over NATS, reaches the five others.
    for (const service of SERVICE_NAMES) {
      const reply = await bus.forService('audit').request(SYSTEM_COMMANDS[service].pingPeers, { timeout_ms: 2000 });
      const owner = stack.processes.find((p) => p.service === service)!;
      expect(reply.instance).toBe(owner.instanceId);
      expect(reply.peers.filter((x) => x.ok).map((x) => x.service).sort()).toEqual(SERVICE_NAMES.filter((s) => s !== service).sort());
      for (const peer of reply.peers) expect(peer.instance).toBe(stack.processes.find((p) => p.service === peer.service)!.instanceId);
    }
  });

  it('routes every public path to the process of the service that owns it', async () => {
    await expectRoutesToOwners(stack.publicUrl, (service) => service);
  });

  it('answers errors in the error envelope, serves an OpenAPI document that parses, and Prometheus metrics', async () => {
    await expectErrorEnvelope(stack.publicUrl);
    await expectOpenApiParses(stack.publicUrl);
    for (const p of stack.processes) await expectMetrics(p.url);
  });

  it('writes JSON logs carrying the request id', async () => {
    const passport = stack.processes.find((p) => p.service === 'passport')!;
    await expectRequestIdLogged(stack.publicUrl, () => passport.process.logs());
  });

  it('relays each service start from its outbox to the STACK_EVENTS stream', async () => {
    const seen = new Map<ServiceName, string>();
    const handle = await bus.forService('audit').consume({ durable: `e2e-${randomBytes(4).toString('hex')}`, events: [ServiceStartedEvent] }, async (_e, payload) => {
      const p = payload as { service: ServiceName; instance: string };
      seen.set(p.service, p.instance);
    });
    try {
      await eventually(() => (seen.size === 6 ? true : undefined), 15_000, 'six service.started events');
    } finally {
      await handle.stop();
    }
    for (const p of stack.processes) expect(seen.get(p.service)).toBe(p.instanceId);
  });

  it('follows one trace from an HTTP request across bus hops into other processes', async () => {
    const traceId = randomBytes(16).toString('hex');
    const gateway = stack.processes.find((p) => p.service === 'mcp-gateway')!;
    const res = await fetch(`${gateway.url}/readyz?peers=1`, { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
    expect(res.status).toBe(200);
    // Every span but the HTTP root has its parent inside the same trace. A parent ends (and is
    // exported) after its children, so the spans are awaited until the tree is whole, not only
    // until every process has sent one.
    const orphansOf = (spans: ReturnType<typeof collector.spans>) => {
      const ids = new Set(spans.map((s) => s.spanId));
      return spans.filter((s) => s.parentSpanId && !ids.has(s.parentSpanId));
    };
    const spans = await eventually(() => {
      const mine = collector.spans().filter((s) => s.traceId === traceId);
      return new Set(mine.map((s) => s.serviceName)).size >= 6 && orphansOf(mine).length <= 1 ? mine : undefined;
    }, 20_000, 'spans of the trace from all six processes, each with its parent');
    const services = new Set(spans.map((s) => s.serviceName));
    expect(services).toEqual(new Set(SERVICE_NAMES.map((s) => `stack-${s}`)));
    expect(orphansOf(spans).length).toBeLessThanOrEqual(1);
  });

  it('stops gracefully on SIGTERM: finishes, closes and exits 0', async () => {
    const audit = stack.processes.find((p) => p.service === 'audit')!;
    const code = await stack.removeReplica(audit, { signal: 'SIGTERM', timeoutMs: 15_000 });
    expect(code).toBe(0);
    const lines = audit.process.logs().filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
    const msgs = lines.map((l) => l.msg);
    expect(msgs).toContain('stopped');
    expect(msgs.indexOf('stopped')).toBeGreaterThan(msgs.findIndex((m) => m.startsWith('shutting down')));
    // The others notice on the bus: audit no longer answers.
    const reply = await bus.forService('passport').request(SYSTEM_COMMANDS.passport.pingPeers, { timeout_ms: 500 });
    expect(reply.peers.find((x) => x.service === 'audit')?.ok).toBe(false);
  });
});
