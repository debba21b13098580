import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';

import { ServiceStartedEvent, StackError, SYSTEM_COMMANDS } from '@stack/contracts';
import { dropBusStreams, startTcpFaultProxy, TEST_NATS_URL } from '@stack/testing';

import { busContractSuite } from './bus-contract.suite';
import { connectNatsBus, type NatsBusOptions } from './nats-bus';

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
