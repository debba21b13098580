/**
 * Encoding of the wire shapes in @stack/contracts (bus/envelope.ts): requests carry their
 * metadata in the JSON document, replies are `{ok:true,data}` or `{ok:false,error}`, so an
 * error raised by a handler in another process arrives as the same StackError.
 */
import { MAX_BUS_PAYLOAD_BYTES, StackError, type ReplyEnvelope, type RequestEnvelope, type RequestMeta } from '@stack/contracts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function checked(json: string, what: string): Uint8Array {
  // Cheap bound first: UTF-8 is at most 3 bytes per UTF-16 unit.
  if (json.length * 3 <= MAX_BUS_PAYLOAD_BYTES) return encoder.encode(json);
  const bytes = encoder.encode(json);
  if (bytes.length > MAX_BUS_PAYLOAD_BYTES) {
    throw new StackError('PAYLOAD_TOO_LARGE', `${what} is ${bytes.length} bytes; bus messages are limited to ${MAX_BUS_PAYLOAD_BYTES} bytes (send bulk data over HTTP)`, {
      bytes: bytes.length,
      limit: MAX_BUS_PAYLOAD_BYTES,
    });
  }
  return bytes;
}

export function encodeJson(value: unknown, what: string): Uint8Array {
  return checked(JSON.stringify(value), what);
}

/**
 * The JSON text of a message that never leaves the process (the in-process bus keeps its events
 * as text: no UTF-8 encoding on publish and decoding on delivery), held to the same size limit.
 */
export function encodeJsonText(value: unknown, what: string): string {
  const json = JSON.stringify(value);
  if (json.length * 3 > MAX_BUS_PAYLOAD_BYTES) checked(json, what);
  return json;
}

export function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(decoder.decode(bytes));
}

export function encodeRequest(meta: RequestMeta, data: unknown, what: string): Uint8Array {
  return checked(JSON.stringify({ meta, data } satisfies RequestEnvelope), what);
}

/** Throws StackError INVALID_REQUEST when the bytes are not a request envelope. */
export function decodeRequest(bytes: Uint8Array, subject: string): RequestEnvelope {
  let env: RequestEnvelope;
  try {
    env = JSON.parse(decoder.decode(bytes)) as RequestEnvelope;
  } catch {
    throw new StackError('INVALID_REQUEST', `request to ${subject} is not valid JSON`);
  }
  if (!env || typeof env !== 'object' || !env.meta || typeof env.meta !== 'object' || typeof env.meta.id !== 'string') {
    throw new StackError('INVALID_REQUEST', `request to ${subject} has no envelope`);
  }
  // What reaches a handler's context as strings must be strings (the caller is the signer's to judge).
  const { sender, traceparent, tracestate } = env.meta;
  if ((sender !== undefined && typeof sender !== 'string') || (traceparent !== undefined && typeof traceparent !== 'string') || (tracestate !== undefined && typeof tracestate !== 'string')) {
    throw new StackError('INVALID_REQUEST', `request to ${subject} has a malformed envelope`);
  }
  return env;
}

export function okReply(data: unknown, what: string): Uint8Array {
  return encodeJson({ ok: true, data } satisfies ReplyEnvelope, what);
}

export function errorReply(err: StackError): Uint8Array {
  return encoder.encode(JSON.stringify({ ok: false, error: err.toBody() } satisfies ReplyEnvelope));
}

export function decodeReply(bytes: Uint8Array): unknown {
  let envelope: ReplyEnvelope;
  try {
    envelope = decodeJson(bytes) as ReplyEnvelope;
  } catch {
    throw new StackError('INTERNAL_ERROR', 'bus reply is not valid JSON');
  }
  if (envelope && envelope.ok === true) return envelope.data;
  if (envelope && envelope.ok === false && envelope.error) throw StackError.fromBody(envelope.error);
  throw new StackError('INTERNAL_ERROR', 'bus reply has no envelope');
}
