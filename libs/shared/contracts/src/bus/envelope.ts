/**
 * The wire shape of a command (request/reply). Frozen: every STACK process of a deployment
 * must read what the others write.
 *
 * A request is one JSON document carrying its metadata beside the payload, rather than NATS
 * headers: on the hot path (every tool call crosses the bus) one JSON parse is markedly
 * cheaper than NATS header encoding and parsing. Events on the durable streams keep NATS
 * headers (BUS_HEADERS), because other teams' consumers read them with stock clients.
 */
import type { ErrorBody } from '../errors/error-codes';

export interface RequestMeta {
  /** Unique message id. */
  id: string;
  /** The sender may resend this id (a retry): the receiver remembers its reply for a while and answers a resend with it instead of acting twice. */
  replay?: boolean;
  /** Signed caller context (compact JWS, DESIGN.md §2). */
  caller: string;
  /** The service that sent it. */
  sender: string;
  /** W3C trace context. */
  traceparent?: string;
  tracestate?: string;
}

export interface RequestEnvelope<T = unknown> {
  meta: RequestMeta;
  data: T;
}

export type ReplyEnvelope<T = unknown> = { ok: true; data: T } | { ok: false; error: ErrorBody };
