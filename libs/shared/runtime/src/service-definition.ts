/**
 * What a service library hands the runtime: its Nest module, its tables and its migrations.
 * The runtime gives it back, under tokens below, the service's own bus facade, data source
 * and outbox — so a service never reaches for another's.
 */
import type { DynamicModule, INestApplicationContext, Type } from '@nestjs/common';

import type { ServiceName } from '@stack/contracts';
import type { EntityDefinition, MigrationClass } from '@stack/persistence';
import type { RewrapStore } from '@stack/security';
import type { DataSource } from 'typeorm';

import type { FastRoute } from './fast-routes';

export interface ServiceDefinition {
  service: ServiceName;
  /** The service's root Nest module (controllers, providers, bus handlers). */
  module: Type<unknown> | DynamicModule;
  entities: readonly EntityDefinition[];
  migrations: readonly MigrationClass[];
  /** Paths whose request bodies the service reads itself (the runtime's JSON parser leaves them alone). */
  rawBodyPaths?: readonly string[];
  /**
   * The service's tables of envelope-sealed values, for master-key rotation
   * (`stack admin rotate-master-key --status|--rewrap` counts and re-wraps every one).
   */
  sealedValues?: (dataSource: DataSource) => readonly SealedValues[];
  /** Hot routes served before Express and Nest (fast-routes.ts), built from the started app's providers. */
  fastRoutes?: (app: INestApplicationContext) => readonly FastRoute[];
}

/** One table of sealed values: what it holds (for the operator), and how to count and re-wrap it. */
export interface SealedValues {
  /** Plural noun for reports: `connection(s)`, `drop-off payload(s)`. */
  label: string;
  store: RewrapStore & { countByKey(): Promise<Record<string, number>> };
}

export const TOKENS = {
  config: Symbol.for('stack.config'),
  logger: Symbol.for('stack.logger'),
  metrics: Symbol.for('stack.metrics'),
  health: Symbol.for('stack.health'),
  busConnection: Symbol.for('stack.bus-connection'),
  cache: Symbol.for('stack.cache'),
} as const;

/** Injection token of one service's kit: `@Inject(serviceKitToken('auth')) kit: ServiceKit`. */
export function serviceKitToken(service: ServiceName): string {
  return `stack.service-kit.${service}`;
}
