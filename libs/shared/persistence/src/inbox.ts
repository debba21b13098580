/**
 * Idempotent consumers. A handler claims the message id inside the same transaction as its
 * effect; the first delivery claims it and applies, a redelivery (JetStream redelivers until
 * acknowledged, an outbox may publish twice) finds it claimed and does nothing. A rolled-back
 * handler leaves no claim, so the retry applies.
 */
import type { DataSource, EntityManager } from 'typeorm';

import { qualifiedTable, runStatement, schemaOf } from './sql';

/** True the first time `consumer` sees `messageId` (go ahead), false for a redelivery (skip). */
export async function claimMessage(manager: EntityManager, consumer: string, messageId: string): Promise<boolean> {
  if (!manager.queryRunner?.isTransactionActive) {
    throw new Error(`claimMessage(${consumer}) must be called with the EntityManager of the handler's open transaction`);
  }
  const rows = (await manager.query(
    `INSERT INTO ${qualifiedTable(schemaOf(manager), 'inbox')} (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING message_id`,
    [consumer, messageId],
  )) as unknown[];
  return rows.length === 1;
}

export interface PruneInboxOptions {
  /** Claims older than this are forgotten; keep it well beyond how long a message can be redelivered. */
  olderThanMs: number;
  batchSize?: number;
}

/** Deletes old claims in batches (one short statement each); returns how many. */
export async function pruneInbox(dataSource: DataSource, options: PruneInboxOptions): Promise<number> {
  const table = qualifiedTable(schemaOf(dataSource), 'inbox');
  const batchSize = options.batchSize ?? 1000;
  let total = 0;
  for (;;) {
    const { affected } = await runStatement(
      dataSource,
      `DELETE FROM ${table} WHERE (consumer, message_id) IN (
         SELECT consumer, message_id FROM ${table} WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2
       )`,
      [options.olderThanMs / 1000, batchSize],
    );
    total += affected;
    if (affected < batchSize) return total;
  }
}
