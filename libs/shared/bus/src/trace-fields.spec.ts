import { ROOT_CONTEXT, TraceFlags, context, createTraceState, trace, type SpanContext } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator, suppressTracing } from '@opentelemetry/core';

import { currentTraceFields } from './dispatch';

/** What the standard W3C propagator writes for a context: the fields currentTraceFields must match. */
function w3c(ctx: typeof ROOT_CONTEXT): Record<string, string> {
  const carrier: Record<string, string> = {};
  new W3CTraceContextPropagator().inject(ctx, carrier, { set: (c, k, v) => ((c as Record<string, string>)[k] = v) });
  return carrier;
}

const sampled: SpanContext = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED };

describe('currentTraceFields (the trace context a bus message carries)', () => {
  const manager = new AsyncLocalStorageContextManager();
  beforeAll(() => context.setGlobalContextManager(manager.enable()));
  afterAll(() => {
    manager.disable();
    context.disable();
  });

  it.each([
    ['a sampled span', sampled],
    ['an unsampled span', { ...sampled, traceFlags: TraceFlags.NONE }],
    ['a span with a tracestate', { ...sampled, traceState: createTraceState('vendor=a1,other=b2') }],
    ['an invalid span context', { ...sampled, traceId: '00000000000000000000000000000000' }],
  ])('writes what the W3C propagator writes, for %s', (_label, sc) => {
    const ctx = trace.setSpanContext(ROOT_CONTEXT, sc);
    expect(context.with(ctx, () => currentTraceFields())).toEqual(w3c(ctx));
    // Given the span itself, outside any active context, the same.
    expect(currentTraceFields(trace.wrapSpanContext(sc))).toEqual(w3c(ctx));
  });

  it('writes nothing without a span or when tracing is suppressed', () => {
    expect(currentTraceFields()).toEqual({});
    const suppressed = suppressTracing(trace.setSpanContext(ROOT_CONTEXT, sampled));
    expect(w3c(suppressed)).toEqual({});
    expect(context.with(suppressed, () => currentTraceFields())).toEqual({});
  });

  it('spells the fields exactly', () => {
    const ctx = trace.setSpanContext(ROOT_CONTEXT, { ...sampled, traceState: createTraceState('vendor=a1') });
    expect(context.with(ctx, () => currentTraceFields())).toEqual({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'vendor=a1' });
  });
});
