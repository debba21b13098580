/**
 * What the sending side attaches to a message, the same for both transports: the request
 * envelope's metadata for commands, the NATS-style headers for events. The caller context is
 * signed for the message's subject, so it is good for nothing else.
 */
import type { Span } from '@opentelemetry/api';

import { BUS_HEADERS, type CallerContext, type RequestMeta, type ServiceName } from '@stack/contracts';
import type { CallerContextSigner } from '@stack/security';

import type { RequestOptions } from './bus';
import { currentTraceFields } from './dispatch';

export interface Sender {
  service: ServiceName;
  signer: CallerContextSigner;
  /** The context a service acts under when no caller is passed on. */
  systemCaller: CallerContext;
}

export function systemCallerOf(service: ServiceName): CallerContext {
  return { issuer: service, kind: 'system', scopes: [] };
}

export function requestMeta(sender: Sender, subject: string, id: string, options: RequestOptions, span?: Span): RequestMeta {
  return {
    id,
    ...(options.messageId ? { replay: true } : {}),
    caller: sender.signer.sign(options.caller ?? sender.systemCaller, subject),
    sender: sender.service,
    ...currentTraceFields(span),
  };
}

/** Headers of an event: message id, sender, signed caller, trace context. */
export function eventHeaders(sender: Sender, subject: string, id: string, caller: CallerContext | undefined): [string, string][] {
  const entries: [string, string][] = [
    [BUS_HEADERS.messageId, id],
    [BUS_HEADERS.sender, sender.service],
    [BUS_HEADERS.caller, sender.signer.sign(caller ?? sender.systemCaller, subject)],
  ];
  const trace = currentTraceFields();
  if (trace.traceparent) entries.push([BUS_HEADERS.traceparent, trace.traceparent]);
  if (trace.tracestate) entries.push([BUS_HEADERS.tracestate, trace.tracestate]);
  return entries;
}
