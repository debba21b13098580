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
/** Asking peers for a snapshot: a short budget when no loaded peer answers (the first replica
 * to start asks only itself), a longer one while a loaded peer refuses because it is briefly
 * behind the heartbeat (under load). After either, the node's own tables and a full replay. */
const SNAPSHOT_BUDGET_MS = 1000;
const SNAPSHOT_PATIENCE_MS = 5000;

export function busRevocationFeed(options: { bus: Bus; instanceId: string; localSnapshot?: () => LocalRevocationSnapshot | undefined; snapshotTimeoutMs?: number; logger?: StackLogger }): RevocationFeed {
  const { bus } = options;
  const name = options.instanceId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 80);
  return {
    lastSequence: () => bus.lastSequence('REVOCATIONS'),
    snapshot: async () => {
      const refusals: string[] = [];
      let lastError: unknown;
      const startedAt = Date.now();
      let peerBehind = false;
      for (let attempt = 0; ; attempt++) {
        try {
          const snap = await bus.request(PASSPORT_COMMANDS.revocationSnapshot, {}, { timeoutMs: options.snapshotTimeoutMs ?? 2000 });
          return { seq: snap.seq, entries: snap.entries as RevocationEntry[] };
        } catch (err) {
          lastError = err;
          const e = err as { code?: string; details?: { loaded?: unknown } };
          refusals.push(e.details?.loaded === true ? `${e.code}(loaded peer behind)` : (e.code ?? 'ERROR'));
          if (e.code === 'BUS_TIMEOUT') break;
          if (e.details?.loaded === true) peerBehind = true;
          const pause = Math.min(100 * (attempt + 1), 400);
          if (Date.now() + pause - startedAt >= (peerBehind ? SNAPSHOT_PATIENCE_MS : SNAPSHOT_BUDGET_MS)) break;
          await new Promise((r) => setTimeout(r, pause));
        }
      }
      const local = options.localSnapshot?.();
      if (local) {
        options.logger?.info({ refusals: refusals.join(', ') }, 'no caught-up peer gave a revocation snapshot: loading it from this service’s own tables and replaying the whole stream');
        return local();
      }
      options.logger?.warn({ refusals: refusals.join(', ') }, 'no caught-up passport replica gave a revocation snapshot');
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
    const log = logger.child({ component: 'revocations' });
    const feed = busRevocationFeed({ bus: bus.forService(config.services[0]!), instanceId: config.instanceId, localSnapshot: () => this.localSnapshot, logger: log });
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
