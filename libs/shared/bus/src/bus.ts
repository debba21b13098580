/**
 * The one way STACK services talk: typed request/reply and durable events.
 * Two implementations share this interface and its tests: NatsBus (core NATS for
 * request/reply, JetStream for events) and InProcessBus (the one-process shape).
 */
import type { CallerContext, CommandDef, EventDef, PayloadOf, RequestOf, ResponseOf, ServiceName, StreamBase } from '@stack/contracts';

export interface RequestOptions {
  /** Who the request acts for; signed by the bus with the internal key, for this command's subject only. Defaults to the sender service itself (kind `system`). */
  caller?: CallerContext;
  /** Overrides STACK_BUS_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Give an id to make a retried request recognisable as the same one: the handler runs once and a resend gets the first reply. */
  messageId?: string;
}

/** What a handler learns about the message beside its payload. */
export interface MessageContext {
  /** Unique message id (`Stack-Msg-Id`). */
  id: string;
  subject: string;
  /**
   * Verified caller context, signed for this message's subject (an event's as of when its stream
   * stored it). A message whose signature fails never reaches a handler.
   */
  caller: CallerContext;
  /** The service that sent it. */
  sender?: string;
  /** W3C traceparent the message carried, if any. */
  traceparent?: string;
}

export interface EventContext extends MessageContext {
  /** Stream sequence of this message. */
  seq: number;
  /** Times JetStream delivered it (1 the first time). */
  deliveries: number;
}

export interface PublishOptions {
  /** Event id; JetStream drops a second publish with the same id inside its duplicate window, and consumers deduplicate by it. */
  id: string;
  caller?: CallerContext;
}

export interface PublishAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export type CommandHandler<C extends CommandDef> = (payload: RequestOf<C>, ctx: MessageContext) => Promise<ResponseOf<C>> | ResponseOf<C>;

export type EventHandler<E extends EventDef> = (payload: PayloadOf<E>, ctx: EventContext) => Promise<void> | void;

export interface ConsumeOptions {
  /** Durable consumer name; its position survives restarts of the consumer and of the server. */
  durable: string;
  /** Events this consumer wants (all from one stream). */
  events: readonly EventDef[];
  /** How long a delivered message may stay unacknowledged before it is redelivered. */
  ackWaitMs?: number;
  /** Messages fetched at a time. */
  batch?: number;
  /** Deliver from the start of the stream (default) or only new messages. */
  deliver?: 'all' | 'new';
  /** Deliver from this stream sequence on (overrides `deliver`); a node replaying after a snapshot uses it. */
  startSeq?: number;
  /** Let the server delete the consumer after this long without a reader (per-process consumers that a crash would leave behind). */
  inactiveThresholdMs?: number;
  /**
   * Handlers running at once (default 1: one message at a time, in stream order). Above 1 a
   * handler may hold its message while it gathers a batch and resolve them all after one commit;
   * each message is still acknowledged only when its own handler resolves.
   */
  maxInFlight?: number;
}

export interface Handle {
  stop(): Promise<void>;
}

export interface Bus {
  /** The service this bus speaks for (signs `system` caller contexts with it). */
  readonly service: ServiceName;
  /** Sends a command to its service's queue group and waits for the reply. Throws StackError: the handler's, BUS_TIMEOUT, SERVICE_UNAVAILABLE, PAYLOAD_TOO_LARGE, INVALID_REQUEST. */
  request<C extends CommandDef>(command: C, payload: RequestOf<C>, options?: RequestOptions): Promise<ResponseOf<C>>;
  /** Serves a command in its service's queue group. Payloads are validated before the handler runs; unknown fields are ignored. */
  handle<C extends CommandDef>(command: C, handler: CommandHandler<C>): Handle;
  /** Publishes an event to its durable stream and waits for the stream's acknowledgement. */
  publish<E extends EventDef>(event: E, payload: PayloadOf<E>, options: PublishOptions): Promise<PublishAck>;
  /** A durable consumer: the handler's promise resolving acknowledges the message, a rejection leads to redelivery. */
  consume(options: ConsumeOptions, handler: (event: EventDef, payload: unknown, ctx: EventContext) => Promise<void>): Promise<Handle>;
  /** Last sequence of a stream (0 when empty). */
  lastSequence(stream: StreamBase): Promise<number>;
  /** True while the underlying connection is up. */
  isHealthy(): boolean;
}
