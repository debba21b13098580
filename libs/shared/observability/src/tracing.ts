/**
 * OpenTelemetry tracing: one tracer provider per process, W3C trace context on every HTTP request
 * and bus message, so one trace follows a call from the public edge through every bus hop.
 *
 * The provider is registered once per process. `initTracing` may be called again (the one-process
 * mode starts several services; tests start several apps): a later call adds its exporters to the
 * same provider instead of replacing it, so the first caller keeps receiving its spans.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  SamplingDecision,
  type SamplingResult,
  SimpleSpanProcessor,
  type Span as SdkSpan,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-node';

import { type HttpMiddleware, type HttpNext, matchedRoute } from './http-middleware.types';
import { currentRequestContext, requestContext, resolveRequestId } from './request-context';

const TRACER_NAME = '@stack/observability';

export interface InitTracingOptions {
  serviceName: string;
  instance: string;
  /** OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT); `/v1/traces` is appended unless present. */
  otlpEndpoint?: string;
  /** An extra exporter, each span handed over as it ends (tests pass an InMemorySpanExporter). */
  exporter?: SpanExporter;
}

export interface TracingHandle {
  /** A tracer named after this call's service. */
  readonly tracer: Tracer;
  /** False when another tracer provider was registered globally before ours (ours then sees no spans). */
  readonly registered: boolean;
  forceFlush(): Promise<void>;
  /** Flushes and detaches this call's exporters; other callers' exporters keep running. */
  shutdown(): Promise<void>;
}

/** Forwards every span to a changing set of processors, so exporters can join and leave. */
class FanOutSpanProcessor implements SpanProcessor {
  private readonly processors = new Set<SpanProcessor>();

  add(processor: SpanProcessor): void {
    this.processors.add(processor);
  }

  remove(processor: SpanProcessor): void {
    this.processors.delete(processor);
  }

  get size(): number {
    return this.processors.size;
  }

  onStart(span: SdkSpan, parentContext: Context): void {
    for (const p of this.processors) p.onStart(span, parentContext);
  }

  onEnding(span: SdkSpan): void {
    for (const p of this.processors) p.onEnding?.(span);
  }

  onEnd(span: ReadableSpan): void {
    for (const p of this.processors) p.onEnd(span);
  }

  async forceFlush(): Promise<void> {
    await Promise.all([...this.processors].map((p) => p.forceFlush()));
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.processors].map((p) => p.shutdown()));
    this.processors.clear();
  }
}

/**
 * Records a span only while some exporter listens. Without one (OTEL_EXPORTER_OTLP_ENDPOINT unset),
 * spans are non-recording: trace ids are still made, propagated and logged, but no span objects,
 * attributes or events are built on every request and bus message for nobody to read.
 */
class WhileExportingSampler implements Sampler {
  constructor(private readonly fanOut: FanOutSpanProcessor) {}

  shouldSample(): SamplingResult {
    return { decision: this.fanOut.size > 0 ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
  }

  toString(): string {
    return 'WhileExportingSampler';
  }
}

interface TracingState {
  provider: NodeTracerProvider;
  fanOut: FanOutSpanProcessor;
  registered: boolean;
}

// Kept on globalThis, not in a module variable: two copies of this module in one process (a
// bundler, a test runner's registry) must still share the one provider the OTel API knows.
const STATE_KEY = Symbol.for('stack.observability.tracing');

function tracingState(): TracingState | undefined {
  return (globalThis as { [STATE_KEY]?: TracingState })[STATE_KEY];
}

export function initTracing(options: InitTracingOptions): TracingHandle {
  for (const name of ['serviceName', 'instance'] as const) {
    if (typeof options[name] !== 'string' || options[name].length === 0) {
      throw new Error(`initTracing: ${name} must be a non-empty string`);
    }
  }
  let state = tracingState();
  if (!state) {
    const fanOut = new FanOutSpanProcessor();
    const whileExporting = new WhileExportingSampler(fanOut);
    const provider = new NodeTracerProvider({
      // The first caller names the process; in the one-process mode that is the whole of STACK.
      resource: resourceFromAttributes({ 'service.name': options.serviceName, 'service.instance.id': options.instance }),
      spanProcessors: [fanOut],
      // As the default (ParentBased): a caller's sampled=0 is kept; otherwise recorded only while exporting.
      sampler: new ParentBasedSampler({ root: whileExporting, remoteParentSampled: whileExporting, localParentSampled: whileExporting }),
    });
    // register() installs the AsyncLocalStorage context manager and the propagator globally.
    provider.register({
      propagator: new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    });
    // The OTel API keeps the first provider registered: someone else's may already be in place.
    const global = trace.getTracerProvider();
    const registered = global instanceof ProxyTracerProvider && global.getDelegate() === provider;
    state = { provider, fanOut, registered };
    (globalThis as { [STATE_KEY]?: TracingState })[STATE_KEY] = state;
  }

  const mine: SpanProcessor[] = [];
  if (options.otlpEndpoint) {
    mine.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: otlpTracesUrl(options.otlpEndpoint) })));
  }
  if (options.exporter) mine.push(new SimpleSpanProcessor(options.exporter));
  for (const processor of mine) state.fanOut.add(processor);

  const { fanOut, registered } = state;
  return {
    tracer: trace.getTracer(options.serviceName),
    registered,
    async forceFlush() {
      await Promise.all(mine.map((p) => p.forceFlush()));
    },
    async shutdown() {
      for (const processor of mine) fanOut.remove(processor);
      await Promise.all(mine.map((p) => p.shutdown()));
    },
  };
}

function otlpTracesUrl(endpoint: string): string {
  const trimmed = endpoint.replace(/\/+$/, '');
  return trimmed.endsWith('/v1/traces') ? trimmed : `${trimmed}/v1/traces`;
}

// Propagation uses its own W3C propagator rather than the global one, so trace headers are written
// and read the same way even in a process that never called initTracing.
const w3c = new W3CTraceContextPropagator();

export type TraceCarrier = Record<string, string | string[] | undefined>;

const setter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) {
    carrier[key] = value;
  },
};

const getter: TextMapGetter<TraceCarrier> = {
  keys: (carrier) => Object.keys(carrier),
  get(carrier, key) {
    const direct = carrier[key];
    if (direct !== undefined) return direct;
    // Bus headers may arrive with their case changed by a transport.
    const found = Object.keys(carrier).find((k) => k.toLowerCase() === key);
    return found === undefined ? undefined : carrier[found];
  },
};

/** Writes `traceparent` (and `tracestate`) of the active span into `carrier`; returns it. */
export function injectTraceHeaders<C extends Record<string, string>>(carrier: C, ctx: Context = context.active()): C & { traceparent?: string; tracestate?: string } {
  w3c.inject(ctx, carrier, setter);
  return carrier;
}

/** The context described by a carrier's `traceparent`/`tracestate`, to pass as a span's parent. */
export function extractTraceContext(carrier: TraceCarrier, base: Context = ROOT_CONTEXT): Context {
  return w3c.extract(base, carrier, getter);
}

/** The trace id of the active span, if any (for audit entries and error reports). */
export function currentTraceId(): string | undefined {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  return spanContext && isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
}

export interface WithSpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** Parent context (from `extractTraceContext`); default: the active context. */
  parent?: Context;
}

/**
 * Runs `fn` inside a new active span: a thrown error is recorded on the span and sets its status
 * to ERROR (then rethrown); the span always ends.
 */
export async function withSpan<T>(name: string, options: WithSpanOptions, fn: (span: Span) => T | Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = trace.getTracer(TRACER_NAME).startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    recordError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

function recordError(span: Span, err: unknown): void {
  if (err instanceof Error) span.recordException(err);
  else span.recordException(String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

export interface TracingMiddlewareOptions {
  /** How to name a request's route; default: the pattern Express matched. */
  routeOf?: (req: IncomingMessage) => string | undefined;
}

/**
 * Express-compatible middleware: one SERVER span per HTTP request, continuing the caller's
 * `traceparent`; the rest of the request runs inside it, with the trace id in the request context.
 * Mount after `requestIdMiddleware`.
 */
export function tracingMiddleware(options: TracingMiddlewareOptions = {}): HttpMiddleware {
  const routeOf = options.routeOf ?? matchedRoute;
  return (req: IncomingMessage, res: ServerResponse, next: HttpNext) => {
    const method = req.method ?? 'GET';
    const parent = extractTraceContext(req.headers);
    const span = trace.getTracer(TRACER_NAME).startSpan(
      method,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': method, 'url.path': (req.url ?? '/').split('?')[0] },
      },
      parent,
    );
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      const route = routeOf(req);
      if (route) {
        span.updateName(`${method} ${route}`);
        span.setAttribute('http.route', route);
      }
      if (res.writableFinished) {
        span.setAttribute('http.response.status_code', res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      } else {
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'client closed the connection before the response was finished' });
      }
      span.end();
    };
    res.once('finish', end);
    res.once('close', end);

    const spanContext = span.spanContext();
    const traced = isSpanContextValid(spanContext) ? { traceId: spanContext.traceId, spanId: spanContext.spanId } : {};
    const current = currentRequestContext();
    const requestId = current?.requestId ?? resolveRequestId(req, res);
    const ctx = trace.setSpan(parent, span);
    requestContext.run({ ...current, requestId, ...traced }, () => context.with(ctx, () => next()));
  };
}

// Re-exported so callers of withSpan need no direct dependency on the OTel API.
export { SpanKind, SpanStatusCode };
export type { Context, Span, SpanExporter };
