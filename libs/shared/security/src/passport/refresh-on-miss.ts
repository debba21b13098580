/**
 * A lookup of passport signing keys by kid that refreshes its source on a miss: the passport
 * service re-reading its table, every other node fetching the JWKS over the bus. A key made a
 * moment ago (a rotation, maybe on another replica) must be found, and a flood of made-up kids
 * must stay cheap:
 * - a miss waits for the refresh under way and, if that does not hold the kid, for one that
 *   starts after the miss arrived (nothing is signed with a key before it is stored);
 * - refreshes are shared by every miss meanwhile and start at least `minGapMs` apart;
 * - a kid a fresh refresh did not find is answered unknown without another for `unknownMs`
 *   (at most `unknownLimit` such kids are remembered).
 * A refresh that fails fails the misses waiting for it; the next miss tries again.
 */
export interface RefreshOnMissOptions<V> {
  /** What is known now. */
  lookup(kid: string): V | undefined;
  /** Brings `lookup` up to date. */
  refresh(): Promise<void>;
  minGapMs?: number;
  unknownMs?: number;
  unknownLimit?: number;
}

export class RefreshOnMiss<V> {
  private started = 0;
  private done = 0;
  private startedAt = 0;
  private running?: Promise<void>;
  /** Kids a fresh refresh did not find → until when they are answered unknown without another. */
  private readonly unknown = new Map<string, number>();
  private readonly minGapMs: number;
  private readonly unknownMs: number;
  private readonly unknownLimit: number;

  constructor(private readonly o: RefreshOnMissOptions<V>) {
    this.minGapMs = o.minGapMs ?? 100;
    this.unknownMs = o.unknownMs ?? 1000;
    this.unknownLimit = o.unknownLimit ?? 10_000;
  }

  async get(kid: string): Promise<V | undefined> {
    const known = this.o.lookup(kid);
    if (known !== undefined) return known;
    if ((this.unknown.get(kid) ?? 0) > Date.now()) return undefined;
    const need = this.started + 1;
    while (this.done < need) {
      if (!this.running) {
        const wait = this.startedAt + this.minGapMs - Date.now();
        if (wait > 0) {
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        this.started += 1;
        this.startedAt = Date.now();
        this.running = this.o.refresh().finally(() => {
          this.done += 1;
          this.running = undefined;
        });
      }
      await this.running;
      // Found by a refresh already under way when the miss arrived: no need for one of its own.
      if (this.o.lookup(kid) !== undefined) break;
    }
    const found = this.o.lookup(kid);
    if (found === undefined) {
      if (this.unknown.size >= this.unknownLimit) this.unknown.clear();
      this.unknown.set(kid, Date.now() + this.unknownMs);
    }
    return found;
  }
}
