/**
 * Which relay publishes a data source's outbox in this process, so a writer that has just
 * committed events (Outbox.withEvents) can wake it instead of leaving them to its next interval.
 */
import type { DataSource } from 'typeorm';

interface Nudgeable {
  nudge(): void;
}

const RUNNING = new WeakMap<DataSource, Nudgeable>();

export function setRunningRelay(dataSource: DataSource, relay: Nudgeable): void {
  RUNNING.set(dataSource, relay);
}

export function clearRunningRelay(dataSource: DataSource, relay: Nudgeable): void {
  if (RUNNING.get(dataSource) === relay) RUNNING.delete(dataSource);
}

/** Wakes the relay publishing `dataSource`'s outbox, if one runs in this process. */
export function nudgeRelayOf(dataSource: DataSource): void {
  RUNNING.get(dataSource)?.nudge();
}
