import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-node';

import type { HttpMiddleware } from './http-middleware.types';
import { createLogger } from './logger';
import { requestContext, requestIdMiddleware } from './request-context';
import {
  currentTraceId,
  extractTraceContext,
  initTracing,
  injectTraceHeaders,
  SpanKind,
  SpanStatusCode,
  type TracingHandle,
  tracingMiddleware,
  withSpan,
} from './tracing';

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

async function waitForSpans(exporter: InMemorySpanExporter, count: number): Promise<ReadableSpan[]> {
  const deadline = Date.now() + 2000;
  while (exporter.getFinishedSpans().length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  return exporter.getFinishedSpans();
}

function byName(spans: ReadableSpan[], name: string): ReadableSpan {
  const span = spans.find((s) => s.name === name);
  if (!span) throw new Error(`no span named ${name}; have ${spans.map((s) => s.name).join(', ')}`);
  return span;
}

describe('tracing across an HTTP hop and a bus hop', () => {
  const exporter = new InMemorySpanExporter();
  const logLines: string[] = [];
  const logger = createLogger({ level: 'info', service: 'mcp-gateway', instance: 'i1', destination: { write: (l: string) => logLines.push(l) } });
  let tracing: TracingHandle;
  let server: Server;
  let url: string;

  /** The "receiving service": what the bus library does with an incoming message. */
  async function handleBusMessage(headers: Record<string, string>, payload: { n: number }): Promise<number> {
    return withSpan('bus handle stack.passport.ping', { kind: SpanKind.CONSUMER, parent: extractTraceContext(headers), attributes: { 'messaging.destination.name': 'stack.passport.ping' } }, async () => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      logger.info({ n: payload.n }, 'handling bus message');
      return payload.n + 1;
    });
  }

  beforeAll(async () => {
    tracing = initTracing({ serviceName: 'stack-test', instance: 'i1', exporter });
    ({ server, url } = await serve([requestIdMiddleware, tracingMiddleware()], (req, res) => {
      (req as IncomingMessage & { route: { path: string } }).route = { path: req.url === '/fail' ? '/fail' : '/v1/things/:id' };
      void (async () => {
        if (req.url === '/fail') {
          res.writeHead(500).end();
          return;
        }
        logger.info('http handler');
        // The "sending service": what the bus library does when it sends a request.
        const answer = await withSpan('bus request stack.passport.ping', { kind: SpanKind.CLIENT }, async () => {
          const headers = injectTraceHeaders({ 'Stack-Msg-Id': 'msg_1' });
          // Serialise and parse, as a transport would: only the strings travel.
          return handleBusMessage(JSON.parse(JSON.stringify(headers)) as Record<string, string>, { n: 41 });
        });
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ answer, traceId: currentTraceId(), ctxTrace: requestContext.current()?.traceId }));
      })();
    }));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await tracing.shutdown();
  });

  beforeEach(() => {
    exporter.reset();
    logLines.length = 0;
  });

  it('continues the caller trace through HTTP, the bus request and the handler, with correct parents', async () => {
    const callerTraceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpanId = '00f067aa0ba902b7';
    const res = await fetch(`${url}/v1/things/42?secret=no`, { headers: { traceparent: `00-${callerTraceId}-${callerSpanId}-01`, 'x-request-id': 'req-from-caller' } });
    const body = (await res.json()) as { answer: number; traceId: string; ctxTrace: string };
    expect(body.answer).toBe(42);
    expect(body.traceId).toBe(callerTraceId);
    expect(body.ctxTrace).toBe(callerTraceId);

    const spans = await waitForSpans(exporter, 3);
    expect(spans).toHaveLength(3);
    const server = byName(spans, 'GET /v1/things/:id');
    const client = byName(spans, 'bus request stack.passport.ping');
    const consumer = byName(spans, 'bus handle stack.passport.ping');

    for (const span of spans) expect(span.spanContext().traceId).toBe(callerTraceId);
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.parentSpanContext?.spanId).toBe(callerSpanId);
    expect(server.parentSpanContext?.isRemote).toBe(true);
    expect(client.kind).toBe(SpanKind.CLIENT);
    expect(client.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(consumer.kind).toBe(SpanKind.CONSUMER);
    expect(consumer.parentSpanContext?.spanId).toBe(client.spanContext().spanId);
    expect(consumer.parentSpanContext?.isRemote).toBe(true);
    expect(server.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.route': '/v1/things/:id', 'url.path': '/v1/things/42', 'http.response.status_code': 200 });
    expect(consumer.attributes['messaging.destination.name']).toBe('stack.passport.ping');
    expect(server.resource.attributes['service.name']).toBe('stack-test');

    // Log lines inside the request and inside the bus handler carry the ids of their own spans.
    const logs = logLines.map((l) => JSON.parse(l) as Record<string, string>);
    const httpLog = logs.find((l) => l.msg === 'http handler');
    const busLog = logs.find((l) => l.msg === 'handling bus message');
    expect(httpLog).toMatchObject({ request_id: 'req-from-caller', trace_id: callerTraceId, span_id: server.spanContext().spanId });
    expect(busLog).toMatchObject({ trace_id: callerTraceId, span_id: consumer.spanContext().spanId });
  });

  it('starts a new trace when the request carries none, and marks 5xx as errors', async () => {
    await fetch(`${url}/v1/things/1`).then((r) => r.text());
    await fetch(`${url}/fail`).then((r) => r.text());
    const spans = await waitForSpans(exporter, 4);
    const roots = spans.filter((s) => s.kind === SpanKind.SERVER);
    expect(roots).toHaveLength(2);
    for (const root of roots) expect(root.parentSpanContext).toBeUndefined();
    expect(roots[0].spanContext().traceId).not.toBe(roots[1].spanContext().traceId);
    const failed = byName(spans, 'GET /fail');
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed.attributes['http.response.status_code']).toBe(500);
  });

  it('ignores a malformed traceparent', async () => {
    await fetch(`${url}/v1/things/1`, { headers: { traceparent: '00-zzzz-not-a-trace-01' } }).then((r) => r.text());
    const spans = await waitForSpans(exporter, 3);
    const root = spans.find((s) => s.kind === SpanKind.SERVER);
    expect(root?.parentSpanContext).toBeUndefined();
    expect(root?.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('withSpan', () => {
  const exporter = new InMemorySpanExporter();
  let tracing: TracingHandle;
  beforeAll(() => {
    tracing = initTracing({ serviceName: 'with-span', instance: 'i1', exporter });
  });
  afterAll(() => tracing.shutdown());
  beforeEach(() => exporter.reset());

  it('records an exception, sets ERROR, rethrows and ends the span', async () => {
    await expect(
      withSpan('failing', { attributes: { a: 1 } }, async () => {
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    const [span] = exporter.getFinishedSpans();
    expect(span.name).toBe('failing');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'handler failed' });
    expect(span.events.map((e) => e.name)).toEqual(['exception']);
    expect(span.events[0].attributes?.['exception.message']).toBe('handler failed');
    expect(span.attributes.a).toBe(1);
  });

  it('makes its span active inside fn and restores the previous one after', async () => {
    await withSpan('outer', {}, async (outer) => {
      expect(trace.getSpan(context.active())).toBe(outer);
      await withSpan('inner', {}, async (inner) => {
        expect(trace.getSpan(context.active())).toBe(inner);
      });
      expect(trace.getSpan(context.active())).toBe(outer);
    });
    const [inner, outer] = exporter.getFinishedSpans();
    expect(inner.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    expect(trace.getSpan(context.active())).toBeUndefined();
  });

  it('injects nothing outside a span, and traceparent inside one', async () => {
    expect(injectTraceHeaders({})).toEqual({});
    const headers = await withSpan('sender', {}, (span) => {
      const carrier = injectTraceHeaders({});
      expect(carrier.traceparent).toBe(`00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
      return carrier;
    });
    expect(Object.keys(headers)).toEqual(['traceparent']);
  });

  it('extracts case-insensitively and from header arrays', () => {
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    for (const carrier of [{ Traceparent: tp }, { traceparent: [tp] }]) {
      const spanContext = trace.getSpanContext(extractTraceContext(carrier));
      expect(spanContext?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(spanContext?.spanId).toBe('00f067aa0ba902b7');
    }
    expect(trace.getSpanContext(extractTraceContext({}))).toBeUndefined();
  });
});

const CHILD_TIMEOUT_MS = 60_000;

describe('initTracing called more than once', () => {
  it('keeps the first exporter working when a second joins and leaves', async () => {
    const first = new InMemorySpanExporter();
    const second = new InMemorySpanExporter();
    const a = initTracing({ serviceName: 'first', instance: 'i1', exporter: first });
    expect(a.registered).toBe(true);
    await withSpan('one', {}, () => undefined);
    const b = initTracing({ serviceName: 'second', instance: 'i2', exporter: second });
    expect(b.registered).toBe(true);
    await withSpan('two', {}, () => undefined);
    expect(second.getFinishedSpans().map((s) => s.name)).toEqual(['two']);
    const exportedToSecond = jest.spyOn(second, 'export');
    await b.shutdown();
    await withSpan('three', {}, () => undefined);
    expect(first.getFinishedSpans().map((s) => s.name)).toEqual(['one', 'two', 'three']);
    expect(exportedToSecond).not.toHaveBeenCalled();
    // The handle's own tracer records into the same provider.
    a.tracer.startSpan('from-handle-tracer').end();
    expect(first.getFinishedSpans().map((s) => s.name)).toContain('from-handle-tracer');
    await a.shutdown();
  });

  // The OTLP exporter loads node:http with a dynamic import(), which Jest's module sandbox cannot
  // run; so this test exports from a plain Node child process, as a service would.
  it('exports over OTLP/HTTP to the configured endpoint', async () => {
    const received: { path?: string; type?: string; body: string }[] = [];
    const collector = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        received.push({ path: req.url, type: req.headers['content-type'], body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', () => resolve()));
    try {
      const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/`;
      const script = `
        const { initTracing, withSpan } = require(${JSON.stringify(require.resolve('./tracing.ts'))});
        const handle = initTracing({ serviceName: 'otlp-child', instance: 'c1', otlpEndpoint: ${JSON.stringify(endpoint)} });
        withSpan('exported-over-otlp', {}, () => undefined).then(() => handle.shutdown()).catch((e) => { console.error(e); process.exit(1); });
      `;
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
        child.on('close', (exitCode) => resolve({ code: exitCode, stderr: err }));
      });
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(received).toHaveLength(1);
      expect(received[0].path).toBe('/v1/traces');
      expect(received[0].type).toBe('application/json');
      expect(received[0].body).toContain('exported-over-otlp');
      expect(received[0].body).toContain('otlp-child');
    } finally {
      await new Promise<void>((resolve) => collector.close(() => resolve()));
    }
    // A child that compiles the tracing module with ts-node first: seconds on a loaded 2-core machine.
  }, CHILD_TIMEOUT_MS);

  // A fresh process: this file's other tests registered exporters in the shared provider.
  it('records no span while no exporter listens, yet makes and propagates trace ids; records once one joins', async () => {
    const script = `
      const { initTracing, withSpan, injectTraceHeaders, currentTraceId } = require(${JSON.stringify(require.resolve('./tracing.ts'))});
      const { InMemorySpanExporter } = require('@opentelemetry/sdk-trace-node');
      initTracing({ serviceName: 'quiet', instance: 'q1' });
      (async () => {
        const before = await withSpan('unexported', {}, (span) => ({ recording: span.isRecording(), traceId: currentTraceId(), headers: injectTraceHeaders({}) }));
        const exporter = new InMemorySpanExporter();
        initTracing({ serviceName: 'quiet', instance: 'q1', exporter });
        const after = await withSpan('exported', {}, (span) => ({ recording: span.isRecording() }));
        process.stdout.write(JSON.stringify({ before, after, exported: exporter.getFinishedSpans().map((s) => s.name) }));
      })().catch((e) => { console.error(e); process.exit(1); });
    `;
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
      child.on('close', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { before: { recording: boolean; traceId?: string; headers: { traceparent?: string } }; after: { recording: boolean }; exported: string[] };
    expect(result.before.recording).toBe(false);
    expect(result.before.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(result.before.headers.traceparent).toContain(result.before.traceId);
    expect(result.after.recording).toBe(true);
    expect(result.exported).toEqual(['exported']);
  }, CHILD_TIMEOUT_MS);

  it('names a missing option', () => {
    expect(() => initTracing({ serviceName: '', instance: 'i' })).toThrow(/serviceName must be a non-empty string/);
  });
});
