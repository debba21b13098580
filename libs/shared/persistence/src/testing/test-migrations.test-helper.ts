/** A data table for tests that write data and events together, created the way services do. */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from '../sql';

export class Orders1764000000300 implements MigrationInterface {
  readonly name = 'Orders1764000000300';
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE TABLE ${qualifiedTable(schemaOf(queryRunner), 'orders')} (id text PRIMARY KEY, note text)`);
  }
  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE ${qualifiedTable(schemaOf(queryRunner), 'orders')}`);
  }
}

/** Polls until `check` is true, failing after `timeoutMs` with `what`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
