import { Value } from '@sinclair/typebox/value';
import { RevocationEntrySchema, RevocationRecordedEvent, RevocationSnapshotResponse, StackError } from '@stack/contracts';

import { REVOCATION_KINDS, RevocationSet, type CredentialSubject, type RevocationEntry } from './revocation-set';
import { RevocationState, type RevocationFeed, type RevocationFeedMessage } from './revocation-state';

const NOW = 1_800_000_000_000;
const entry = (over: Partial<RevocationEntry>): RevocationEntry => ({ id: `rev_${Math.random()}`, kind: 'jti', value: 'ppt_a', operator_id: 'op_1', revoked_at_ms: NOW, expires_at_ms: NOW + 3600_000, ...over });
const passport = (over: Partial<CredentialSubject> = {}): CredentialSubject => ({ jti: 'ppt_x', chain: [], operator_id: 'op_1', agent_id: 'agt_1', session_id: 'ses_1', member_id: 'mem_1', issued_at_ms: NOW - 10, ...over });

describe('RevocationSet: the precise predicates of DESIGN.md §4', () => {
  it('kills a passport by its own jti and by any jti of its chain, and nothing else', () => {
    const set = new RevocationSet();
    set.add(entry({ value: 'ppt_root' }));
    expect(set.match(passport({ jti: 'ppt_root' }))?.value).toBe('ppt_root');
    expect(set.match(passport({ jti: 'ppt_grandchild', chain: ['ppt_root', 'ppt_child'] }))?.value).toBe('ppt_root');
    expect(set.match(passport({ jti: 'ppt_other', chain: ['ppt_unrelated'] }))).toBeUndefined();
  });

  it.each(['agent', 'session', 'member', 'operator', 'grant', 'client'] as const)('kills a credential of a revoked %s issued at or before revoked_at_ms, not one issued after', (kind) => {
    const set = new RevocationSet();
    const field = { agent: 'agent_id', session: 'session_id', member: 'member_id', operator: 'operator_id', grant: 'grant_id', client: 'client_id' }[kind];
    set.add(entry({ kind, value: 'subj', revoked_at_ms: NOW }));
    expect(set.match(passport({ [field]: 'subj', issued_at_ms: NOW - 1 }))?.kind).toBe(kind);
    expect(set.match(passport({ [field]: 'subj', issued_at_ms: NOW }))?.kind).toBe(kind);
    expect(set.match(passport({ [field]: 'subj', issued_at_ms: NOW + 1 }))).toBeUndefined();
    expect(set.match(passport({ [field]: 'someone-else', issued_at_ms: NOW - 1 }))).toBeUndefined();
  });

  it('kills an API key by its id (kind api_key) whenever it was issued, and no other key; the entry leaves at expires_at_ms', () => {
    const set = new RevocationSet();
    expect(set.add(entry({ kind: 'api_key', value: 'key_1', revoked_at_ms: NOW, expires_at_ms: NOW + 330_000 }))).toBe(true);
    // A key is never reinstated, and nodes do not know when it was made: any stamp matches.
    for (const issued_at_ms of [0, NOW - 1, NOW, NOW + 60_000]) expect(set.match({ api_key_id: 'key_1', member_id: 'mem_1', issued_at_ms })?.kind).toBe('api_key');
    expect(set.match({ api_key_id: 'key_2', member_id: 'mem_1', issued_at_ms: 0 })).toBeUndefined();
    // Not a passport's or token's business: the value is only read from api_key_id.
    expect(set.match(passport({ jti: 'key_1', member_id: 'key_1', issued_at_ms: 0 }))).toBeUndefined();
    expect(set.add(entry({ kind: 'api_key', value: 'key_1', revoked_at_ms: NOW, expires_at_ms: NOW + 330_000 }))).toBe(false);
    expect(set.entries()).toEqual([expect.objectContaining({ kind: 'api_key', value: 'key_1' })]);
    expect(set.prune(NOW + 330_000)).toBe(0);
    expect(set.prune(NOW + 330_001)).toBe(1);
    expect(set.match({ api_key_id: 'key_1', issued_at_ms: 0 })).toBeUndefined();
  });

  it('is idempotent, keeps the latest revoked_at_ms of a subject, and prunes expired entries', () => {
    const set = new RevocationSet();
    const e = entry({ kind: 'agent', value: 'agt_1', revoked_at_ms: NOW });
    expect(set.add(e)).toBe(true);
    expect(set.add(e)).toBe(false);
    expect(set.add(entry({ kind: 'agent', value: 'agt_1', revoked_at_ms: NOW - 1000 }))).toBe(false);
    expect(set.add(entry({ kind: 'agent', value: 'agt_1', revoked_at_ms: NOW + 1000 }))).toBe(true);
    expect(set.match(passport({ issued_at_ms: NOW + 500 }))?.kind).toBe('agent');
    expect(set.size).toBe(1);
    set.add(entry({ value: 'ppt_old', expires_at_ms: NOW - 1 }));
    expect(set.prune(NOW)).toBe(1);
    expect(set.size).toBe(1);
  });
});

describe('revocation kinds on the bus', () => {
  it.each([...new Set([...REVOCATION_KINDS, 'api_key' as const])])('lets a %s entry through the event, the revocation entry and the snapshot schemas', (kind) => {
    const e = entry({ kind, value: 'v_1' });
    expect(Value.Check(RevocationRecordedEvent.payload, e)).toBe(true);
    expect(Value.Check(RevocationEntrySchema, e)).toBe(true);
    expect(Value.Check(RevocationSnapshotResponse, { seq: 3, taken_at_ms: NOW, entries: [e] })).toBe(true);
  });

  it('refuses a kind the revocation set does not know', () => {
    expect(Value.Check(RevocationRecordedEvent.payload, entry({ kind: 'nonsense' as RevocationEntry['kind'] }))).toBe(false);
  });
});

/** A feed driven by hand: the test decides what the stream holds and when messages arrive. */
class FakeFeed implements RevocationFeed {
  last = 0;
  snap = { seq: 0, entries: [] as RevocationEntry[] };
  failSnapshots = 0;
  followedFrom: number[] = [];
  push?: (m: RevocationFeedMessage) => void;
  async lastSequence() {
    return this.last;
  }
  async snapshot() {
    if (this.failSnapshots-- > 0) throw new Error('no peer');
    return this.snap;
  }
  async follow(fromSeq: number, onMessage: (m: RevocationFeedMessage) => void) {
    this.followedFrom.push(fromSeq);
    this.push = onMessage;
    return { stop: async () => undefined };
  }
}

describe('RevocationState: snapshot, replay, heartbeats and fail-closed staleness', () => {
  let clock = NOW;
  const now = () => clock;
  let state: RevocationState | undefined;
  afterEach(async () => {
    await state?.stop();
    clock = NOW;
  });

  const started = async (feed: FakeFeed, maxStalenessMs = 3000) => {
    state = new RevocationState({ feed, maxStalenessMs, now, watchdogMs: 10 });
    state.start();
    await new Promise((r) => setTimeout(r, 20));
    return state;
  };

  it('loads the snapshot, replays from the sequence after it, and is fresh once caught up to the stream end it saw', async () => {
    const feed = new FakeFeed();
    feed.last = 7;
    feed.snap = { seq: 5, entries: [entry({ value: 'ppt_snap' })] };
    const s = await started(feed);
    expect(feed.followedFrom).toEqual([6]);
    expect(s.revocationOf(passport({ jti: 'ppt_snap' }))).toBeDefined();
    expect(s.isFresh()).toBe(false); // seq 6 and 7 not yet applied
    feed.push!({ type: 'revocation', seq: 6, entry: entry({ value: 'ppt_replayed' }) });
    expect(s.isFresh()).toBe(false);
    feed.push!({ type: 'heartbeat', seq: 7, at_ms: NOW - 5, last_seq: 6 });
    expect(s.isFresh()).toBe(true);
    expect(s.revocationOf(passport({ jti: 'ppt_replayed' }))).toBeDefined();
  });

  it('refuses everything with REVOCATION_STATE_STALE once no heartbeat came within the bound, and recovers on the next', async () => {
    const feed = new FakeFeed();
    const s = await started(feed);
    expect(s.isFresh()).toBe(true);
    expect(() => s.check(passport())).not.toThrow();
    clock += 3001;
    expect(() => s.check(passport())).toThrow(expect.objectContaining({ code: 'REVOCATION_STATE_STALE' }));
    expect(s.status()).toMatchObject({ fresh: false });
    feed.push!({ type: 'heartbeat', seq: 1, at_ms: clock, last_seq: 0 });
    expect(() => s.check(passport())).not.toThrow();
  });

  it('does not count a replayed old heartbeat as fresh, and a heartbeat counts only once its last_seq is applied', async () => {
    const feed = new FakeFeed();
    const s = await started(feed);
    clock += 10_000;
    feed.push!({ type: 'heartbeat', seq: 1, at_ms: NOW, last_seq: 0 });
    expect(s.isFresh()).toBe(false);
    feed.push!({ type: 'heartbeat', seq: 2, at_ms: clock, last_seq: 5 });
    expect(s.isFresh()).toBe(false);
    feed.push!({ type: 'revocation', seq: 5, entry: entry({}) });
    expect(s.isFresh()).toBe(true);
  });

  it('throws PASSPORT_REVOKED for a revoked credential and aborts its in-flight calls when the revocation arrives', async () => {
    const feed = new FakeFeed();
    const s = await started(feed);
    const call = s.inFlight.track(passport({ jti: 'ppt_child', chain: ['ppt_parent'] }));
    const other = s.inFlight.track(passport({ jti: 'ppt_unrelated', agent_id: 'agt_2' }));
    feed.push!({ type: 'revocation', seq: 1, entry: entry({ value: 'ppt_parent' }) });
    expect(call.signal.aborted).toBe(true);
    expect((call.signal.reason as StackError).code).toBe('PASSPORT_REVOKED');
    expect(other.signal.aborted).toBe(false);
    expect(() => s.check(passport({ jti: 'ppt_child', chain: ['ppt_parent'] }))).toThrow(expect.objectContaining({ code: 'PASSPORT_REVOKED' }));
    other.release();
    expect(s.inFlight.size).toBe(0);
  });

  it('applies an api_key revocation from the snapshot and the stream: the key is refused and its in-flight calls aborted', async () => {
    const feed = new FakeFeed();
    feed.snap = { seq: 1, entries: [entry({ kind: 'api_key', value: 'key_snap' })] };
    const s = await started(feed);
    expect(s.revocationOf({ api_key_id: 'key_snap', issued_at_ms: 0 })?.kind).toBe('api_key');
    const seen: string[] = [];
    s.onRevoked((e) => seen.push(`${e.kind}:${e.value}`));
    const call = s.inFlight.track({ api_key_id: 'key_live', member_id: 'mem_1', issued_at_ms: NOW + 5 });
    feed.push!({ type: 'revocation', seq: 2, entry: entry({ kind: 'api_key', value: 'key_live' }) });
    expect(seen).toEqual(['api_key:key_live']);
    expect(call.signal.aborted).toBe(true);
    expect(() => s.check({ api_key_id: 'key_live', issued_at_ms: NOW + 5 })).toThrow(expect.objectContaining({ code: 'PASSPORT_REVOKED' }));
    expect(() => s.check({ api_key_id: 'key_other', member_id: 'mem_1', issued_at_ms: 0 })).not.toThrow();
  });

  it('retries a failing snapshot, staying stale meanwhile', async () => {
    const feed = new FakeFeed();
    feed.failSnapshots = 1;
    state = new RevocationState({ feed, maxStalenessMs: 3000, now, watchdogMs: 10 });
    state.start();
    expect(state.isFresh()).toBe(false);
    expect(await state.whenFresh(2000)).toBe(true);
    expect(feed.followedFrom).toEqual([1]);
  });

  it('loads a new snapshot when it stays stale for a whole bound (a dead follower)', async () => {
    const feed = new FakeFeed();
    const s = await started(feed, 100);
    clock += 2500;
    await new Promise((r) => setTimeout(r, 50));
    expect(feed.followedFrom.length).toBeGreaterThanOrEqual(2);
    expect(s.isFresh()).toBe(true);
  });
});
