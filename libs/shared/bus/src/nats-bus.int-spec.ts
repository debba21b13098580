import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';

import { AckPolicy, connect, headers as natsHeaders } from 'nats';

import { AuditRecordedEvent, BUS_HEADERS, RevocationRecordedEvent, ServiceStartedEvent, StackError, SYSTEM_COMMANDS, commandSubject, eventSubject, streamName, type CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';
import { dropBusStreams, startTcpFaultProxy, TEST_NATS_URL } from '@stack/testing';

import { busContractSuite } from './bus-contract.suite';
import { connectNatsBus, serviceInboxPrefix, type NatsBusOptions } from './nats-bus';

/** Every bus prefix this file used: their JetStream streams are deleted after it. */
const prefixes = new Set<string>();
function connectTracked(options: NatsBusOptions) {
  prefixes.add(options.prefix);
  return connectNatsBus(options);
}
afterAll(async () => {
  for (const prefix of prefixes) await dropBusStreams(prefix);
});

busContractSuite('NATS bus', async ({ prefix, internalSecret }) => connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret, timeoutMs: 2000, instanceId: 'test' }), { sharedConnection: false });

const fixture = resolve(__dirname, '../test-fixtures/serve-ping.ts');
const root = resolve(__dirname, '../../../..');

function startReplica(prefix: string, secret: Buffer): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-r', '@swc-node/register', fixture], {
    cwd: root,
    env: { ...process.env, SWC_NODE_PROJECT: resolve(root, 'tsconfig.base.json'), NATS_URL: TEST_NATS_URL, STACK_BUS_PREFIX: prefix, STACK_INTERNAL_SECRET: secret.toString('base64') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((res, rej) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('READY')) res(child);
    });
    child.on('exit', (code) => rej(new Error(`replica exited with ${code}: ${err}`)));
  });
}

describe('NATS bus across processes', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  it('answers requests from another process and shares load across a queue group of two replicas', async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const secret = randomBytes(32);
    children.push(...(await Promise.all([startReplica(prefix, secret), startReplica(prefix, secret)])));
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret: secret, timeoutMs: 5000, instanceId: 'test' });
    try {
      const pids = new Map<number, number>();
      for (let i = 0; i < 200; i++) {
        const reply = await conn.forService('passport').request(SYSTEM_COMMANDS.audit.ping, { from: 'test' });
        pids.set(reply.pid, (pids.get(reply.pid) ?? 0) + 1);
      }
      expect(pids.has(process.pid)).toBe(false);
      expect([...pids.keys()].sort()).toEqual(children.map((c) => c.pid).sort());
      // NATS picks a queue member at random: each replica gets a real share.
      for (const n of pids.values()) expect(n).toBeGreaterThan(40);
    } finally {
      await conn.close();
    }
  });
});

describe('NATS bus: a caller context read off a stream', () => {
  it('is good for nothing else: not on a command, not as a REST credential, not on another event, not after it expired', async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const secret = randomBytes(32);
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret: secret, timeoutMs: 2000, instanceId: 'test' });
    // Whoever may read STACK_AUDIT: audit's NATS user, or anyone on a NATS without per-service users.
    const spy = await connect({ servers: TEST_NATS_URL });
    try {
      await conn.ensureStreams();
      const admin: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:admin', 'stack:services'] };
      const audit = (id: string) => ({ id, occurred_at: new Date().toISOString(), layer: 'proxy' as const, action: 'proxy.request', outcome: 'success' as const });
      await conn.forService('credential-proxy').publish(AuditRecordedEvent, audit('aud_1'), { id: 'aud_1', caller: admin });
      const jsm = await spy.jetstreamManager();
      await jsm.consumers.add(streamName(prefix, 'AUDIT'), { durable_name: 'spy', ack_policy: AckPolicy.None });
      const read = await (await spy.jetstream().consumers.get(streamName(prefix, 'AUDIT'), 'spy')).next({ expires: 2000 });
      const stolen = read!.headers!.get(BUS_HEADERS.caller);
      expect(stolen).toBeTruthy();

      // On a command: refused before the handler.
      let handled = 0;
      conn.forService('passport').handle(SYSTEM_COMMANDS.passport.ping, () => {
        handled++;
        return { service: 'passport' as const, instance: 'x', pid: 1, at: new Date().toISOString() };
      });
      await conn.flush();
      const reply = await spy.request(commandSubject(prefix, SYSTEM_COMMANDS.passport.ping), new TextEncoder().encode(JSON.stringify({ meta: { id: 'forged', caller: stolen, sender: 'passport' }, data: {} })), { timeout: 2000 });
      expect(JSON.parse(new TextDecoder().decode(reply.data))).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
      expect(handled).toBe(0);
      // As a REST credential (Credentials.restCaller verifies with no subject).
      expect(() => new CallerContextSigner(secret).verify(stolen)).toThrow(StackError);

      // On another event subject, or on its own once expired: the consumer never sees them.
      const raw = async (subject: string, id: string, caller: string, payload: unknown) => {
        const h = natsHeaders();
        h.set(BUS_HEADERS.messageId, id);
        h.set(BUS_HEADERS.natsMessageId, id);
        h.set(BUS_HEADERS.sender, 'passport');
        h.set(BUS_HEADERS.caller, caller);
        await spy.jetstream().publish(subject, new TextEncoder().encode(JSON.stringify(payload)), { headers: h });
      };
      const revocation = { id: 'rev_forged', kind: 'operator' as const, value: 'op_1', operator_id: 'op_1', revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 60_000 };
      await raw(eventSubject(prefix, RevocationRecordedEvent), 'rev_forged', stolen, revocation);
      const longAgo = new CallerContextSigner(secret, 60_000, () => Date.now() - 120_000).sign(admin, eventSubject(prefix, AuditRecordedEvent));
      await raw(eventSubject(prefix, AuditRecordedEvent), 'aud_expired', longAgo, audit('aud_expired'));
      await conn.forService('passport').publish(RevocationRecordedEvent, { ...revocation, id: 'rev_real' }, { id: 'rev_real' });
      await conn.forService('credential-proxy').publish(AuditRecordedEvent, audit('aud_2'), { id: 'aud_2', caller: admin });
      const revocations: string[] = [];
      const audits: string[] = [];
      const handles = [
        await conn.forService('passport').consume({ durable: 'rev', events: [RevocationRecordedEvent] }, async (_e, p) => void revocations.push((p as { id: string }).id)),
        await conn.forService('audit').consume({ durable: 'aud', events: [AuditRecordedEvent] }, async (_e, p) => void audits.push((p as { id: string }).id)),
      ];
      const end = Date.now() + 5000;
      while ((!revocations.includes('rev_real') || !audits.includes('aud_2')) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      await Promise.all(handles.map((h) => h.stop()));
      expect(revocations).toEqual(['rev_real']);
      expect(audits).toEqual(['aud_1', 'aud_2']);
    } finally {
      await spy.close();
      await conn.close();
    }
  });
});

describe('NATS bus: reply subjects', () => {
  it('answers only an inbox: a request naming a JetStream API subject as its reply purges nothing', async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret: randomBytes(32), timeoutMs: 2000, instanceId: 'test' });
    const other = await connect({ servers: TEST_NATS_URL });
    try {
      await conn.ensureStreams();
      const bus = conn.forService('audit');
      await bus.publish(AuditRecordedEvent, { id: 'aud_kept', occurred_at: new Date().toISOString(), layer: 'proxy', action: 'proxy.request', outcome: 'success' }, { id: 'aud_kept' });
      let handled = 0;
      bus.handle(SYSTEM_COMMANDS.audit.ping, () => {
        handled++;
        return { service: 'audit' as const, instance: 'x', pid: 1, at: new Date().toISOString() };
      });
      await conn.flush();
      const ping = commandSubject(prefix, SYSTEM_COMMANDS.audit.ping);
      const request = new TextEncoder().encode(JSON.stringify({ meta: { id: 'deputy', caller: new CallerContextSigner(randomBytes(32)).sign({ issuer: 'audit', kind: 'system', scopes: [] }, ping), sender: 'audit' }, data: {} }));
      // Even the error answer to a request it refuses would do: the server takes any reply as a purge request.
      other.publish(ping, request, { reply: `$JS.API.STREAM.PURGE.${streamName(prefix, 'AUDIT')}` });
      await other.flush();
      // An ordinary request after it: once answered, the first one has been dealt with.
      await bus.request(SYSTEM_COMMANDS.audit.ping, {});
      expect(await bus.lastSequence('AUDIT')).toBe(1);
      expect((await (await other.jetstreamManager()).streams.info(streamName(prefix, 'AUDIT'))).state.messages).toBe(1);
      expect(handled).toBe(1);
    } finally {
      await other.close();
      await conn.close();
    }
  });
});

describe('NATS bus: its inbox prefix', () => {
  it("takes every reply under it: a request's, a publish's acknowledgement, a consumer's pulled messages", async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret: randomBytes(32), timeoutMs: 2000, instanceId: 'test', inboxPrefix: serviceInboxPrefix('audit') });
    // Whoever may read the shared _INBOX (no NATS user here limits it).
    const spy = await connect({ servers: TEST_NATS_URL });
    const seen = { own: 0, shared: 0 };
    spy.subscribe(`${serviceInboxPrefix('audit')}.>`, { callback: () => seen.own++ });
    spy.subscribe('_INBOX.>', { callback: () => seen.shared++ });
    await spy.flush();
    try {
      await conn.ensureStreams();
      const bus = conn.forService('audit');
      bus.handle(SYSTEM_COMMANDS.audit.ping, () => ({ service: 'audit' as const, instance: 'x', pid: 1, at: new Date().toISOString() }));
      await conn.flush();
      await bus.request(SYSTEM_COMMANDS.audit.ping, {});
      await bus.publish(ServiceStartedEvent, { service: 'audit', instance: 'i', version: '1', started_at: new Date().toISOString() }, { id: 'inbox-1' });
      let consumed!: () => void;
      const got = new Promise<void>((r) => (consumed = r));
      const handle = await bus.consume({ durable: 'inbox-reader', events: [ServiceStartedEvent] }, async () => consumed());
      await got;
      await handle.stop();
      await spy.flush();
      expect(seen.own).toBeGreaterThanOrEqual(3);
      expect(seen.shared).toBe(0);
    } finally {
      await spy.close();
      await conn.close();
    }
  });
});

describe('NATS bus publishing', () => {
  /** Counts the socket writes of the bus's NATS connection (the client's transport, observed, not replaced). */
  function countWrites(conn: Awaited<ReturnType<typeof connectNatsBus>>): { writes: () => number } {
    const socket = (conn as unknown as { nc: { protocol: { transport: { socket: { write: (...a: unknown[]) => boolean } } } } }).nc.protocol.transport.socket;
    const write = socket.write.bind(socket);
    let writes = 0;
    socket.write = (...args: unknown[]) => {
      writes++;
      return write(...args);
    };
    return { writes: () => writes };
  }

  it('sends the publishes of one turn of the event loop in one write, each with its own acknowledgement', async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret: randomBytes(32), timeoutMs: 5000, instanceId: 'test' });
    try {
      await conn.ensureStreams();
      const bus = conn.forService('audit');
      const counter = countWrites(conn);
      // Each publish from its own callback, as a busy service publishes: one per request.
      const acks = await Promise.all(
        Array.from(
          { length: 40 },
          (_, i) =>
            new Promise<Awaited<ReturnType<typeof bus.publish>>>((resolve, reject) => {
              setImmediate(() => bus.publish(ServiceStartedEvent, { service: 'audit', instance: `i-${i}`, version: '1', started_at: new Date().toISOString() }, { id: `turn-${i}` }).then(resolve, reject));
            }),
        ),
      );
      expect(new Set(acks.map((a) => a.seq)).size).toBe(40);
      expect(acks.every((a) => !a.duplicate)).toBe(true);
      // One write for the 40 (a client flushing after each callback makes 40).
      expect(counter.writes()).toBeLessThanOrEqual(2);
      // A publish alone is not held back waiting for company.
      const alone = await bus.publish(ServiceStartedEvent, { service: 'audit', instance: 'alone', version: '1', started_at: new Date().toISOString() }, { id: 'alone' });
      expect(alone.seq).toBe(41);
    } finally {
      await conn.close();
    }
  });

  const started = (instance: string) => ({ service: 'audit' as const, instance, version: '1', started_at: new Date().toISOString() });

  async function failure(p: Promise<unknown>): Promise<StackError> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StackError);
    return err as StackError;
  }

  it('refuses at once, as SERVICE_UNAVAILABLE, an event no stream takes, and logs why once for repeats', async () => {
    const warned: Array<{ fields: Record<string, unknown>; msg: string }> = [];
    const logger = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (fields: Record<string, unknown>, msg: string) => void warned.push({ fields, msg }) };
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix: `t${randomBytes(5).toString('hex')}`, internalSecret: randomBytes(32), timeoutMs: 20_000, instanceId: 'test', logger });
    try {
      // No ensureStreams: nothing stores the subject, and the server says so (it does not time out).
      const err = await failure(conn.forService('audit').publish(ServiceStartedEvent, started('nowhere'), { id: 'nowhere' }));
      expect(err.code).toBe('SERVICE_UNAVAILABLE');
      expect(err.message).toMatch(/could not make event .* durable: no stream takes this subject/);
      await failure(conn.forService('audit').publish(ServiceStartedEvent, started('again'), { id: 'again' }));
      const publishWarnings = warned.filter((w) => w.msg.startsWith('event not made durable'));
      expect(publishWarnings).toHaveLength(1);
      expect(publishWarnings[0]!.fields).toMatchObject({ err: 'no stream takes this subject' });
      expect(String(publishWarnings[0]!.fields.subject)).toContain('service');
    } finally {
      await conn.close();
    }
  });

  it('fails a publish the server never acknowledges after the timeout, and acknowledges the next once the link is back', async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const [host, port] = new URL(TEST_NATS_URL.replace(/^nats:/, 'http:')).host.split(':');
    const proxy = await startTcpFaultProxy({ target: { host: host!, port: Number(port ?? 4222) } });
    const conn = await connectTracked({ servers: `nats://${proxy.address}`, prefix, internalSecret: randomBytes(32), timeoutMs: 500, instanceId: 'test' });
    try {
      await conn.ensureStreams();
      const bus = conn.forService('audit');
      expect((await bus.publish(ServiceStartedEvent, started('before'), { id: 'before' })).seq).toBe(1);
      proxy.pause();
      const held = await Promise.all([0, 1, 2].map((i) => failure(bus.publish(ServiceStartedEvent, started(`held-${i}`), { id: `held-${i}` }))));
      for (const err of held) {
        expect(err.code).toBe('SERVICE_UNAVAILABLE');
        expect(err.message).toContain('no acknowledgement within 500 ms');
      }
      proxy.resume();
      // The held messages reach the stream late (they were sent); a late acknowledgement changes nothing.
      const after = await bus.publish(ServiceStartedEvent, started('after'), { id: 'after' });
      expect(after.duplicate).toBe(false);
      expect(after.seq).toBeGreaterThan(1);
    } finally {
      await conn.close();
      await proxy.stop();
    }
  });

  it('only adds subjects to a stream: an older version starting again keeps what a newer one added, and gets back what it lacks', async () => {
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const conn = await connectTracked({ servers: TEST_NATS_URL, prefix, internalSecret: randomBytes(32), timeoutMs: 2000, instanceId: 'test' });
    try {
      await conn.ensureStreams();
      const nc = await connect({ servers: TEST_NATS_URL });
      try {
        const jsm = await nc.jetstreamManager();
        const name = streamName(prefix, 'EVENTS');
        const info = await jsm.streams.info(name);
        const ours = info.config.subjects ?? [];
        // A newer version added a subject; this one's is dropped, as if an old release had written the stream.
        const newer = `${prefix}.v2.events.newer`;
        await jsm.streams.update(name, { ...info.config, subjects: [...ours.slice(1), newer] });
        await conn.ensureStreams();
        const after = (await jsm.streams.info(name)).config.subjects ?? [];
        expect(after).toContain(newer);
        expect(after).toEqual(expect.arrayContaining(ours));
      } finally {
        await nc.close();
      }
    } finally {
      await conn.close();
    }
  });

  it('refuses a publish after the connection closed, as SERVICE_UNAVAILABLE, whether or not it published before', async () => {
    for (const publishedBefore of [false, true]) {
      const conn = await connectTracked({ servers: TEST_NATS_URL, prefix: `t${randomBytes(5).toString('hex')}`, internalSecret: randomBytes(32), timeoutMs: 2000, instanceId: 'test' });
      await conn.ensureStreams();
      const bus = conn.forService('audit');
      if (publishedBefore) await bus.publish(ServiceStartedEvent, started('before'), { id: 'before' });
      await conn.close();
      const err = await failure(bus.publish(ServiceStartedEvent, started('late'), { id: 'late' }));
      expect(err.code).toBe('SERVICE_UNAVAILABLE');
    }
  });
});
