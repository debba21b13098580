/**
 * The bus for the one-process shape (no NATS_URL): the same contract as NatsBus — payloads
 * are encoded, size-checked, signed and validated exactly as on the wire — but delivered
 * inside this process. Streams are kept in memory: durability across restarts comes from
 * the transactional outboxes, which republish whatever was not yet marked sent.
 */
import { randomUUID } from 'node:crypto';

import {
  BUS_HEADERS,
  StackError,
  commandSubject,
  eventSubject,
  streamName,
  type CallerContext,
  type CommandDef,
  type EventDef,
  type PayloadOf,
  type RequestOf,
  type ResponseOf,
  type ServiceName,
  type StreamBase,
} from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';

import type { Bus, CommandHandler, ConsumeOptions, EventContext, Handle, PublishAck, PublishOptions, RequestOptions } from './bus';
import type { BusConnection, BusConnectionOptions } from './connection';
import { CommandDispatcher, type BusMetricsSink } from './dispatch';
import { decodeReply, encodeJsonText, encodeRequest } from './envelope';
import { eventHeaders, requestMeta, systemCallerOf, type Sender } from './outbound';
import { DUPLICATE_WINDOW_MS, redeliveryDelayMs, streamOf, streamPlans } from './streams';
import { assertValid } from './validation';

export interface InProcessBusOptions extends BusConnectionOptions {
  metrics?: BusMetricsSink;
}

export function createInProcessBus(options: InProcessBusOptions): BusConnection {
  return new InProcessBusConnection(options);
}

interface StoredMessage {
  seq: number;
  subject: string;
  /** The payload's JSON text: nothing here crosses a wire. */
  data: string;
  headers: Map<string, string>;
  /** When it was stored (ms): its caller context is judged as of then, as JetStream's timestamp is on NATS. */
  at: number;
}

interface MemoryStream {
  name: string;
  messages: StoredMessage[];
  lastSeq: number;
  /** msg id → sequence and time published, for the duplicate window. */
  ids: RememberedIds;
  consumers: Map<string, MemoryConsumer>;
}

interface MemoryConsumer {
  /**
   * Every message up to this sequence was delivered and acknowledged, or waits in `retry`;
   * survives `stop()` and a new `consume()` with the same durable name.
   */
  ackFloor: number;
  deliveries: Map<number, number>;
  /**
   * Messages whose handler failed, each delivered again once its back-off is over while those
   * after it go on, as JetStream redelivers a message refused with a delay: a message that always
   * fails does not stop its consumer.
   */
  retry: { message: StoredMessage; dueAt: number }[];
  running?: { wake: () => void; stopped: boolean; done: Promise<void> };
  /** Deletes the consumer once it went unread for its `inactiveThresholdMs`, as the NATS server does. */
  expiry?: NodeJS.Timeout;
}

/**
 * Most message ids a stream remembers for its duplicate window. Past it the oldest are forgotten
 * even inside the window (a republish that late is published again, and consumers are
 * idempotent), so a stream at thousands of messages a second holds a bounded map.
 */
export const MAX_REMEMBERED_IDS = 200_000;

/**
 * The message ids a stream remembers for its duplicate window: a map to look an id up, and the
 * ids in publish order to forget the oldest. Forgetting walks that queue from its oldest entry
 * and stops at the first id it keeps: O(1) amortised per publish. (It used to walk the map
 * itself from its start. A JavaScript map keeps the entries deleted from it as holes until it
 * rehashes, and a walk from the start steps over every one: at 200,000 ids, one added and one
 * deleted per publish, a publish cost ~100 µs after a minute at saturation, not ~1.)
 */
export class RememberedIds {
  private readonly byId = new Map<string, { seq: number; at: number }>();
  /** Publish order. An entry whose id was published anew since (another seq) is stale and skipped. */
  private order: { id: string; seq: number; at: number }[] = [];
  private head = 0;
  /** Queue entries looked at by `forget` so far (how its tests see that it stays O(1)). */
  visited = 0;

  constructor(
    private readonly windowMs: number = DUPLICATE_WINDOW_MS,
    private readonly max: number = MAX_REMEMBERED_IDS,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): { seq: number; at: number } | undefined {
    return this.byId.get(id);
  }

  /** The earlier publication of `id` if it is still inside the window at `now` (a duplicate), else undefined. */
  recent(id: string, now: number): { seq: number; at: number } | undefined {
    const seen = this.byId.get(id);
    return seen && now - seen.at < this.windowMs ? seen : undefined;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Remembers `id` as published now with `seq` (replacing an earlier publication of it). */
  remember(id: string, seq: number, at: number): void {
    this.byId.set(id, { seq, at });
    this.order.push({ id, seq, at });
  }

  /** Forgets the ids that left the window at `now`, and the oldest beyond the cap even inside it. */
  forget(now: number): void {
    while (this.head < this.order.length) {
      const oldest = this.order[this.head]!;
      this.visited++;
      if (this.byId.get(oldest.id)?.seq === oldest.seq) {
        if (this.byId.size <= this.max && now - oldest.at < this.windowMs) break;
        this.byId.delete(oldest.id);
      }
      this.head++;
    }
    // The forgotten front of the queue is dropped once it is most of it.
    if (this.head >= 1024 && this.head * 2 >= this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}

/** Memory bound per stream: messages every consumer has taken are dropped beyond it. */
const MAX_IN_MEMORY_MESSAGES = 20_000;

/**
 * The index of the first message after `seq` (or -1): messages are in ascending sequence order,
 * so a binary search instead of a scan from the oldest kept message (up to 20,000 of them) on
 * every round of every consumer.
 */
export function firstAfter(messages: readonly { seq: number }[], seq: number): number {
  let lo = 0;
  let hi = messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (messages[mid]!.seq > seq) hi = mid;
    else lo = mid + 1;
  }
  return lo === messages.length ? -1 : lo;
}

function trim(stream: MemoryStream): void {
  const floors = [...stream.consumers.values()].map((c) => c.ackFloor);
  // With no consumer yet, keep the newest half so a late consumer still finds recent events.
  const floor = floors.length ? Math.min(...floors) : stream.messages[Math.floor(stream.messages.length / 2)]!.seq;
  const drop = firstAfter(stream.messages, floor);
  stream.messages.splice(0, drop === -1 ? stream.messages.length : drop);
}

class InProcessBusConnection implements BusConnection {
  readonly kind = 'in-process' as const;
  readonly signer: CallerContextSigner;
  readonly handlers = new Map<string, { dispatchers: CommandDispatcher<CommandDef>[]; next: number }>();
  readonly streams = new Map<string, MemoryStream>();
  private readonly facades = new Map<ServiceName, InProcessServiceBus>();
  closed = false;

  constructor(readonly options: InProcessBusOptions) {
    this.signer = new CallerContextSigner(options.internalSecret);
    void this.ensureStreams();
  }

  forService(service: ServiceName): Bus {
    let bus = this.facades.get(service);
    if (!bus) {
      bus = new InProcessServiceBus(this, service);
      this.facades.set(service, bus);
    }
    return bus;
  }

  async ensureStreams(): Promise<void> {
    for (const plan of streamPlans(this.options.prefix)) {
      if (!this.streams.has(plan.name)) this.streams.set(plan.name, { name: plan.name, messages: [], lastSeq: 0, ids: new RememberedIds(), consumers: new Map() });
    }
  }

  stream(base: StreamBase): MemoryStream {
    const name = streamName(this.options.prefix, base);
    const s = this.streams.get(name);
    if (!s) throw new StackError('SERVICE_UNAVAILABLE', `stream ${name} does not exist`);
    return s;
  }

  async flush(): Promise<void> {
    // Handlers are registered synchronously: nothing to wait for.
  }

  isHealthy(): boolean {
    return !this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.streams.values()) {
      for (const c of s.consumers.values()) {
        if (c.running) {
          c.running.stopped = true;
          c.running.wake();
          await c.running.done;
        }
      }
    }
    this.handlers.clear();
  }
}

class InProcessServiceBus implements Bus {
  private readonly sender: Sender;

  constructor(
    private readonly conn: InProcessBusConnection,
    readonly service: ServiceName,
  ) {
    this.sender = { service, signer: conn.signer, systemCaller: systemCallerOf(service) };
  }

  private headersFor(subject: string, id: string, caller: CallerContext | undefined): Map<string, string> {
    return new Map(eventHeaders(this.sender, subject, id, caller));
  }

  async request<C extends CommandDef>(command: C, payload: RequestOf<C>, options: RequestOptions = {}): Promise<ResponseOf<C>> {
    if (this.conn.closed) throw new StackError('SERVICE_UNAVAILABLE', 'the bus is closed');
    const subject = commandSubject(this.conn.options.prefix, command);
    const meta = requestMeta(this.sender, subject, options.messageId ?? randomUUID(), options);
    const data = encodeRequest(meta, payload, `request to ${subject}`);
    const entry = this.conn.handlers.get(subject);
    const started = performance.now();
    if (!entry || entry.dispatchers.length === 0) {
      this.conn.options.metrics?.requestCompleted(subject, 'no_responders', 0);
      throw new StackError('SERVICE_UNAVAILABLE', `no ${command.service} instance is serving ${command.name} on the bus`, { subject });
    }
    const dispatcher = entry.dispatchers[entry.next++ % entry.dispatchers.length]!;
    const inbound = { subject, data };
    const timeout = options.timeoutMs ?? this.conn.options.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await Promise.race([
        Promise.resolve(dispatcher.dispatch(inbound)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new StackError('BUS_TIMEOUT', `${command.service} did not answer ${command.name} within ${timeout} ms`, { subject, timeout_ms: timeout })), timeout);
        }),
      ]);
      const result = decodeReply(reply) as ResponseOf<C>;
      this.conn.options.metrics?.requestCompleted(subject, 'ok', (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      this.conn.options.metrics?.requestCompleted(subject, (err as StackError).code === 'BUS_TIMEOUT' ? 'timeout' : 'error', (performance.now() - started) / 1000);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  handle<C extends CommandDef>(command: C, handler: CommandHandler<C>): Handle {
    if (command.service !== this.service) throw new Error(`${this.service} cannot serve ${command.service}.${command.name}`);
    const subject = commandSubject(this.conn.options.prefix, command);
    const dispatcher = new CommandDispatcher(command, handler, this.conn.signer, this.conn.options.logger, this.conn.options.metrics) as unknown as CommandDispatcher<CommandDef>;
    let entry = this.conn.handlers.get(subject);
    if (!entry) {
      entry = { dispatchers: [], next: 0 };
      this.conn.handlers.set(subject, entry);
    }
    entry.dispatchers.push(dispatcher);
    return {
      stop: async () => {
        const e = this.conn.handlers.get(subject);
        if (e) e.dispatchers = e.dispatchers.filter((d) => d !== dispatcher);
        await dispatcher.settled(this.conn.options.timeoutMs);
      },
    };
  }

  async publish<E extends EventDef>(event: E, payload: PayloadOf<E>, options: PublishOptions): Promise<PublishAck> {
    if (this.conn.closed) throw new StackError('SERVICE_UNAVAILABLE', 'the bus is closed');
    const subject = eventSubject(this.conn.options.prefix, event);
    const data = encodeJsonText(payload, `event ${subject}`);
    const stream = this.conn.stream(event.stream);
    const now = Date.now();
    // Out of the window, an id is published anew and remembered from now.
    const seen = stream.ids.recent(options.id, now);
    if (seen) return { stream: stream.name, seq: seen.seq, duplicate: true };
    const seq = ++stream.lastSeq;
    stream.messages.push({ seq, subject, data, headers: this.headersFor(subject, options.id, options.caller), at: now });
    stream.ids.remember(options.id, seq, now);
    stream.ids.forget(now);
    if (stream.messages.length > MAX_IN_MEMORY_MESSAGES) trim(stream);
    for (const c of stream.consumers.values()) c.running?.wake();
    return { stream: stream.name, seq, duplicate: false };
  }

  async consume(options: ConsumeOptions, handler: (event: EventDef, payload: unknown, ctx: EventContext) => Promise<void>): Promise<Handle> {
    const stream = this.conn.stream(streamOf(options.events));
    const bySubject = new Map(options.events.map((e) => [eventSubject(this.conn.options.prefix, e), e]));
    let consumer = stream.consumers.get(options.durable);
    if (!consumer) {
      consumer = { ackFloor: options.startSeq !== undefined ? Math.max(0, options.startSeq - 1) : options.deliver === 'new' ? stream.lastSeq : 0, deliveries: new Map(), retry: [] };
      stream.consumers.set(options.durable, consumer);
    }
    if (consumer.running && !consumer.running.stopped) throw new Error(`consumer ${options.durable} is already running in this process`);
    clearTimeout(consumer.expiry);
    consumer.expiry = undefined;
    const c = consumer;
    let wake: () => void = () => undefined;
    const running = { wake: () => wake(), stopped: false, done: Promise.resolve() };
    c.running = running;
    const signer = this.conn.signer;
    const logger = this.conn.options.logger;
    const maxInFlight = Math.max(1, options.maxInFlight ?? 1);
    // Delivers the window's messages at once; each outcome is true when the message is done with
    // (acknowledged or refused), false when it must be redelivered. A handled message costs its
    // handler's promise and one reaction; the window, one promise (not an async frame, an await and
    // a Promise.all entry per message: the audit consumer takes two messages per proxy call).
    const deliverAll = (window: readonly StoredMessage[]): boolean[] | Promise<boolean[]> => {
      const done = new Array<boolean>(window.length).fill(true);
      let left = 1;
      let finish: (() => void) | undefined;
      const settled = () => {
        if (--left === 0) finish?.();
      };
      for (let i = 0; i < window.length; i++) {
        const next = window[i]!;
        const event = bySubject.get(next.subject);
        if (!event) continue;
        const deliveries = (c.deliveries.get(next.seq) ?? 0) + 1;
        c.deliveries.set(next.seq, deliveries);
        let payload: unknown;
        let caller: CallerContext;
        try {
          caller = signer.verify(next.headers.get(BUS_HEADERS.caller), { audience: next.subject, at: next.at });
          payload = JSON.parse(next.data) as unknown;
          assertValid(event.payload, payload, `event ${next.subject}`);
        } catch (err) {
          logger?.error({ subject: next.subject, seq: next.seq, err: (err as Error).message }, 'bus event refused');
          c.deliveries.delete(next.seq);
          continue;
        }
        const failed = (err: unknown) => {
          logger?.warn({ subject: next.subject, seq: next.seq, deliveries, err: (err as Error).message }, 'event handler failed; it will be redelivered');
          done[i] = false;
        };
        let handled: Promise<void>;
        try {
          handled = Promise.resolve(
            handler(event, payload, {
              id: next.headers.get(BUS_HEADERS.messageId) ?? `${stream.name}:${next.seq}`,
              subject: next.subject,
              caller,
              sender: next.headers.get(BUS_HEADERS.sender),
              traceparent: next.headers.get(BUS_HEADERS.traceparent),
              seq: next.seq,
              deliveries,
            }),
          );
        } catch (err) {
          failed(err);
          continue;
        }
        left++;
        handled.then(
          () => {
            c.deliveries.delete(next.seq);
            settled();
          },
          (err: unknown) => {
            failed(err);
            settled();
          },
        );
      }
      if (--left === 0) return done;
      return new Promise<boolean[]>((resolve) => {
        finish = () => resolve(done);
      });
    };
    /** Until `ms` have passed (none: until woken) or the consumer is woken. */
    const sleep = (ms: number | undefined) =>
      new Promise<void>((resolve) => {
        const t = ms === undefined ? undefined : setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    running.done = (async () => {
      while (!running.stopped) {
        // A window of messages handled at once (one by default): the redeliveries that are due, then
        // what follows the ack floor. The floor passes every new message of the window; one that
        // failed waits in `retry` (handlers are idempotent).
        let window: StoredMessage[];
        let retried = 0;
        if (c.retry.length === 0) {
          const from = firstAfter(stream.messages, c.ackFloor);
          window = from === -1 ? [] : stream.messages.slice(from, from + maxInFlight);
        } else {
          const now = Date.now();
          const due = c.retry.filter((r) => r.dueAt <= now).slice(0, maxInFlight);
          if (due.length) c.retry = c.retry.filter((r) => !due.includes(r));
          window = due.map((r) => r.message);
          retried = window.length;
          const from = retried < maxInFlight ? firstAfter(stream.messages, c.ackFloor) : -1;
          if (from !== -1) for (const m of stream.messages.slice(from, from + maxInFlight - retried)) window.push(m);
        }
        if (window.length === 0) {
          await sleep(c.retry.length ? Math.max(1, Math.min(...c.retry.map((r) => r.dueAt)) - Date.now()) : undefined);
          continue;
        }
        const outcome = deliverAll(window);
        const done = Array.isArray(outcome) ? outcome : await outcome;
        if (window.length > retried) c.ackFloor = window[window.length - 1]!.seq;
        const failedAt = Date.now();
        for (let i = 0; i < window.length; i++) {
          if (done[i]) continue;
          const deliveries = c.deliveries.get(window[i]!.seq) ?? 1;
          c.retry.push({ message: window[i]!, dueAt: failedAt + redeliveryDelayMs(deliveries) });
        }
      }
    })();
    return {
      stop: async () => {
        running.stopped = true;
        wake();
        await running.done;
        // Without a reader for inactiveThresholdMs the server deletes the consumer: a later consume()
        // under its name starts anew, and its position no longer holds the stream's messages.
        const threshold = options.inactiveThresholdMs;
        if (threshold !== undefined && c.running === running && !c.expiry) {
          c.expiry = setTimeout(() => {
            if (stream.consumers.get(options.durable) === c && c.running === running) stream.consumers.delete(options.durable);
          }, threshold);
          c.expiry.unref();
        }
      },
    };
  }

  async lastSequence(stream: StreamBase): Promise<number> {
    return this.conn.stream(stream).lastSeq;
  }

  isHealthy(): boolean {
    return this.conn.isHealthy();
  }
}
