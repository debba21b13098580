/**
 * A node's revocation state fed by the real NATS (JetStream STACK_REVOCATIONS): snapshot from
 * the passport command, replay from its sequence, heartbeats for freshness, and an in-flight
 * call aborted within a second of the revocation reaching the node.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type BusConnection } from '@stack/bus';
import { PASSPORT_COMMANDS, RevocationHeartbeatEvent, RevocationRecordedEvent, StackError } from '@stack/contracts';
import { RevocationState, type RevocationEntry } from '@stack/security';
import { TEST_NATS_URL, uniqueName } from '@stack/testing';

import { busRevocationFeed } from './revocation.module';

const entry = (value: string, over: Partial<RevocationEntry> = {}): RevocationEntry => ({
  id: `rev_${randomBytes(6).toString('hex')}`,
  kind: 'jti',
  value,
  operator_id: 'op_1',
  revoked_at_ms: Date.now(),
  expires_at_ms: Date.now() + 600_000,
  ...over,
});

describe('RevocationState over NATS (busRevocationFeed)', () => {
  const prefix = uniqueName('rev');
  const secret = randomBytes(32);
  const conns: BusConnection[] = [];
  const states: RevocationState[] = [];
  let passportSide: BusConnection;
  /** What the fake passport service answers as its snapshot. */
  let snapshot: { seq: number; entries: RevocationEntry[] } = { seq: 0, entries: [] };

  const connect = async (name: string) => {
    const c = await connectNatsBus({ servers: TEST_NATS_URL, prefix, internalSecret: secret, timeoutMs: 3000, instanceId: name });
    conns.push(c);
    return c;
  };
  const node = async (name: string, maxStalenessMs = 2000) => {
    const c = await connect(name);
    const state = new RevocationState({ feed: busRevocationFeed({ bus: c.forService('credential-proxy'), instanceId: name }), maxStalenessMs, watchdogMs: 100 });
    states.push(state);
    state.start();
    return state;
  };
  const publish = (e: RevocationEntry) => passportSide.forService('passport').publish(RevocationRecordedEvent, e, { id: e.id });
  const heartbeat = async () => {
    const bus = passportSide.forService('passport');
    await bus.publish(RevocationHeartbeatEvent, { at_ms: Date.now(), last_seq: await bus.lastSequence('REVOCATIONS') }, { id: `hb_${randomBytes(6).toString('hex')}` });
  };

  beforeAll(async () => {
    passportSide = await connect('passport');
    await passportSide.ensureStreams();
    passportSide.forService('passport').handle(PASSPORT_COMMANDS.revocationSnapshot, () => ({ ...snapshot, taken_at_ms: Date.now() }));
    await passportSide.flush();
  });

  afterAll(async () => {
    for (const s of states) await s.stop();
    for (const c of conns.reverse()) await c.close();
  });

  it('loads the snapshot, replays only after its sequence, and refuses what was revoked before and after it started', async () => {
    const before = entry('ppt_in_snapshot');
    const ack = await publish(before);
    // The snapshot claims completeness up to `ack.seq` but omits the entry: replay must start after it, so it stays unknown.
    const skipped = entry('ppt_only_in_stream_before_snapshot');
    const ack2 = await publish(skipped);
    snapshot = { seq: ack2.seq, entries: [before] };
    const state = await node('node-a');
    expect(await state.whenFresh(5000)).toBe(true);
    expect(state.revocationOf({ jti: 'ppt_in_snapshot', issued_at_ms: 0 })).toBeDefined();
    expect(state.revocationOf({ jti: 'ppt_only_in_stream_before_snapshot', issued_at_ms: 0 })).toBeUndefined();
    expect(ack.seq).toBeLessThan(ack2.seq);

    await publish(entry('ppt_after', { kind: 'jti' }));
    await waitFor(() => state.revocationOf({ jti: 'ppt_after', issued_at_ms: 0 }));
    expect(() => state.check({ jti: 'ppt_x', chain: ['ppt_after'], issued_at_ms: 0 })).toThrow(expect.objectContaining({ code: 'PASSPORT_REVOKED' }));
  });

  it('aborts an in-flight call within a second of the revocation reaching the node', async () => {
    const state = await node('node-b');
    expect(await state.whenFresh(5000)).toBe(true);
    const call = state.inFlight.track({ jti: 'ppt_slow_call', session_id: 'ses_slow', issued_at_ms: Date.now() - 10 });
    // A fake upstream that would answer after 10 s unless the call is cut.
    const upstream = new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => resolve('answered'), 10_000);
      call.signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(call.signal.reason);
      });
    });
    // Settled into a value at once: the abort may land while the publish is still awaited.
    const outcome = upstream.then(
      (answer) => ({ answer, at: Date.now() }),
      (err: unknown) => ({ err, at: Date.now() }),
    );
    const t0 = Date.now();
    await publish(entry('ses_slow', { kind: 'session' }));
    const settled = await outcome;
    expect('err' in settled && settled.err).toBeInstanceOf(StackError);
    expect(settled).toMatchObject({ err: { code: 'PASSPORT_REVOKED' } });
    expect(settled.at - t0).toBeLessThan(1000);
  });

  it('goes stale without heartbeats and fresh again with one', async () => {
    const state = await node('node-c', 600);
    expect(await state.whenFresh(5000)).toBe(true);
    await waitFor(() => (state.isFresh() ? undefined : true), 5000);
    expect(() => state.assertFresh()).toThrow(expect.objectContaining({ code: 'REVOCATION_STATE_STALE' }));
    await heartbeat();
    await waitFor(() => (state.isFresh() ? true : undefined), 5000);
  });
});

async function waitFor<T>(fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('busRevocationFeed: asking peers for a snapshot', () => {
  const prefix = uniqueName('revsnap');
  const secret = randomBytes(32);
  const conns: BusConnection[] = [];
  /** How the fake passport replica answers: refuse as a node still loading, as a loaded node briefly behind, or answer. */
  let refuseUntil = 0;
  let refuseAsLoaded = false;
  let asked = 0;
  const local = { seq: 0, entries: [entry('from_own_tables')] };

  const connect = async (name: string) => {
    const c = await connectNatsBus({ servers: TEST_NATS_URL, prefix, internalSecret: secret, timeoutMs: 3000, instanceId: name });
    conns.push(c);
    return c;
  };

  beforeAll(async () => {
    const passportSide = await connect('passport-peer');
    await passportSide.ensureStreams();
    passportSide.forService('passport').handle(PASSPORT_COMMANDS.revocationSnapshot, () => {
      asked++;
      if (Date.now() < refuseUntil) throw new StackError('SERVICE_UNAVAILABLE', 'not caught up', { loaded: refuseAsLoaded });
      return { seq: 42, entries: [entry('from_peer')], taken_at_ms: Date.now() };
    });
    await passportSide.flush();
  });
  afterAll(async () => {
    for (const c of conns.reverse()) await c.close();
  });
  beforeEach(() => {
    asked = 0;
  });

  it('waits for a loaded peer that is briefly behind (longer than the short budget) and takes its snapshot', async () => {
    refuseUntil = Date.now() + 2000;
    refuseAsLoaded = true;
    const feed = busRevocationFeed({ bus: (await connect('asker-1')).forService('passport'), instanceId: 'asker-1', localSnapshot: () => async () => local });
    const snap = await feed.snapshot();
    expect(snap.seq).toBe(42);
    expect(snap.entries.map((e) => e.value)).toEqual(['from_peer']);
    expect(asked).toBeGreaterThan(5);
  });

  it('falls back to its own tables after about a second when only nodes still loading answer', async () => {
    refuseUntil = Date.now() + 60_000;
    refuseAsLoaded = false;
    const feed = busRevocationFeed({ bus: (await connect('asker-2')).forService('passport'), instanceId: 'asker-2', localSnapshot: () => async () => local });
    const started = Date.now();
    const snap = await feed.snapshot();
    expect(snap).toBe(local);
    // Not the long patience: a lone first replica must not wait for peers that do not exist.
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
