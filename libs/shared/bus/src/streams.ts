/** Which subjects each durable stream holds, derived from the event registry. */
import { ALL_EVENT_DEFS, STREAM_BASES, eventSubject, streamName, type EventDef, type StreamBase } from '@stack/contracts';

export interface StreamPlan {
  base: StreamBase;
  name: string;
  subjects: string[];
  /** How long messages are kept (consumers normally take them much sooner). */
  maxAgeMs: number;
}

const MAX_AGE_MS: Record<StreamBase, number> = {
  EVENTS: 7 * 24 * 3600_000,
  AUDIT: 7 * 24 * 3600_000,
  // Entries only matter while a credential they could match is alive (max passport TTL 1 h).
  REVOCATIONS: 24 * 3600_000,
};

/**
 * How long a message whose handler failed (delivered `deliveries` times so far) waits before it is
 * delivered again: the delay NatsBus asks with its NAK, and the one the in-process bus waits.
 */
export function redeliveryDelayMs(deliveries: number): number {
  return Math.min(30_000, 250 * 2 ** Math.min(deliveries, 7));
}

/** JetStream's window for dropping a second publish with the same Nats-Msg-Id. */
export const DUPLICATE_WINDOW_MS = 10 * 60_000;

export function streamPlans(prefix: string, events: readonly EventDef[] = ALL_EVENT_DEFS): StreamPlan[] {
  return STREAM_BASES.map((base) => ({
    base,
    name: streamName(prefix, base),
    subjects: events.filter((e) => e.stream === base).map((e) => eventSubject(prefix, e)),
    maxAgeMs: MAX_AGE_MS[base],
  }));
}

/** The one stream all `events` live in; a consumer reads from one stream. */
export function streamOf(events: readonly EventDef[]): StreamBase {
  const streams = new Set(events.map((e) => e.stream));
  if (streams.size !== 1) throw new Error(`a consumer reads one stream; got events from ${[...streams].join(', ') || 'none'}`);
  return [...streams][0] as StreamBase;
}
