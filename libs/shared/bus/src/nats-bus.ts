/**
 * The bus over a real NATS server: core request/reply with one queue group per service
 * (replicas share the load), JetStream for the durable streams (publish waits for the
 * stream's acknowledgement; consumers are durable pull consumers acknowledging only after
 * their handler succeeded).
 */
import { randomUUID } from 'node:crypto';

import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import {
  AckPolicy,
  DeliverPolicy,
  ErrorCode as NatsErrorCode,
  Events,
  RetentionPolicy,
  StorageType,
  connect,
  createInbox,
  headers as natsHeaders,
  nanos,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type NatsError,
  type StreamInfo,
  type Subscription,
} from 'nats';

import {
  BUS_HEADERS,
  StackError,
  commandSubject,
  eventSubject,
  queueGroup,
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
import type { BusConnection, NatsBusConnectionOptions } from './connection';
import { CommandDispatcher, traceContextOf, tracer, type BusMetricsSink } from './dispatch';
import { decodeJson, decodeReply, encodeJson, encodeRequest } from './envelope';
import { eventHeaders, requestMeta, systemCallerOf, type Sender } from './outbound';
import { DUPLICATE_WINDOW_MS, redeliveryDelayMs, streamOf, streamPlans, type StreamPlan } from './streams';
import { assertValid } from './validation';

export interface NatsBusOptions extends NatsBusConnectionOptions {
  metrics?: BusMetricsSink;
}

/**
 * NATS_URL may carry a user and password (`nats://stack-audit:secret@nats:4222`); the client
 * wants them as options, not inside the server URLs.
 */
export function natsServersAndCredentials(servers: string): { servers: string[]; user?: string; pass?: string } {
  let user: string | undefined;
  let pass: string | undefined;
  const list = servers.split(',').map((raw) => {
    const s = raw.trim();
    try {
      const u = new URL(s);
      if (u.username) user ??= decodeURIComponent(u.username);
      if (u.password) pass ??= decodeURIComponent(u.password);
      return u.username || u.password ? `${u.protocol}//${u.host}` : s;
    } catch {
      return s;
    }
  });
  return { servers: list, user, pass };
}

/**
 * The reply subjects of a process that runs one service: `_INBOX_<service>.…`. Its NATS user may
 * read those alone, so no service reads another's replies (passports, proxied responses,
 * drop-off payloads, API-key resolutions).
 */
export function serviceInboxPrefix(service: ServiceName): string {
  return `_INBOX_${service}`;
}

export async function connectNatsBus(options: NatsBusOptions): Promise<BusConnection> {
  const { servers, user, pass } = natsServersAndCredentials(options.servers);
  const nc = await connect({
    servers,
    ...(user !== undefined ? { user, pass } : {}),
    // Requests, JetStream pulls and the client's other inboxes all use it.
    ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
    name: options.name ?? `stack-${options.instanceId}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    pingInterval: 10_000,
    // Without it every request and JetStream publish builds an Error for its stack trace, in case
    // it times out: a measurable share of a busy process's CPU. Our errors name the subject instead.
    noAsyncTraces: true,
  });
  return new NatsBusConnection(nc, options);
}

class NatsBusConnection implements BusConnection {
  readonly kind = 'nats' as const;
  readonly signer: CallerContextSigner;
  readonly js: JetStreamClient;
  private jsm?: Promise<JetStreamManager>;
  private healthy = true;
  /** JetStream publishes waiting for the end of this turn of the event loop (`publishToStream`). */
  private turn: QueuedPublish[] = [];
  /** Publishes sent and waiting for their acknowledgement, by the token ending their reply subject. */
  private readonly awaitingAck = new Map<number, QueuedPublish>();
  private nextToken = 0;
  /** The one subscription all acknowledgements come to (`<inbox>.<token>`), made at the first publish. */
  private ackInbox?: string;
  /** When each subject and cause of a failed publish was last logged, and how often since (`publishFailed`). */
  private readonly failureLogged = new Map<string, { at: number; since: number }>();
  private readonly facades = new Map<ServiceName, NatsServiceBus>();
  readonly handles = new Set<Handle>();

  constructor(
    readonly nc: NatsConnection,
    readonly options: NatsBusOptions,
  ) {
    this.signer = new CallerContextSigner(options.internalSecret);
    this.js = nc.jetstream();
    void this.watchStatus();
  }

  /**
   * Publishes to a JetStream stream and resolves with the stream's acknowledgement — what
   * `js.publish` does, in the core client's terms, for every publish of this turn of the event
   * loop at once, at its end (setImmediate):
   *
   * - The client sends what one synchronous run queues in one socket write, but a busy service
   *   publishes from many callbacks (one per HTTP request or bus reply) and the client flushed
   *   after each: each publish cost a write of its own, here and in the server. Now the turn's
   *   publishes leave in one write and the server reads them at once. An idle process waits for
   *   nothing: the end of the turn follows at once.
   * - The acknowledgements come to one wildcard subscription, each to its own reply subject; a
   *   turn shares one timer. `js.publish` made a request per publish, each with its own timer, a
   *   generator, and an Error (stack trace included) built to settle the request even after it
   *   succeeded.
   *
   * The server answers `{stream, seq, duplicate?}`, or `{error: {description}}` when the stream
   * refuses the message, or a 503 status when no stream takes the subject ("no responders").
   */
  publishToStream(subject: string, data: Uint8Array, headers: MsgHdrs, timeoutMs: number): Promise<PublishAck> {
    return new Promise<PublishAck>((resolve, reject) => {
      if (this.turn.push({ subject, data, headers, resolve, reject }) === 1) setImmediate(this.sendTurn, timeoutMs);
    });
  }

  private readonly sendTurn = (timeoutMs: number): void => {
    const queued = this.turn;
    this.turn = [];
    if (!this.ackInbox) {
      try {
        const inbox = createInbox(this.options.inboxPrefix);
        this.nc.subscribe(`${inbox}.*`, { callback: (err, msg) => (err ? undefined : this.acknowledged(msg)) });
        this.ackInbox = inbox;
      } catch (err) {
        // A closed connection: nothing can be sent (this runs outside any caller, so it must not throw).
        for (const p of queued) p.reject(err);
        return;
      }
    }
    const first = this.nextToken + 1;
    for (const p of queued) {
      const token = ++this.nextToken;
      try {
        this.nc.publish(p.subject, p.data, { reply: `${this.ackInbox}.${token}`, headers: p.headers });
        this.awaitingAck.set(token, p);
      } catch (err) {
        p.reject(err);
      }
    }
    const last = this.nextToken;
    // One timer for the turn: whatever of it is still unacknowledged then has timed out.
    setTimeout(() => {
      for (let token = first; token <= last; token++) {
        const p = this.awaitingAck.get(token);
        if (!p) continue;
        this.awaitingAck.delete(token);
        p.reject(new Error(`no acknowledgement within ${timeoutMs} ms`));
      }
    }, timeoutMs).unref();
  };

  private acknowledged(msg: Msg): void {
    const token = Number(msg.subject.slice(this.ackInbox!.length + 1));
    const p = this.awaitingAck.get(token);
    if (!p) return;
    this.awaitingAck.delete(token);
    if (msg.headers?.hasError) {
      p.reject(new Error(msg.headers.code === 503 ? 'no stream takes this subject' : `status ${msg.headers.code} ${msg.headers.description}`));
      return;
    }
    let ack: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { description?: unknown } };
    try {
      ack = decodeJson(msg.data) as typeof ack;
    } catch {
      p.reject(new Error('the acknowledgement is not JSON'));
      return;
    }
    if (ack.error || typeof ack.stream !== 'string' || typeof ack.seq !== 'number') {
      p.reject(new Error(typeof ack.error?.description === 'string' ? ack.error.description : 'the stream refused the message'));
      return;
    }
    p.resolve({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true });
  }

  /**
   * Logs why an event could not be made durable: its publisher only tells its caller it is
   * unavailable (AUDIT_UNAVAILABLE for an audit record). The same subject and cause at most every
   * 10 s, so an outage does not log once per request.
   */
  publishFailed(subject: string, cause: string, message = 'event not made durable: its publisher was refused'): void {
    const key = `${subject}\n${cause}`;
    const now = Date.now();
    const last = this.failureLogged.get(key);
    if (last !== undefined && now - last.at < PUBLISH_FAILURE_LOG_EVERY_MS) {
      last.since += 1;
      return;
    }
    this.failureLogged.set(key, { at: now, since: 0 });
    this.options.logger?.warn({ subject, err: cause, ...(last?.since ? { more_since_last_logged: last.since } : {}) }, message);
  }

  manager(): Promise<JetStreamManager> {
    this.jsm ??= this.nc.jetstreamManager();
    return this.jsm;
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') {
        this.healthy = false;
        this.options.logger?.warn({ server: String(s.data) }, 'bus disconnected');
      } else if (s.type === 'reconnect') {
        this.healthy = true;
        this.options.logger?.info({ server: String(s.data) }, 'bus reconnected');
      } else if (s.type === Events.Error && s.permissionContext?.operation === 'publish') {
        this.publishRefused(s.permissionContext.subject);
      }
    }
  }

  /**
   * The server refused a publish: this connection's NATS user may not publish to `subject`. The
   * client settles a refused request itself; a refused event would wait for an acknowledgement
   * that never comes, so the oldest one waiting on that subject fails now. A refused
   * acknowledgement would only show as endless redeliveries: it is logged (per consumer).
   */
  private publishRefused(subject: string): void {
    for (const [token, p] of this.awaitingAck) {
      if (p.subject !== subject) continue;
      this.awaitingAck.delete(token);
      p.reject(new Error('this NATS user may not publish it (permissions violation)'));
      return;
    }
    if (subject.startsWith('$JS.ACK.')) {
      this.publishFailed(subject.split('.').slice(0, 4).join('.'), 'permissions violation', 'a consumer cannot acknowledge its messages: this NATS user may not');
    }
  }

  forService(service: ServiceName): Bus {
    let bus = this.facades.get(service);
    if (!bus) {
      bus = new NatsServiceBus(this, service);
      this.facades.set(service, bus);
    }
    return bus;
  }

  async ensureStreams(): Promise<void> {
    const jsm = await this.manager();
    const leftToOthers: StreamPlan[] = [];
    for (const plan of streamPlans(this.options.prefix)) {
      const config = {
        name: plan.name,
        subjects: plan.subjects,
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        max_age: nanos(plan.maxAgeMs),
        duplicate_window: nanos(DUPLICATE_WINDOW_MS),
        num_replicas: this.options.streamReplicas ?? 1,
      };
      const info = await streamInfo(jsm, plan.name);
      try {
        if (!info) {
          await jsm.streams.add(config);
        } else {
          // Subjects are only ever added: during a rolling upgrade an older replica starting again
          // must not take away what a newer one added (its events would then find no stream).
          const have = info.config.subjects ?? [];
          const missing = plan.subjects.filter((subject) => !have.includes(subject));
          if (missing.length) await jsm.streams.update(plan.name, { ...info.config, subjects: [...have, ...missing] });
        }
      } catch (err) {
        // Another replica created it between our info and add: that is the state we wanted.
        if (!info && String((err as Error).message).includes('already in use')) continue;
        // Where each service has its own NATS user, one service's may manage the streams (audit's,
        // in STACK's configurations): the others wait until it has.
        if ((err as NatsError).code !== NatsErrorCode.PermissionsViolation) throw err;
        leftToOthers.push(plan);
      }
    }
    if (leftToOthers.length > 0) await this.waitForStreams(jsm, leftToOthers);
  }

  /** Until each stream exists and takes every subject of `plans`, made so by a user allowed to. */
  private async waitForStreams(jsm: JetStreamManager, plans: readonly StreamPlan[]): Promise<void> {
    this.options.logger?.info({ streams: plans.map((p) => p.name) }, 'this NATS user may not create or update these streams: waiting for the service whose user may (audit, in STACK\'s configurations)');
    const deadline = Date.now() + STREAM_WAIT_MS;
    for (const plan of plans) {
      for (;;) {
        const info = await streamInfo(jsm, plan.name);
        const have = new Set(info?.config.subjects ?? []);
        if (info && plan.subjects.every((s) => have.has(s))) break;
        if (Date.now() >= deadline || this.nc.isClosed()) {
          throw new Error(`JetStream stream ${plan.name} ${info ? 'does not take all of this version\'s subjects' : 'does not exist'}, this NATS user may not ${info ? 'update' : 'create'} it, and no other service did within ${STREAM_WAIT_MS / 1000} s`);
        }
        await new Promise((r) => setTimeout(r, STREAM_POLL_MS));
      }
    }
  }

  flush(): Promise<void> {
    return this.nc.flush();
  }

  isHealthy(): boolean {
    return this.healthy && !this.nc.isClosed();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.handles].map((h) => h.stop()));
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}

const PUBLISH_FAILURE_LOG_EVERY_MS = 10_000;
/** How long a process waits for streams it may not create (as long as for its database schema). */
const STREAM_WAIT_MS = 300_000;
const STREAM_POLL_MS = 1000;

/** A publish waiting to be sent, then for its acknowledgement. */
interface QueuedPublish {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs;
  resolve: (ack: PublishAck) => void;
  reject: (err: unknown) => void;
}

/** A reply subject a requester's client made: `_INBOX.…`, or under a per-user prefix such as `_INBOX_audit.…`. */
function isInbox(subject: string): boolean {
  return subject.startsWith('_INBOX.') || subject.startsWith('_INBOX_');
}

/** A stream's info, or undefined when there is no such stream. */
async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as NatsError & { api_error?: { err_code?: number } };
  return e?.api_error?.err_code === 10059 || /not found/i.test(String(e?.message));
}

class NatsServiceBus implements Bus {
  private readonly sender: Sender;

  constructor(
    private readonly conn: NatsBusConnection,
    readonly service: ServiceName,
  ) {
    this.sender = { service, signer: conn.signer, systemCaller: systemCallerOf(service) };
  }

  private headersFor(subject: string, id: string, caller: CallerContext | undefined): MsgHdrs {
    const h = natsHeaders();
    for (const [k, v] of eventHeaders(this.sender, subject, id, caller)) h.set(k, v);
    // JetStream's duplicate window goes by this header.
    h.set('Nats-Msg-Id', id);
    return h;
  }

  async request<C extends CommandDef>(command: C, payload: RequestOf<C>, options: RequestOptions = {}): Promise<ResponseOf<C>> {
    const subject = commandSubject(this.conn.options.prefix, command);
    const timeout = options.timeoutMs ?? this.conn.options.timeoutMs;
    const started = performance.now();
    const span = tracer.startSpan(`${subject} send`, { kind: SpanKind.CLIENT, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } });
    let outcome: 'ok' | 'error' | 'timeout' | 'no_responders' = 'ok';
    try {
      const meta = requestMeta(this.sender, subject, options.messageId ?? randomUUID(), options, span);
      const data = encodeRequest(meta, payload, `request to ${subject}`);
      const msg = await this.conn.nc.request(subject, data, { timeout });
      return decodeReply(msg.data) as ResponseOf<C>;
    } catch (err) {
      const code = (err as NatsError).code;
      if (code === NatsErrorCode.NoResponders) {
        outcome = 'no_responders';
        throw new StackError('SERVICE_UNAVAILABLE', `no ${command.service} instance is serving ${command.name} on the bus`, { subject });
      }
      if (code === NatsErrorCode.Timeout) {
        outcome = 'timeout';
        throw new StackError('BUS_TIMEOUT', `${command.service} did not answer ${command.name} within ${timeout} ms`, { subject, timeout_ms: timeout });
      }
      outcome = 'error';
      if (err instanceof StackError) throw err;
      throw new StackError('SERVICE_UNAVAILABLE', `bus request to ${subject} failed: ${(err as Error).message}`, { subject });
    } finally {
      if (outcome !== 'ok') span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
      span.end();
      this.conn.options.metrics?.requestCompleted(subject, outcome, (performance.now() - started) / 1000);
    }
  }

  handle<C extends CommandDef>(command: C, handler: CommandHandler<C>): Handle {
    if (command.service !== this.service) throw new Error(`${this.service} cannot serve ${command.service}.${command.name}`);
    const subject = commandSubject(this.conn.options.prefix, command);
    const dispatcher = new CommandDispatcher(command, handler, this.conn.signer, this.conn.options.logger, this.conn.options.metrics);
    const nc = this.conn.nc;
    const sub: Subscription = nc.subscribe(subject, {
      queue: queueGroup(this.conn.options.prefix, this.service),
      callback: (err, msg) => {
        if (err) {
          this.conn.options.logger?.error({ subject, err: err.message }, 'bus subscription error');
          return;
        }
        // The server lets a responder publish to whatever reply subject the request names: answering
        // `$JS.API.STREAM.PURGE.<stream>` would purge a stream with this service's rights. Only an
        // inbox gets an answer; a request naming anything else is not handled at all.
        if (msg.reply && !isInbox(msg.reply)) {
          this.conn.options.logger?.warn({ subject, reply: msg.reply.slice(0, 200) }, 'bus request refused: its reply subject is not an inbox');
          return;
        }
        const reply = dispatcher.dispatch({ subject: msg.subject, data: msg.data });
        if (reply instanceof Uint8Array) {
          if (msg.reply) msg.respond(reply);
        } else {
          void reply.then((bytes) => {
            if (msg.reply) msg.respond(bytes);
          });
        }
      },
    });
    const handle: Handle = {
      stop: async () => {
        this.conn.handles.delete(handle);
        if (!sub.isClosed()) await sub.drain().catch(() => sub.unsubscribe());
        // Draining stops deliveries; the handlers already running still use the service's database.
        await dispatcher.settled(this.conn.options.timeoutMs);
      },
    };
    this.conn.handles.add(handle);
    return handle;
  }

  async publish<E extends EventDef>(event: E, payload: PayloadOf<E>, options: PublishOptions): Promise<PublishAck> {
    const subject = eventSubject(this.conn.options.prefix, event);
    const data = encodeJson(payload, `event ${subject}`);
    const headers = this.headersFor(subject, options.id, options.caller);
    try {
      return await this.conn.publishToStream(subject, data, headers, this.conn.options.timeoutMs);
    } catch (err) {
      const cause = err instanceof Error ? err.message : String(err);
      this.conn.publishFailed(subject, cause);
      throw new StackError('SERVICE_UNAVAILABLE', `could not make event ${subject} durable: ${cause}`, { subject });
    }
  }

  async consume(options: ConsumeOptions, handler: (event: EventDef, payload: unknown, ctx: EventContext) => Promise<void>): Promise<Handle> {
    const base = streamOf(options.events);
    const stream = streamName(this.conn.options.prefix, base);
    const bySubject = new Map(options.events.map((e) => [eventSubject(this.conn.options.prefix, e), e]));
    const all = streamPlans(this.conn.options.prefix).find((p) => p.base === base)?.subjects ?? [];
    // NATS 2.9 allows one filter subject per consumer: filter when the consumer wants exactly
    // one subject, otherwise read the stream and acknowledge what it does not want.
    const filter = bySubject.size === 1 && all.length > 1 ? [...bySubject.keys()][0] : undefined;
    const jsm = await this.conn.manager();
    const config = {
      durable_name: options.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: options.startSeq !== undefined ? DeliverPolicy.StartSequence : options.deliver === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
      ...(options.startSeq !== undefined ? { opt_start_seq: Math.max(1, options.startSeq) } : {}),
      ...(options.inactiveThresholdMs !== undefined ? { inactive_threshold: nanos(options.inactiveThresholdMs) } : {}),
      ack_wait: nanos(options.ackWaitMs ?? 30_000),
      // A batching consumer holds up to maxInFlight messages unacknowledged; the server must let it.
      max_ack_pending: Math.max(1000, options.maxInFlight ?? 0),
      ...(filter ? { filter_subject: filter } : {}),
    };
    try {
      await jsm.consumers.info(stream, options.durable);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.consumers.add(stream, config);
    }
    const consumer = await this.conn.js.consumers.get(stream, options.durable);
    const messages: ConsumerMessages = await consumer.consume({ max_messages: options.batch ?? 100 });
    const logger = this.conn.options.logger;
    const signer = this.conn.signer;
    const maxInFlight = Math.max(1, options.maxInFlight ?? 1);
    const inFlight = new Set<Promise<void>>();
    const loop = (async () => {
      for await (const m of messages) {
        const event = bySubject.get(m.subject);
        if (!event) {
          m.ack();
          continue;
        }
        if (maxInFlight > 1) {
          const p = handleOne(m, event).finally(() => inFlight.delete(p));
          inFlight.add(p);
          if (inFlight.size >= maxInFlight) await Promise.race(inFlight);
          continue;
        }
        await handleOne(m, event);
      }
      await Promise.all(inFlight);
    })();
    async function handleOne(m: JsMsg, event: EventDef): Promise<void> {
      const header = (n: string) => m.headers?.get(n) || undefined;
      let payload: unknown;
      let caller: CallerContext;
      try {
        // Judged as of when the stream stored it: a consumer that was down, or a message redelivered
        // for minutes, still takes what was valid when it was published.
        caller = signer.verify(header(BUS_HEADERS.caller), { audience: m.subject, at: m.info.timestampNanos / 1e6 });
        payload = decodeJson(m.data);
        assertValid(event.payload, payload, `event ${m.subject}`);
      } catch (err) {
        // A message that can never be valid is terminated, not redelivered forever.
        logger?.error({ subject: m.subject, seq: m.seq, err: (err as Error).message }, 'bus event refused');
        m.term();
        return;
      }
      const ctx: EventContext = {
        id: header(BUS_HEADERS.messageId) ?? `${stream}:${m.seq}`,
        subject: m.subject,
        caller,
        sender: header(BUS_HEADERS.sender),
        traceparent: header(BUS_HEADERS.traceparent),
        seq: m.seq,
        deliveries: m.info.deliveryCount,
      };
      try {
        await tracer.startActiveSpan(`${m.subject} process`, { kind: SpanKind.CONSUMER }, traceContextOf(ctx.traceparent, header(BUS_HEADERS.tracestate)), async (span) => {
          try {
            await handler(event, payload, ctx);
          } finally {
            span.end();
          }
        });
        m.ack();
      } catch (err) {
        logger?.warn({ subject: m.subject, seq: m.seq, deliveries: ctx.deliveries, err: (err as Error).message }, 'event handler failed; it will be redelivered');
        m.nak(redeliveryDelayMs(ctx.deliveries));
      }
    }
    const handle: Handle = {
      stop: async () => {
        this.conn.handles.delete(handle);
        await messages.close().catch(() => undefined);
        await loop.catch(() => undefined);
      },
    };
    this.conn.handles.add(handle);
    return handle;
  }

  async lastSequence(stream: StreamBase): Promise<number> {
    const jsm = await this.conn.manager();
    const info = await jsm.streams.info(streamName(this.conn.options.prefix, stream));
    return info.state.last_seq;
  }

  isHealthy(): boolean {
    return this.conn.isHealthy();
  }
}
