/**
 * What happens to an inbound command before and after its handler, the same for NATS and
 * the in-process bus: verify the caller context, decode and validate the payload, run the
 * handler inside a span continuing the sender's trace, and remember the reply by message id
 * for a while, so a retried request (same id) gets the same answer instead of a second effect.
 */
import { SpanKind, SpanStatusCode, context, propagation, trace, type Context } from '@opentelemetry/api';

import { BUS_HEADERS, StackError, type CommandDef } from '@stack/contracts';
import type { CallerContextSigner } from '@stack/security';

import type { CommandHandler, MessageContext } from './bus';
import type { BusLogger } from './connection';
import { decodeJson, encodeJson, errorReply } from './envelope';
import { assertValid } from './validation';

export interface InboundMessage {
  subject: string;
  data: Uint8Array;
  header(name: string): string | undefined;
}

export interface BusMetricsSink {
  requestCompleted(subject: string, outcome: 'ok' | 'error' | 'timeout' | 'no_responders', seconds: number): void;
  messageHandled(subject: string, outcome: 'ok' | 'error' | 'rejected', seconds: number): void;
}

const REPLAY_TTL_MS = 60_000;
const REPLAY_LIMIT = 5_000;

export const tracer = trace.getTracer('stack-bus');

export function traceCarrierFrom(msg: InboundMessage): Context {
  const tp = msg.header(BUS_HEADERS.traceparent);
  if (!tp) return context.active();
  const carrier: Record<string, string> = { traceparent: tp };
  const ts = msg.header(BUS_HEADERS.tracestate);
  if (ts) carrier.tracestate = ts;
  return propagation.extract(context.active(), carrier);
}

export class CommandDispatcher<C extends CommandDef> {
  private readonly replies = new Map<string, { at: number; reply: Promise<Uint8Array> }>();

  constructor(
    private readonly command: C,
    private readonly handler: CommandHandler<C>,
    private readonly signer: CallerContextSigner,
    private readonly logger?: BusLogger,
    private readonly metrics?: BusMetricsSink,
  ) {}

  dispatch(msg: InboundMessage): Promise<Uint8Array> {
    const id = msg.header(BUS_HEADERS.messageId);
    if (id) {
      const seen = this.replies.get(id);
      if (seen && Date.now() - seen.at < REPLAY_TTL_MS) return seen.reply;
    }
    const reply = this.run(msg, id);
    if (id) {
      if (this.replies.size >= REPLAY_LIMIT) this.prune();
      this.replies.set(id, { at: Date.now(), reply });
    }
    return reply;
  }

  private async run(msg: InboundMessage, id: string | undefined): Promise<Uint8Array> {
    const started = performance.now();
    const parent = traceCarrierFrom(msg);
    return tracer.startActiveSpan(`${msg.subject} process`, { kind: SpanKind.SERVER, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': msg.subject } }, parent, async (span) => {
      let outcome: 'ok' | 'error' | 'rejected' = 'ok';
      try {
        const caller = this.signer.verify(msg.header(BUS_HEADERS.caller));
        let payload: unknown;
        try {
          payload = decodeJson(msg.data);
        } catch {
          throw new StackError('INVALID_REQUEST', `payload of ${msg.subject} is not valid JSON`);
        }
        assertValid(this.command.request, payload, `request to ${msg.subject}`);
        const ctx: MessageContext = {
          id: id ?? '',
          subject: msg.subject,
          caller,
          sender: msg.header(BUS_HEADERS.sender),
          traceparent: msg.header(BUS_HEADERS.traceparent),
        };
        const result = await this.handler(payload as Parameters<CommandHandler<C>>[0], ctx);
        return encodeJson({ ok: true, data: result }, `reply of ${msg.subject}`);
      } catch (err) {
        if (err instanceof StackError) {
          outcome = err.code === 'UNAUTHORIZED' || err.code === 'INVALID_REQUEST' ? 'rejected' : 'error';
          span.setStatus({ code: SpanStatusCode.ERROR, message: err.code });
          if (outcome === 'rejected') this.logger?.warn({ subject: msg.subject, code: err.code, msg_id: id }, `bus message refused: ${err.message}`);
          return errorReply(err);
        }
        outcome = 'error';
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR });
        this.logger?.error({ subject: msg.subject, msg_id: id, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'bus handler failed');
        return errorReply(new StackError('INTERNAL_ERROR', `${this.command.service} failed to handle ${this.command.name}`));
      } finally {
        span.end();
        this.metrics?.messageHandled(msg.subject, outcome, (performance.now() - started) / 1000);
      }
    });
  }

  private prune(): void {
    const cutoff = Date.now() - REPLAY_TTL_MS;
    for (const [k, v] of this.replies) if (v.at < cutoff) this.replies.delete(k);
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
