/**
 * A message a consumer has already applied. A handler claims the message id in the same
 * transaction as its effect (claimMessage), so a redelivery finds the row and does nothing.
 */
import { Column, Entity, PrimaryColumn } from 'typeorm';

@Entity({ name: 'inbox' })
export class InboxMessage {
  /** The consuming handler (e.g. the durable consumer's name); one message may matter to several. */
  @PrimaryColumn({ type: 'text' })
  consumer!: string;

  @PrimaryColumn({ name: 'message_id', type: 'text' })
  messageId!: string;

  @Column({ name: 'processed_at', type: 'timestamptz', insert: false, update: false })
  processedAt!: Date;
}
