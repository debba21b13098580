/**
 * Hosts the node's revocation state (libs/shared/security RevocationState) in a STACK process:
 * feeds it from STACK_REVOCATIONS through this process's bus, loads its snapshot from the
 * passport service (`passport.revocation_snapshot`), starts it with the app and registers the
 * `revocations` readiness check, so `/readyz` fails while the state is stale. Every service
 * that checks credentials imports `RevocationModule`; Nest makes it one instance per process.
 */
import { randomBytes } from 'node:crypto';

import { Inject, Injectable, Module, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';

import type { Bus, BusConnection } from '@stack/bus';
import type { StackConfig } from '@stack/config';
import { PASSPORT_COMMANDS, RevocationHeartbeatEvent, RevocationRecordedEvent, type PayloadOf } from '@stack/contracts';
import type { HealthRegistry, StackLogger } from '@stack/observability';
import { RevocationState, type RevocationEntry, type RevocationFeed, type RevocationSnapshotData } from '@stack/security';

import { TOKENS } from './service-definition';

/** A snapshot source tried when no peer answers (the passport service reads its own tables). */
export type LocalRevocationSnapshot = () => Promise<RevocationSnapshotData>;

/** Consumers a crashed node leaves behind are removed by the server after this long unread. */
const CONSUMER_INACTIVE_MS = 3600_000;
const SNAPSHOT_ATTEMPTS = 5;

export function busRevocationFeed(options: { bus: Bus; instanceId: string; localSnapshot?: () => LocalRevocationSnapshot | undefined; snapshotTimeoutMs?: number }): RevocationFeed {
  const { bus } = options;
  const name = options.instanceId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 80);
  return {
    lastSequence: () => bus.lastSequence('REVOCATIONS'),
    snapshot: async () => {
      let lastError: unknown;
      // The queue group picks a replica at random; one that is itself not caught up refuses, so ask a few times.
      for (let attempt = 0; attempt < SNAPSHOT_ATTEMPTS; attempt++) {
        try {
          const snap = await bus.request(PASSPORT_COMMANDS.revocationSnapshot, {}, { timeoutMs: options.snapshotTimeoutMs ?? 2000 });
          return { seq: snap.seq, entries: snap.entries as RevocationEntry[] };
        } catch (err) {
          lastError = err;
          if ((err as { code?: string }).code === 'BUS_TIMEOUT') break;
          // A replica that is not caught up refuses; give the queue group a moment and ask again (maybe another one).
          if (attempt < SNAPSHOT_ATTEMPTS - 1) await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
        }
      }
      const local = options.localSnapshot?.();
      if (local) return local();
      throw lastError;
    },
    follow: async (fromSeq, onMessage) =>
      bus.consume(
        { durable: `revocations-${name}-${randomBytes(4).toString('hex')}`, events: [RevocationRecordedEvent, RevocationHeartbeatEvent], startSeq: fromSeq, inactiveThresholdMs: CONSUMER_INACTIVE_MS, batch: 256 },
        async (event, payload, ctx) => {
          if (event === RevocationRecordedEvent) {
            const p = payload as PayloadOf<typeof RevocationRecordedEvent>;
            onMessage({ type: 'revocation', seq: ctx.seq, entry: p as RevocationEntry });
          } else {
            const p = payload as PayloadOf<typeof RevocationHeartbeatEvent>;
            onMessage({ type: 'heartbeat', seq: ctx.seq, at_ms: p.at_ms, last_seq: p.last_seq });
          }
        },
      ),
  };
}

@Injectable()
export class RevocationHost implements OnApplicationBootstrap, OnModuleDestroy {
  readonly state: RevocationState;
  private localSnapshot?: LocalRevocationSnapshot;

  constructor(@Inject(TOKENS.busConnection) bus: BusConnection, @Inject(TOKENS.config) config: StackConfig, @Inject(TOKENS.health) private readonly health: HealthRegistry, @Inject(TOKENS.logger) logger: StackLogger) {
    const feed = busRevocationFeed({ bus: bus.forService(config.services[0]!), instanceId: config.instanceId, localSnapshot: () => this.localSnapshot });
    const log = logger.child({ component: 'revocations' });
    this.state = new RevocationState({ feed, maxStalenessMs: config.revocationMaxStalenessMs, logger: { info: (o, m) => log.info(o, m), warn: (o, m) => log.warn(o, m) } });
  }

  /** The passport service's own tables, used when no peer can give a snapshot (the first replica to start). */
  setLocalSnapshot(source: LocalRevocationSnapshot): void {
    this.localSnapshot = source;
  }

  onApplicationBootstrap(): void {
    this.health.register('revocations', () => {
      if (!this.state.isFresh()) {
        const s = this.state.status();
        throw new Error(`revocation state is stale (applied seq ${s.applied_seq}, fresh as of ${s.fresh_as_of_ms === null ? 'never' : new Date(s.fresh_as_of_ms).toISOString()})`);
      }
    });
    this.state.start();
  }

  async onModuleDestroy(): Promise<void> {
    this.health.unregister('revocations');
    await this.state.stop();
  }
}

@Module({ providers: [RevocationHost], exports: [RevocationHost] })
export class RevocationModule {}
