/**
 * One behavioural suite for every Bus implementation: the in-process twin must keep the
 * same contract as NATS, so the one-process shape behaves like the distributed one.
 * Imported by nats-bus.int-spec.ts (real NATS) and in-process-bus.spec.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';

import { context, propagation, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

import { AuditRecordedEvent, MAX_BUS_PAYLOAD_BYTES, RevocationHeartbeatEvent, RevocationRecordedEvent, ServiceStartedEvent, StackError, SYSTEM_COMMANDS, type CallerContext } from '@stack/contracts';

import type { BusConnection } from './connection';
import { redeliveryDelayMs } from './streams';

export interface BusFactoryOptions {
  prefix: string;
  internalSecret: Buffer;
}

export type BusFactory = (options: BusFactoryOptions) => Promise<BusConnection>;

const ping = SYSTEM_COMMANDS.audit.ping;

function started(i: number) {
  return { service: 'audit' as const, instance: `i-${i}`, version: '1', started_at: new Date().toISOString() };
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** audit's ping answered with a fresh instance name per call, counting the calls. */
async function countingPing(bus: BusConnection): Promise<{ calls: number }> {
  const seen = { calls: 0 };
  bus.forService('audit').handle(ping, () => {
    seen.calls++;
    return { service: 'audit' as const, instance: `call-${seen.calls}`, pid: 1, at: new Date().toISOString() };
  });
  await bus.flush();
  return seen;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<StackError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StackError);
    expect((err as StackError).code).toBe(code);
    return err as StackError;
  }
  throw new Error(`expected a StackError ${code}, but the call succeeded`);
}

export function busContractSuite(name: string, factory: BusFactory, opts: { sharedConnection: boolean }): void {
  describe(`${name}: bus contract`, () => {
    let prefix: string;
    let secret: Buffer;
    const open: BusConnection[] = [];
    const connect = async (overrides: Partial<BusFactoryOptions> = {}) => {
      const c = await factory({ prefix, internalSecret: secret, ...overrides });
      open.push(c);
      return c;
    };

    beforeEach(() => {
      prefix = `t${randomBytes(5).toString('hex')}`;
      secret = randomBytes(32);
    });
    afterEach(async () => {
      await Promise.allSettled(open.splice(0).map((c) => c.close()));
    });

    it('answers a request with the handler result and the verified caller context', async () => {
      const server = await connect();
      const client = opts.sharedConnection ? server : await connect();
      let seen: CallerContext | undefined;
      server.forService('audit').handle(ping, (payload, ctx) => {
        seen = ctx.caller;
        return { service: 'audit' as const, instance: `answer-to-${payload.from}`, pid: process.pid, at: new Date().toISOString() };
      });
      await server.flush();
      const caller: CallerContext = { issuer: 'mcp-gateway', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:audit'] };
      const reply = await client.forService('mcp-gateway').request(ping, { from: 'gw' }, { caller });
      expect(reply.instance).toBe('answer-to-gw');
      expect(seen).toEqual(caller);
    });

    it('signs a system caller for the sending service when no caller is given', async () => {
      const bus = await connect();
      let seen: CallerContext | undefined;
      bus.forService('audit').handle(ping, (_p, ctx) => {
        seen = ctx.caller;
        return { service: 'audit' as const, instance: 'x', pid: 1, at: new Date().toISOString() };
      });
      await bus.flush();
      await bus.forService('passport').request(ping, {});
      expect(seen).toEqual({ issuer: 'passport', kind: 'system', scopes: [] });
    });

    it('stopping a handler waits for the calls it is still running (a service closes its database only after)', async () => {
      const bus = await connect();
      let release: () => void = () => undefined;
      let entered = false;
      let finished = false;
      const handle = bus.forService('audit').handle(ping, async () => {
        entered = true;
        await new Promise<void>((resolve) => (release = resolve));
        finished = true;
        return { service: 'audit' as const, instance: 'slow', pid: process.pid, at: new Date().toISOString() };
      });
      await bus.flush();
      const answer = bus.forService('passport').request(ping, {});
      answer.catch(() => undefined);
      for (let i = 0; i < 200 && !entered; i++) await new Promise((r) => setTimeout(r, 10));
      let stopped = false;
      const stopping = handle.stop().then(() => (stopped = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(stopped).toBe(false);
      release();
      await stopping;
      expect(finished).toBe(true);
      expect((await answer).instance).toBe('slow');
    });

    it('carries a handler StackError back to the caller unchanged', async () => {
      const bus = await connect();
      bus.forService('audit').handle(ping, () => {
        throw new StackError('NOT_FOUND', 'no such thing', { id: 'x' });
      });
      await bus.flush();
      const err = await expectCode(bus.forService('passport').request(ping, {}), 'NOT_FOUND');
      expect(err.details).toEqual({ id: 'x' });
    });

    it('hides an unexpected handler failure behind INTERNAL_ERROR', async () => {
      const bus = await connect();
      bus.forService('audit').handle(ping, () => {
        throw new Error('database password is hunter2');
      });
      await bus.flush();
      const err = await expectCode(bus.forService('passport').request(ping, {}), 'INTERNAL_ERROR');
      expect(err.message).not.toContain('hunter2');
    });

    it('refuses an invalid payload at the receiver and ignores unknown fields', async () => {
      const bus = await connect();
      let calls = 0;
      bus.forService('audit').handle(ping, () => {
        calls++;
        return { service: 'audit' as const, instance: 'x', pid: 1, at: new Date().toISOString() };
      });
      await bus.flush();
      const err = await expectCode(bus.forService('passport').request(ping, { from: 42 } as unknown as { from: string }), 'INVALID_REQUEST');
      expect(JSON.stringify(err.details)).toContain('/from');
      expect(calls).toBe(0);
      await bus.forService('passport').request(ping, { from: 'a', added_in_a_later_version: true } as unknown as { from: string });
      expect(calls).toBe(1);
    });

    it('refuses a message whose caller context was signed with another key', async () => {
      const server = await connect();
      const forger = await connect({ internalSecret: randomBytes(32) });
      let calls = 0;
      server.forService('audit').handle(ping, () => {
        calls++;
        return { service: 'audit' as const, instance: 'x', pid: 1, at: new Date().toISOString() };
      });
      await server.flush();
      if (opts.sharedConnection) {
        // The in-process bus has one key per hub: a forged hub cannot reach this one at all.
        await expectCode(forger.forService('passport').request(ping, {}), 'SERVICE_UNAVAILABLE');
      } else {
        await expectCode(forger.forService('passport').request(ping, {}), 'UNAUTHORIZED');
      }
      expect(calls).toBe(0);
    });

    it('fails fast with SERVICE_UNAVAILABLE when nobody serves the command', async () => {
      const bus = await connect();
      await expectCode(bus.forService('passport').request(SYSTEM_COMMANDS['skill-runner'].ping, {}), 'SERVICE_UNAVAILABLE');
    });

    it('times out with BUS_TIMEOUT when the handler does not answer in time', async () => {
      const bus = await connect();
      bus.forService('audit').handle(ping, () => new Promise(() => undefined));
      await bus.flush();
      const t0 = Date.now();
      await expectCode(bus.forService('passport').request(ping, {}, { timeoutMs: 200 }), 'BUS_TIMEOUT');
      expect(Date.now() - t0).toBeLessThan(2000);
    });

    it('refuses a payload over the bus limit before sending it', async () => {
      const bus = await connect();
      const big = 'x'.repeat(MAX_BUS_PAYLOAD_BYTES + 1);
      await expectCode(bus.forService('passport').request(ping, { from: big }), 'PAYLOAD_TOO_LARGE');
    });

    it('runs a retried request (same message id) once and replays the answer', async () => {
      const bus = await connect();
      const audit = await countingPing(bus);
      const id = randomUUID();
      const a = await bus.forService('passport').request(ping, {}, { messageId: id });
      const b = await bus.forService('passport').request(ping, {}, { messageId: id });
      expect(audit.calls).toBe(1);
      expect(b.instance).toBe(a.instance);
    });

    it('answers a resent message id from memory for its caller only, never for another', async () => {
      const bus = await connect();
      const audit = await countingPing(bus);
      const id = randomUUID();
      const one: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:audit'] };
      const two: CallerContext = { ...one, operator_id: 'op_2', member_id: 'mem_2' };
      const a = await bus.forService('mcp-gateway').request(ping, {}, { messageId: id, caller: one });
      await expectCode(bus.forService('mcp-gateway').request(ping, {}, { messageId: id, caller: two }), 'IDEMPOTENCY_CONFLICT');
      expect((await bus.forService('mcp-gateway').request(ping, {}, { messageId: id, caller: { ...one } })).instance).toBe(a.instance);
      expect(audit.calls).toBe(1);
    });

    it('carries the W3C trace context to the handler', async () => {
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      const manager = new AsyncLocalStorageContextManager().enable();
      context.setGlobalContextManager(manager);
      try {
        const bus = await connect();
        let traceparent: string | undefined;
        bus.forService('audit').handle(ping, (_p, ctx) => {
          traceparent = ctx.traceparent;
          return { service: 'audit' as const, instance: 'x', pid: 1, at: new Date().toISOString() };
        });
        await bus.flush();
        const traceId = randomBytes(16).toString('hex');
        const parent = trace.setSpanContext(context.active(), { traceId, spanId: randomBytes(8).toString('hex'), traceFlags: TraceFlags.SAMPLED });
        await context.with(parent, () => bus.forService('passport').request(ping, {}));
        expect(traceparent).toContain(traceId);
      } finally {
        propagation.disable();
        context.disable();
      }
    });

    it('delivers durable events to a consumer that was stopped and restarted, losing none', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const publisher = bus.forService('audit');
      const received: string[] = [];
      const consumeOnce = async (conn: BusConnection) =>
        conn.forService('audit').consume({ durable: 'contract-test', events: [ServiceStartedEvent], ackWaitMs: 2000 }, async (_e, payload) => {
          received.push((payload as { instance: string }).instance);
        });
      for (let i = 0; i < 50; i++) await publisher.publish(ServiceStartedEvent, started(i), { id: `e-${i}` });
      let handle = await consumeOnce(bus);
      await waitFor(() => received.length >= 50);
      await handle.stop();
      for (let i = 50; i < 120; i++) await publisher.publish(ServiceStartedEvent, started(i), { id: `e-${i}` });
      // A new connection when the transport has one; the durable position lives in the server.
      const again = opts.sharedConnection ? bus : await connect();
      handle = await consumeOnce(again);
      await waitFor(() => received.length >= 120);
      await new Promise((r) => setTimeout(r, 200));
      await handle.stop();
      expect(received).toHaveLength(120);
      expect(new Set(received).size).toBe(120);
      expect(received).toEqual(Array.from({ length: 120 }, (_, i) => `i-${i}`));
    });

    it('deletes a consumer left without a reader for its inactiveThresholdMs: its name then starts anew', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const publisher = bus.forService('audit');
      for (let i = 0; i < 3; i++) await publisher.publish(ServiceStartedEvent, started(i), { id: `inactive-${i}` });
      const received: string[] = [];
      const consume = () =>
        bus.forService('audit').consume({ durable: 'short-lived', events: [ServiceStartedEvent], inactiveThresholdMs: 1000 }, async (_e, payload) => {
          received.push((payload as { instance: string }).instance);
        });
      let handle = await consume();
      await waitFor(() => received.length >= 3);
      await handle.stop();
      // Back within the threshold: the same consumer, at its position.
      handle = await consume();
      await publisher.publish(ServiceStartedEvent, started(3), { id: 'inactive-3' });
      await waitFor(() => received.length >= 4);
      await handle.stop();
      // Gone after it: a new consumer under the name, delivering from the start of the stream.
      await new Promise((r) => setTimeout(r, 3000));
      handle = await consume();
      await waitFor(() => received.length >= 8);
      await new Promise((r) => setTimeout(r, 200));
      await handle.stop();
      expect(received).toEqual(['i-0', 'i-1', 'i-2', 'i-3', 'i-0', 'i-1', 'i-2', 'i-3']);
    });

    it('with maxInFlight, holds several messages at once and acknowledges each only when its handler resolves', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const publisher = bus.forService('audit');
      for (let i = 0; i < 30; i++) await publisher.publish(ServiceStartedEvent, started(i), { id: `b-${i}` });
      const held: { instance: string; release: () => void }[] = [];
      const done: string[] = [];
      let failedOnce = false;
      const handle = await bus.forService('audit').consume({ durable: 'batching', events: [ServiceStartedEvent], ackWaitMs: 2000, maxInFlight: 10 }, async (_e, payload) => {
        const instance = (payload as { instance: string }).instance;
        // A batching handler: it resolves only once its whole batch is released.
        await new Promise<void>((release) => held.push({ instance, release }));
        if (instance === 'i-3' && !failedOnce) {
          failedOnce = true;
          throw new Error('batch failed');
        }
        done.push(instance);
      });
      await waitFor(() => held.length >= 10);
      await new Promise((r) => setTimeout(r, 100));
      expect(held.length).toBe(10); // no more than maxInFlight at once
      const releaseAll = async () => {
        while (done.length < 30) {
          for (const h of held.splice(0)) h.release();
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await Promise.race([releaseAll(), new Promise((_, rej) => setTimeout(() => rej(new Error('not all delivered')), 15_000))]);
      await handle.stop();
      expect(new Set(done)).toEqual(new Set(Array.from({ length: 30 }, (_, i) => `i-${i}`)));
      expect(failedOnce).toBe(true);
    });

    it('refuses an event over the bus limit, counting UTF-8 bytes, and stores nothing of it', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const publisher = bus.forService('audit');
      const before = await publisher.lastSequence('EVENTS');
      // 'é' is two bytes: under the limit in UTF-16 units, over it in bytes.
      const wide = 'é'.repeat(Math.floor(MAX_BUS_PAYLOAD_BYTES / 2) + 10);
      expect(wide.length).toBeLessThan(MAX_BUS_PAYLOAD_BYTES);
      await expectCode(publisher.publish(ServiceStartedEvent, { ...started(1), instance: wide }, { id: 'too-wide' }), 'PAYLOAD_TOO_LARGE');
      await expectCode(publisher.publish(ServiceStartedEvent, { ...started(2), instance: 'x'.repeat(MAX_BUS_PAYLOAD_BYTES + 1) }, { id: 'too-long' }), 'PAYLOAD_TOO_LARGE');
      expect(await publisher.lastSequence('EVENTS')).toBe(before);
      // Just under the limit in bytes, although well over a third of it in characters: published.
      const fits = await publisher.publish(ServiceStartedEvent, { ...started(3), instance: 'é'.repeat(Math.floor(MAX_BUS_PAYLOAD_BYTES / 2) - 1000) }, { id: 'fits' });
      expect(fits.seq).toBe(before + 1);
    });

    it('drops a second publish with the same event id', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const a = await bus.forService('audit').publish(ServiceStartedEvent, started(1), { id: 'same' });
      const b = await bus.forService('audit').publish(ServiceStartedEvent, started(1), { id: 'same' });
      expect(a.duplicate).toBe(false);
      expect(b.duplicate).toBe(true);
      expect(b.seq).toBe(a.seq);
      expect(await bus.forService('audit').lastSequence('EVENTS')).toBe(a.seq);
    });

    it('takes an event whose caller context expired after it was stored: a consumer back after minutes loses nothing', async () => {
      // The clock of this process two minutes on once the event is stored, as for a consumer that was down that long.
      const realNow = Date.now;
      let ahead = 0;
      Date.now = () => realNow() + ahead;
      try {
        const bus = await connect();
        await bus.ensureStreams();
        const member: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:services'] };
        await bus.forService('credential-proxy').publish(AuditRecordedEvent, { id: 'aud_late', occurred_at: new Date().toISOString(), layer: 'proxy', action: 'proxy.request', outcome: 'success' }, { id: 'aud_late', caller: member });
        ahead = 120_000;
        const seen: CallerContext[] = [];
        const handle = await bus.forService('audit').consume({ durable: 'late-reader', events: [AuditRecordedEvent], ackWaitMs: 2000 }, async (_e, _p, ctx) => {
          seen.push(ctx.caller);
        });
        await waitFor(() => seen.length >= 1, 5000).finally(() => handle.stop());
        expect(seen).toEqual([member]);
      } finally {
        Date.now = realNow;
      }
    });

    it('redelivers an event whose handler failed, and an idempotent handler applies it once', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const applied = new Map<string, number>();
      let failNext = true;
      const deliveries: number[] = [];
      const at: number[] = [];
      const handle = await bus.forService('passport').consume({ durable: 'redelivery', events: [RevocationRecordedEvent], ackWaitMs: 1000 }, async (_e, _p, ctx) => {
        deliveries.push(ctx.deliveries);
        at.push(Date.now());
        // The effect happens before the failure, as when a crash follows a commit.
        if (!applied.has(ctx.id)) applied.set(ctx.id, (applied.get(ctx.id) ?? 0) + 1);
        if (failNext) {
          failNext = false;
          throw new Error('crash after the effect');
        }
      });
      await bus.forService('passport').publish(
        RevocationRecordedEvent,
        { id: 'rev_1', kind: 'jti', value: 'ppt_1', operator_id: 'op_1', revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 60_000 },
        { id: 'rev_1' },
      );
      await waitFor(() => deliveries.length >= 2, 15_000);
      await handle.stop();
      expect(deliveries.slice(0, 2)).toEqual([1, 2]);
      expect(applied.get('rev_1')).toBe(1);
      // After the same back-off on both transports (the NAK's delay on NATS).
      expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(redeliveryDelayMs(1) - 50);
    });

    it('goes on past an event whose handler always fails, and keeps redelivering that one', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const publisher = bus.forService('audit');
      for (const i of ['poison', 'after-1', 'after-2']) await publisher.publish(ServiceStartedEvent, { ...started(0), instance: i }, { id: i });
      const seen: string[] = [];
      const handle = await bus.forService('audit').consume({ durable: 'poisoned', events: [ServiceStartedEvent], ackWaitMs: 1000 }, async (_e, payload) => {
        const instance = (payload as { instance: string }).instance;
        seen.push(instance);
        if (instance === 'poison') throw new Error('this one never works');
      });
      await waitFor(() => seen.includes('after-2') && seen.filter((i) => i === 'poison').length >= 2, 4000).finally(() => handle.stop());
      expect(seen.filter((i) => i !== 'poison')).toEqual(['after-1', 'after-2']);
    });

    it('lets a consumer take one event type from a stream holding several', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      const seen: string[] = [];
      const handle = await bus.forService('mcp-gateway').consume({ durable: 'hb-only', events: [RevocationHeartbeatEvent] }, async (e) => {
        seen.push(e.verb);
      });
      await bus.forService('passport').publish(
        RevocationRecordedEvent,
        { id: 'r1', kind: 'agent', value: 'agt_1', operator_id: 'op_1', revoked_at_ms: 1, expires_at_ms: 2 },
        { id: 'r1' },
      );
      await bus.forService('passport').publish(RevocationHeartbeatEvent, { at_ms: Date.now(), last_seq: 1 }, { id: 'hb1' });
      await waitFor(() => seen.length >= 1);
      await new Promise((r) => setTimeout(r, 200));
      await handle.stop();
      expect(seen).toEqual(['heartbeat_emitted']);
    });

    it('keeps audit events in their own stream', async () => {
      const bus = await connect();
      await bus.ensureStreams();
      await bus.forService('audit').publish(
        AuditRecordedEvent,
        { id: 'aud_1', occurred_at: new Date().toISOString(), layer: 'system', action: 'test.run', outcome: 'success' },
        { id: 'aud_1' },
      );
      expect(await bus.forService('audit').lastSequence('AUDIT')).toBe(1);
      expect(await bus.forService('audit').lastSequence('EVENTS')).toBe(0);
    });
  });
}
