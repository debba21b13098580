/**
 * The bytes on the wire. A reply is `{ok:true,data}` or `{ok:false,error:{code,message,details?}}`,
 * so an error raised by a handler in another process arrives as the same StackError.
 */
import { MAX_BUS_PAYLOAD_BYTES, StackError, type ErrorBody } from '@stack/contracts';

export type ReplyEnvelope = { ok: true; data: unknown } | { ok: false; error: ErrorBody };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown, what: string): Uint8Array {
  const bytes = encoder.encode(JSON.stringify(value));
  if (bytes.length > MAX_BUS_PAYLOAD_BYTES) {
    throw new StackError('PAYLOAD_TOO_LARGE', `${what} is ${bytes.length} bytes; bus messages are limited to ${MAX_BUS_PAYLOAD_BYTES} bytes (send bulk data over HTTP)`, {
      bytes: bytes.length,
      limit: MAX_BUS_PAYLOAD_BYTES,
    });
  }
  return bytes;
}

export function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(decoder.decode(bytes));
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
