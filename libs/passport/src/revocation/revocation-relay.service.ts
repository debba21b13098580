/**
 * The passport service's side of revocation fan-out: it publishes the heartbeat that tells
 * every node how far the stream goes (DESIGN.md §4), answers `revocation_snapshot` from this
 * replica's own live state, gives the node's state a fallback snapshot from its own tables
 * (for the first replica, when no peer can answer), and keeps a durable copy of the
 * member/grant/client/api_key revocations auth publishes (whatever kind is not its own), so a
 * later snapshot still holds them until they expire; a member's also reaches, by jti, what was
 * minted from their passports after its stamp.
 */
import { randomUUID } from 'node:crypto';

import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { PASSPORT_COMMANDS, RevocationHeartbeatEvent, StackError } from '@stack/contracts';
import { RevocationHost, serviceKitToken, type ServiceKit } from '@stack/runtime';

import { PassportService } from '../passports/passport.service';
import { PassportStore } from '../store/passport.store';

/** The passport service's own revocations are already in its tables; every other kind is auth's. */
const OWN_KINDS = new Set(['jti', 'agent', 'session', 'operator']);

@Injectable()
export class RevocationRelay implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private timer?: NodeJS.Timeout;
  private handle?: Handle;
  private unsubscribe?: () => void;
  private beatFailing = false;
  readonly heartbeatMs: number;

  constructor(
    @Inject(serviceKitToken('passport')) private readonly kit: ServiceKit,
    private readonly host: RevocationHost,
    private readonly store: PassportStore,
    private readonly passports: PassportService,
  ) {
    // A third of the bound: a node misses two heartbeats before it turns stale.
    this.heartbeatMs = Math.max(250, Math.min(5000, Math.floor(kit.config.revocationMaxStalenessMs / 3)));
  }

  onModuleInit(): void {
    this.host.setLocalSnapshot(async () => ({ seq: 0, entries: await this.store.liveRevocations(Date.now()) }));
    this.unsubscribe = this.host.state.onRevoked((entry) => {
      if (OWN_KINDS.has(entry.kind)) return;
      void this.store.insertRevocation(this.kit.dataSource, entry).catch((err: Error) => this.kit.logger.warn({ revocation_id: entry.id, err: err.message }, 'could not store a revocation'));
      if (entry.kind === 'member') {
        void this.passports.revokeMemberPassports(entry).catch((err: Error) =>
          this.kit.logger.warn(
            { revocation_id: entry.id, operator_id: entry.operator_id, member_id: entry.value, err: err.message },
            'could not revoke the passports refreshed or delegated from a revoked member’s after the revocation; revoke that member’s agents’ passports (POST /v1/passports/revoke) or restart a passport replica to retry',
          ),
        );
      }
    });
    this.handle = this.kit.bus.handle(PASSPORT_COMMANDS.revocationSnapshot, () => {
      const state = this.host.state;
      // Only a replica that is itself caught up may hand its state to another node.
      // `loaded` tells the asker whether waiting may help: a loaded peer is only briefly behind.
      if (!state.isFresh()) throw new StackError('SERVICE_UNAVAILABLE', 'this replica is not caught up with the revocation stream', { loaded: state.status().loaded });
      const snap = state.snapshot();
      return { seq: snap.seq, taken_at_ms: Date.now(), entries: [...snap.entries] };
    });
  }

  onApplicationBootstrap(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.heartbeatMs);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    this.unsubscribe?.();
    await this.handle?.stop();
  }

  private async beat(): Promise<void> {
    try {
      const last = await this.kit.bus.lastSequence('REVOCATIONS');
      await this.kit.bus.publish(RevocationHeartbeatEvent, { at_ms: Date.now(), last_seq: last }, { id: `hb_${randomUUID()}` });
      if (this.beatFailing) this.kit.logger.info({}, 'revocation heartbeat published again');
      this.beatFailing = false;
    } catch (err) {
      // Without heartbeats every node turns stale and refuses all credentials: say so once, loudly.
      const log = this.beatFailing ? this.kit.logger.debug.bind(this.kit.logger) : this.kit.logger.warn.bind(this.kit.logger);
      this.beatFailing = true;
      log({ err: (err as Error).message }, 'revocation heartbeat not published (nodes turn stale without it); retrying every beat');
    }
  }
}
