import { SERVICE_NAMES, SERVICE_SCHEMAS, type ServiceName } from '@stack/contracts';
import type { MigrationInterface } from 'typeorm';

import { StackFoundation1764000000000 } from './foundation.migration';
import { InboxMessage } from './inbox-message.entity';
import { migrationLockKey } from './migrations';
import { OutboxMessage } from './outbox-message.entity';
import { createServiceDataSource } from './service-data-source';
import { qualifiedTable, schemaOf } from './sql';

class Widgets1764000000100 implements MigrationInterface {
  readonly name = 'Widgets1764000000100';
  async up(): Promise<void> {}
  async down(): Promise<void> {}
}

describe('createServiceDataSource', () => {
  const url = 'postgres://postgres@127.0.0.1:5432/x';

  it('configures the service schema, its migrations table, pool and application name, with synchronize off', () => {
    const ds = createServiceDataSource({ service: 'credential-proxy', url, entities: [], migrations: [Widgets1764000000100], poolSize: 3 });
    expect(ds.name).toBe('credential-proxy');
    expect(ds.schema).toBe('credential_proxy');
    expect(schemaOf(ds)).toBe('credential_proxy');
    expect(ds.options).toMatchObject({
      type: 'postgres',
      schema: 'credential_proxy',
      migrationsTableName: 'migrations',
      migrationsTransactionMode: 'each',
      synchronize: false,
      migrationsRun: false,
      poolSize: 3,
      applicationName: 'stack-credential-proxy',
    });
    expect(ds.options.entities).toEqual([OutboxMessage, InboxMessage]);
    // The foundation comes first, whatever the service passes.
    expect(ds.options.migrations).toEqual([StackFoundation1764000000000, Widgets1764000000100]);
    expect(ds.isInitialized).toBe(false);
  });

  it('defaults the pool to 5 connections', () => {
    expect(createServiceDataSource({ service: 'audit', url, entities: [], migrations: [] }).options.poolSize).toBe(5);
  });

  it('names the bad option', () => {
    expect(() => createServiceDataSource({ service: 'nope' as ServiceName, url, entities: [], migrations: [] })).toThrow(/option 'service'/);
    expect(() => createServiceDataSource({ service: 'audit', url: 'mysql://x', entities: [], migrations: [] })).toThrow(/option 'url'/);
    expect(() => createServiceDataSource({ service: 'audit', url, entities: [], migrations: [], poolSize: 0 })).toThrow(/option 'poolSize'/);
  });
});

describe('SQL names', () => {
  it('quotes schema and table', () => {
    expect(qualifiedTable('mcp_gateway', 'outbox')).toBe('"mcp_gateway"."outbox"');
    expect(qualifiedTable('a"b', 't')).toBe('"a""b"."t"');
  });
});

describe('migrationLockKey', () => {
  it('is a fixed signed 64-bit key, different for every service schema', () => {
    const keys = SERVICE_NAMES.map((s) => migrationLockKey(SERVICE_SCHEMAS[s]));
    expect(new Set(keys).size).toBe(SERVICE_NAMES.length);
    expect(migrationLockKey('audit')).toBe(migrationLockKey('audit'));
    for (const key of keys) {
      const n = BigInt(key);
      expect(n >= -(2n ** 63n) && n < 2n ** 63n).toBe(true);
    }
  });
});
