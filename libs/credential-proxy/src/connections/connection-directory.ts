/**
 * The proxy's hot-path view of an operator's connections and custom services: held in memory and
 * checked against a generation stamp in the shared cache on every call. Every write to those
 * tables (create, disconnect, status, token refresh, re-wrap, a new custom service) stamps a new
 * generation after it commits, so the next call on any replica reloads — a disconnected
 * connection stops working at once everywhere, and a call costs one cache read instead of
 * database queries. Rows load generation-first, so a write racing a load is never cached as
 * current; a bounded age reloads anyway.
 */
import { randomBytes } from 'node:crypto';

import type { Cache } from '@stack/cache';

import type { ConnectionRepository, ConnectionRow, CustomServiceRow } from './connection.repository';

/** An operator's connections (oldest first) and custom services (by id), as the repository orders them. */
export interface OperatorRows {
  connections: ConnectionRow[];
  services: CustomServiceRow[];
}

/** What one operator has, as loaded at one generation. */
interface Snapshot {
  generation: string | undefined;
  loadedAt: number;
  data: Promise<OperatorRows>;
}

export interface ConnectionDirectoryOptions {
  /** Reload even an unchanged generation after this long (default 30 s). */
  maxAgeMs?: number;
  /** Operators kept in memory (default 10,000; the least recently loaded go first). */
  maxOperators?: number;
  now?: () => number;
  /**
   * Connections a reload no longer finds (disconnected on any replica): this replica forgets their
   * secrets in the log redactor. The replica that disconnected forgets them at once itself.
   */
  onGone?: (operatorId: string, connectionIds: string[]) => void;
}

const GENERATION_TTL_MS = 7 * 24 * 3600 * 1000;

export function generationKey(operatorId: string): string {
  return `cp:conn-gen:${operatorId}`;
}

export class ConnectionDirectory {
  private readonly snapshots = new Map<string, Snapshot>();
  /** The connection ids of each operator's last load: a reload that no longer finds one tells `onGone`. */
  private readonly connectionIds = new Map<string, ReadonlySet<string>>();
  private readonly maxAgeMs: number;
  private readonly maxOperators: number;
  private readonly now: () => number;
  private readonly onGone?: (operatorId: string, connectionIds: string[]) => void;

  constructor(
    private readonly repo: ConnectionRepository,
    private readonly cache: Cache,
    options: ConnectionDirectoryOptions = {},
  ) {
    this.maxAgeMs = options.maxAgeMs ?? 30_000;
    this.maxOperators = options.maxOperators ?? 10_000;
    this.now = options.now ?? Date.now;
    this.onGone = options.onGone;
  }

  /** Call after a write to the operator's connections or services has committed. */
  async changed(operatorId: string): Promise<void> {
    this.snapshots.delete(operatorId);
    await this.cache.set(generationKey(operatorId), randomBytes(9).toString('base64url'), { ttlMs: GENERATION_TTL_MS });
  }

  /**
   * Everything the operator has, from one generation: a caller that needs both a connection and
   * its custom service reads them here once. Shared arrays — read them, never change them.
   */
  async rows(operatorId: string): Promise<OperatorRows> {
    const generation = await this.cache.get(generationKey(operatorId));
    const held = this.snapshots.get(operatorId);
    if (held && held.generation === generation && this.now() - held.loadedAt < this.maxAgeMs) return held.data;
    const snapshot: Snapshot = {
      generation,
      loadedAt: this.now(),
      data: Promise.all([this.repo.list(operatorId), this.repo.listServices(operatorId)]).then(([connections, services]) => ({ connections, services })),
    };
    this.snapshots.delete(operatorId);
    this.snapshots.set(operatorId, snapshot);
    if (this.snapshots.size > this.maxOperators) {
      const oldest = this.snapshots.keys().next().value as string;
      this.snapshots.delete(oldest);
      this.connectionIds.delete(oldest);
    }
    snapshot.data.then(
      ({ connections }) => {
        // Only the newest load speaks (an older one finishing late would see a connection made since as gone).
        if (this.snapshots.get(operatorId) !== snapshot) return;
        const ids = new Set(connections.map((c) => c.id));
        const before = this.connectionIds.get(operatorId);
        this.connectionIds.set(operatorId, ids);
        const gone = before ? [...before].filter((id) => !ids.has(id)) : [];
        if (gone.length) this.onGone?.(operatorId, gone);
      },
      () => {
        if (this.snapshots.get(operatorId) === snapshot) this.snapshots.delete(operatorId);
      },
    );
    return snapshot.data;
  }
}
