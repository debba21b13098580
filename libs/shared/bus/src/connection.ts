/**
 * A bus connection is the transport (one NATS connection, or the in-process hub); each
 * service in the process talks through its own `Bus` facade from `forService`, so a process
 * that runs several services shares one connection.
 */
import type { ServiceName } from '@stack/contracts';

import type { Bus } from './bus';

export interface BusLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface BusConnectionOptions {
  /** STACK_BUS_PREFIX. */
  prefix: string;
  /** Key that signs and verifies caller contexts (STACK_INTERNAL_SECRET, decoded). */
  internalSecret: Buffer;
  /** Default request timeout (STACK_BUS_TIMEOUT_MS). */
  timeoutMs: number;
  /** Instance id (for replies and logs). */
  instanceId: string;
  logger?: BusLogger;
}

export interface NatsBusConnectionOptions extends BusConnectionOptions {
  /** NATS_URL: one or more comma-separated server URLs. */
  servers: string;
  /** Connection name shown by the NATS server. */
  name?: string;
  /** JetStream replicas of each stream (3 on a three-node cluster). */
  streamReplicas?: number;
  /**
   * First token of this connection's reply subjects (default `_INBOX`): `_INBOX_<service>` for a
   * process running one service (`serviceInboxPrefix`), so its NATS user may be allowed to read
   * its own replies and no other service's.
   */
  inboxPrefix?: string;
}

export interface BusConnection {
  readonly kind: 'nats' | 'in-process';
  forService(service: ServiceName): Bus;
  ensureStreams(): Promise<void>;
  /** Resolves once every subscription made so far is registered with the server. */
  flush(): Promise<void>;
  isHealthy(): boolean;
  close(): Promise<void>;
}
