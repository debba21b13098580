/**
 * Header names carried by every bus message. Frozen: other deployments' consumers read them.
 */
export const BUS_HEADERS = {
  /** Unique message id; receivers deduplicate by it. JetStream reads `Nats-Msg-Id` for its own window. */
  messageId: 'Stack-Msg-Id',
  natsMessageId: 'Nats-Msg-Id',
  /** W3C trace context. */
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  /** The signed caller context (compact JWS, DESIGN.md §2). */
  caller: 'Stack-Caller',
  /** The service that sent the message. */
  sender: 'Stack-Sender',
} as const;

/** NATS' default max_payload is 1 MiB; STACK keeps every payload under this bound. */
export const MAX_BUS_PAYLOAD_BYTES = 900 * 1024;
