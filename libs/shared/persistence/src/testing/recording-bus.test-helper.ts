/**
 * A Bus stand-in for the relay's tests: records what was published (and under which trace),
 * and fails on demand. Only `publish` matters to the relay.
 */
import { context, propagation } from '@opentelemetry/api';
import type { Bus, PublishAck, PublishOptions } from '@stack/bus';
import type { EventDef } from '@stack/contracts';

export interface Published {
  event: string;
  payload: unknown;
  id: string;
  traceparent?: string;
}

export class RecordingBus implements Pick<Bus, 'publish'> {
  readonly published: Published[] = [];
  attempts = 0;
  /** When set, publish throws it (after counting the attempt). */
  failWith: Error | undefined;
  /** Delay before each publish completes. */
  delayMs = 0;

  async publish(event: EventDef, payload: unknown, options: PublishOptions): Promise<PublishAck> {
    this.attempts += 1;
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.failWith) throw this.failWith;
    const seq = this.published.push({ event: `${event.entity}.${event.verb}`, payload, id: options.id, traceparent: carrier.traceparent });
    return { stream: event.stream, seq, duplicate: false };
  }

  ids(): string[] {
    return this.published.map((p) => p.id);
  }
}
