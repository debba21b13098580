/**
 * What happens to an inbound command before and after its handler, the same for NATS and
 * the in-process bus: decode the envelope, verify the caller context, validate the payload,
 * run the handler inside a span continuing the sender's trace, and — for a request its sender
 * may resend (`replay`) — remember the reply by message id for a while, so the resend gets
 * the same answer instead of a second effect. A handler that answers synchronously is answered synchronously: this is the
 * hot path of every tool call.
 */
import { SpanKind, SpanStatusCode, TraceFlags, context, isSpanContextValid, propagation, trace, type Context, type Span } from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';

import { StackError, type CommandDef, type RequestEnvelope } from '@stack/contracts';
import type { CallerContextSigner } from '@stack/security';

import type { CommandHandler, MessageContext } from './bus';
import type { BusLogger } from './connection';
import { decodeRequest, errorReply, okReply } from './envelope';
import { assertValid } from './validation';

export interface InboundRequest {
  subject: string;
  data: Uint8Array;
}

export interface BusMetricsSink {
  requestCompleted(subject: string, outcome: 'ok' | 'error' | 'timeout' | 'no_responders', seconds: number): void;
  messageHandled(subject: string, outcome: 'ok' | 'error' | 'rejected', seconds: number): void;
}

const REPLAY_TTL_MS = 60_000;
const REPLAY_LIMIT = 5_000;

export const tracer = trace.getTracer('stack-bus');

export function traceContextOf(traceparent: string | undefined, tracestate: string | undefined): Context {
  if (!traceparent) return context.active();
  const carrier: Record<string, string> = { traceparent };
  if (tracestate) carrier.tracestate = tracestate;
  return propagation.extract(context.active(), carrier);
}

/**
 * The W3C fields of `span` (or of the active context): what the receiver continues from. Written
 * here as W3CTraceContextPropagator writes them (nothing when tracing is suppressed or the span
 * context is invalid) rather than through the global propagator, which builds a carrier and
 * walks a composite on every message — and the receiver reads these two fields only.
 */
export function currentTraceFields(span?: Span): { traceparent?: string; tracestate?: string } {
  const active = context.active();
  if (isTracingSuppressed(active)) return {};
  const sc = (span ?? trace.getSpan(active))?.spanContext();
  if (!sc || !isSpanContextValid(sc)) return {};
  const fields: { traceparent: string; tracestate?: string } = { traceparent: `00-${sc.traceId}-${sc.spanId}-0${Number(sc.traceFlags || TraceFlags.NONE).toString(16)}` };
  if (sc.traceState) fields.tracestate = sc.traceState.serialize();
  return fields;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function';
}

export class CommandDispatcher<C extends CommandDef> {
  private readonly replies = new Map<string, { at: number; who: string; reply: Uint8Array | Promise<Uint8Array> }>();
  /** Handlers still running: a stopping subscription waits for them before the service closes what they use. */
  private readonly running = new Set<Promise<unknown>>();

  constructor(
    private readonly command: C,
    private readonly handler: CommandHandler<C>,
    private readonly signer: CallerContextSigner,
    private readonly logger?: BusLogger,
    private readonly metrics?: BusMetricsSink,
  ) {}

  dispatch(msg: InboundRequest): Uint8Array | Promise<Uint8Array> {
    const reply = this.dispatchOnce(msg);
    if (reply instanceof Uint8Array) return reply;
    this.running.add(reply);
    const done = () => this.running.delete(reply);
    reply.then(done, done);
    return reply;
  }

  /**
   * Resolves once every handler started so far has answered (whatever the answer), or after
   * `maxMs` — the requesters' own deadline, past which nobody is waiting for the answer.
   */
  async settled(maxMs: number): Promise<void> {
    if (this.running.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise((resolve) => (timer = setTimeout(resolve, maxMs)))]);
    clearTimeout(timer);
  }

  private dispatchOnce(msg: InboundRequest): Uint8Array | Promise<Uint8Array> {
    const started = performance.now();
    let env: RequestEnvelope;
    try {
      env = decodeRequest(msg.data, msg.subject);
    } catch (err) {
      return this.failed(err, msg.subject, undefined, started);
    }
    if (env.meta.replay !== true) return this.run(env, msg.subject, started);
    const id = env.meta.id;
    // A remembered reply goes only to a verified resend by the caller of the first: the id alone
    // is no credential, and another caller reusing it must not read someone else's answer.
    let who: string;
    try {
      who = JSON.stringify(this.signer.verify(env.meta.caller, { audience: msg.subject }));
    } catch (err) {
      return this.failed(err, msg.subject, undefined, started, id);
    }
    const seen = this.replies.get(id);
    if (seen && started - seen.at < REPLAY_TTL_MS) {
      if (seen.who === who) return seen.reply;
      return this.failed(new StackError('IDEMPOTENCY_CONFLICT', `message id ${id} was sent by another caller`), msg.subject, undefined, started, id);
    }
    const reply = this.run(env, msg.subject, started);
    if (this.replies.size >= REPLAY_LIMIT) this.prune(started);
    this.replies.set(id, { at: started, who, reply });
    return reply;
  }

  private run(env: RequestEnvelope, subject: string, started: number): Uint8Array | Promise<Uint8Array> {
    const parent = traceContextOf(env.meta.traceparent, env.meta.tracestate);
    return tracer.startActiveSpan(`${subject} process`, { kind: SpanKind.SERVER, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } }, parent, (span) => {
      let result: ReturnType<CommandHandler<C>>;
      try {
        const caller = this.signer.verify(env.meta.caller, { audience: subject });
        assertValid(this.command.request, env.data, `request to ${subject}`);
        const ctx: MessageContext = { id: env.meta.id, subject, caller, sender: env.meta.sender, traceparent: env.meta.traceparent };
        result = this.handler(env.data as Parameters<CommandHandler<C>>[0], ctx);
      } catch (err) {
        return this.failed(err, subject, span, started, env.meta.id);
      }
      if (isPromise(result)) {
        return result.then(
          (value) => this.succeeded(value, subject, span, started, env.meta.id),
          (err: unknown) => this.failed(err, subject, span, started, env.meta.id),
        );
      }
      return this.succeeded(result, subject, span, started, env.meta.id);
    });
  }

  private succeeded(value: unknown, subject: string, span: Span, started: number, id: string): Uint8Array {
    try {
      const bytes = okReply(value, `reply of ${subject}`);
      span.end();
      this.metrics?.messageHandled(subject, 'ok', (performance.now() - started) / 1000);
      return bytes;
    } catch (err) {
      return this.failed(err, subject, span, started, id);
    }
  }

  private failed(err: unknown, subject: string, span: Span | undefined, started: number, id?: string): Uint8Array {
    let outcome: 'error' | 'rejected' = 'error';
    let reply: Uint8Array;
    if (err instanceof StackError) {
      outcome = err.code === 'UNAUTHORIZED' || err.code === 'INVALID_REQUEST' ? 'rejected' : 'error';
      span?.setStatus({ code: SpanStatusCode.ERROR, message: err.code });
      if (outcome === 'rejected') this.logger?.warn({ subject, code: err.code, msg_id: id }, `bus message refused: ${err.message}`);
      reply = errorReply(err);
    } else {
      span?.recordException(err as Error);
      span?.setStatus({ code: SpanStatusCode.ERROR });
      this.logger?.error({ subject, msg_id: id, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'bus handler failed');
      reply = errorReply(new StackError('INTERNAL_ERROR', `${this.command.service} failed to handle ${this.command.name}`));
    }
    span?.end();
    this.metrics?.messageHandled(subject, outcome, (performance.now() - started) / 1000);
    return reply;
  }

  private prune(now: number): void {
    for (const [k, v] of this.replies) if (now - v.at >= REPLAY_TTL_MS) this.replies.delete(k);
    // Still full of fresh entries: drop the oldest half rather than grow without bound.
    if (this.replies.size >= REPLAY_LIMIT) {
      let n = Math.floor(this.replies.size / 2);
      for (const k of this.replies.keys()) {
        if (n-- <= 0) break;
        this.replies.delete(k);
      }
    }
  }
}
