import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { HttpMiddleware } from './http-middleware.types';
import { createMetrics, type StackMetrics } from './metrics';

function serve(middleware: HttpMiddleware[], handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const run = (i: number): void => {
      if (i === middleware.length) return handler(req, res);
      middleware[i](req, res, (err) => (err ? res.writeHead(500).end() : run(i + 1)));
    };
    run(0);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

/** The value of one sample line, found by metric name and exact labels (order-insensitive). */
function sample(body: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of body.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v) && Object.keys(found).length === Object.keys(labels).length) return Number(match[3]);
  }
  return undefined;
}

describe('createMetrics', () => {
  let metrics: StackMetrics;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    metrics = createMetrics({ service: 'passport', instance: 'node-1' });
    ({ server, url } = await serve([metrics.httpMiddleware()], (req, res) => {
      // What Express does when a route matches: the pattern, not the path, on req.route.
      if (req.url?.startsWith('/v1/agents/')) {
        (req as IncomingMessage & { route: { path: string } }).route = { path: '/v1/agents/:id' };
        res.end('{}');
      } else if (req.url === '/boom') {
        (req as IncomingMessage & { route: { path: string } }).route = { path: '/boom' };
        res.writeHead(500).end();
      } else {
        res.writeHead(404).end();
      }
    }));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('renders Prometheus text with the default and STACK series', async () => {
    await fetch(`${url}/v1/agents/agt_1`).then((r) => r.text());
    await fetch(`${url}/v1/agents/agt_2`).then((r) => r.text());
    await fetch(`${url}/boom`).then((r) => r.text());
    await fetch(`${url}/random/path/${Math.random()}`).then((r) => r.text());
    await fetch(`${url}/another/unknown`, { method: 'POST' }).then((r) => r.text());
    metrics.recordBusRequest('stack.passport.ping', 'ok', 0.002);
    metrics.recordBusRequest('stack.passport.ping', 'timeout', 5);
    metrics.recordBusHandled('stack.audit.append', 'ok');
    metrics.outboxPending.set(7);
    metrics.outboxPublishedTotal.inc(3);
    // The 'finish' event that records may run just after the client saw the response.
    await new Promise((resolve) => setTimeout(resolve, 20));

    const { contentType, body } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const base = { service: 'passport', instance: 'node-1' };
    expect(body).toContain('# TYPE stack_http_requests_total counter');
    expect(sample(body, 'stack_http_requests_total', { ...base, method: 'GET', route: '/v1/agents/:id', status: '200' })).toBe(2);
    expect(sample(body, 'stack_http_requests_total', { ...base, method: 'GET', route: '/boom', status: '500' })).toBe(1);
    // Unmatched paths collapse into one label value, whatever the path.
    expect(sample(body, 'stack_http_requests_total', { ...base, method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(sample(body, 'stack_http_requests_total', { ...base, method: 'POST', route: 'unmatched', status: '404' })).toBe(1);
    expect(body).not.toContain('/random/path');
    expect(body).toContain('# TYPE stack_http_request_duration_seconds histogram');
    expect(sample(body, 'stack_http_request_duration_seconds_count', { ...base, method: 'GET', route: '/v1/agents/:id', status: '200' })).toBe(2);
    expect(sample(body, 'stack_http_request_duration_seconds_bucket', { ...base, le: '+Inf', method: 'GET', route: '/v1/agents/:id', status: '200' })).toBe(2);
    expect(sample(body, 'stack_bus_requests_total', { ...base, subject: 'stack.passport.ping', outcome: 'ok' })).toBe(1);
    expect(sample(body, 'stack_bus_requests_total', { ...base, subject: 'stack.passport.ping', outcome: 'timeout' })).toBe(1);
    expect(sample(body, 'stack_bus_request_duration_seconds_sum', { ...base, subject: 'stack.passport.ping', outcome: 'timeout' })).toBe(5);
    expect(sample(body, 'stack_bus_request_duration_seconds_bucket', { ...base, le: '0.0025', subject: 'stack.passport.ping', outcome: 'ok' })).toBe(1);
    expect(sample(body, 'stack_bus_handled_total', { ...base, subject: 'stack.audit.append', outcome: 'ok' })).toBe(1);
    expect(sample(body, 'stack_outbox_pending', base)).toBe(7);
    expect(sample(body, 'stack_outbox_published_total', base)).toBe(3);
    // Node's defaults are there.
    expect(sample(body, 'process_cpu_user_seconds_total', base)).toBeGreaterThan(0);
    expect(body).toContain('nodejs_eventloop_lag_seconds');
  });

  it('keeps registries apart and omits the service label when none is given', async () => {
    const other = createMetrics({ instance: 'solo', defaultMetrics: false });
    other.outboxPending.set(1);
    const { body } = await other.render();
    expect(sample(body, 'stack_outbox_pending', { instance: 'solo' })).toBe(1);
    expect(body).not.toContain('process_cpu_user_seconds_total');
    expect(body).not.toContain('node-1');
  });

  it('names a missing instance', () => {
    expect(() => createMetrics({ instance: '' })).toThrow(/instance must be a non-empty string/);
  });
});
