/**
 * The per-service NATS users of the manifests on a real nats-server started from the dev
 * overlay's own nats.conf + nats-auth.conf: each user can do everything the bus library does
 * for its service (serve its commands in its queue group, request other services' commands
 * and get the reply, create the streams, publish events, pull and acknowledge them), and is
 * refused another service's subjects. Raw `nats` clients stand in for STACK's processes, so
 * each permission is tried on its own subject rather than through a whole service.
 */
import { AckPolicy, connect, DeliverPolicy, JSONCodec, RetentionPolicy, StorageType, type NatsConnection } from 'nats';

import { streamPlans } from '@stack/bus';
import { ServiceStartedEvent, SERVICE_NAMES, SYSTEM_COMMANDS, commandSubject, eventSubject, queueGroup, type ServiceName } from '@stack/contracts';

import { startDevNats, type DevNats } from './support/k8s-dev-nats';

const PREFIX = 'stack';
const codec = JSONCodec<Record<string, unknown>>();

/** Resolves with the server's error for a subscription, or 'allowed' once the server has accepted it. */
async function trySubscribe(nc: NatsConnection, subject: string, queue?: string): Promise<string> {
  return new Promise<string>((resolve) => {
    let settled = false;
    const done = (v: string): void => {
      if (!settled) {
        settled = true;
        resolve(v);
      }
    };
    const sub = nc.subscribe(subject, { queue, callback: (err) => done(err ? err.message : 'allowed') });
    // The server reports a violation right after the SUB; a round trip later, silence means accepted.
    void nc.flush().then(() =>
      setTimeout(() => {
        if (!settled) sub.unsubscribe();
        done('allowed');
      }, 300),
    );
  });
}

describe('NATS users per service (dev overlay configuration on a real nats-server)', () => {
  let nats: DevNats;
  const conns = new Map<ServiceName, NatsConnection>();

  beforeAll(async () => {
    nats = await startDevNats();
    for (const service of SERVICE_NAMES) {
      const url = new URL(nats.urlFor(service));
      conns.set(service, await connect({ servers: `nats://${url.host}`, user: decodeURIComponent(url.username), pass: url.password, name: `k8s-test-${service}` }));
    }
  });

  afterAll(async () => {
    await Promise.allSettled([...conns.values()].map((c) => c.close()));
    await nats?.stop();
  });

  it('refuses a wrong password', async () => {
    const url = new URL(nats.urlFor('audit'));
    await expect(connect({ servers: `nats://${url.host}`, user: 'audit', pass: 'wrong', maxReconnectAttempts: 0 })).rejects.toThrow(/authorization/i);
  });

  it('lets each service serve its own commands in its queue group, and no other service\'s', async () => {
    for (const service of SERVICE_NAMES) {
      const nc = conns.get(service)!;
      expect({ service, own: await trySubscribe(nc, commandSubject(PREFIX, SYSTEM_COMMANDS[service].ping), queueGroup(PREFIX, service)) }).toEqual({ service, own: 'allowed' });
      for (const other of SERVICE_NAMES.filter((s) => s !== service)) {
        const result = await trySubscribe(nc, commandSubject(PREFIX, SYSTEM_COMMANDS[other].ping), queueGroup(PREFIX, other));
        expect({ service, other, result }).toEqual({ service, other, result: expect.stringMatching(/permissions violation/i) });
      }
      // Nor every event, nor everything.
      expect(await trySubscribe(nc, `${PREFIX}.v1.events.>`)).toMatch(/permissions violation/i);
      expect(await trySubscribe(nc, '>')).toMatch(/permissions violation/i);
    }
  });

  it('lets every service request every other service\'s commands and get the reply', async () => {
    const subs = SERVICE_NAMES.map((service) =>
      conns.get(service)!.subscribe(commandSubject(PREFIX, SYSTEM_COMMANDS[service].ping), {
        queue: queueGroup(PREFIX, service),
        callback: (_err, msg) => msg.respond(codec.encode({ service })),
      }),
    );
    try {
      for (const c of conns.values()) await c.flush();
      for (const from of SERVICE_NAMES) {
        for (const to of SERVICE_NAMES.filter((s) => s !== from)) {
          const reply = await conns.get(from)!.request(commandSubject(PREFIX, SYSTEM_COMMANDS[to].ping), codec.encode({}), { timeout: 3000 });
          expect(codec.decode(reply.data)).toEqual({ service: to });
        }
      }
    } finally {
      for (const s of subs) s.unsubscribe();
    }
  });

  it('lets every service create the streams, publish events, and pull and acknowledge them', async () => {
    const plans = streamPlans(PREFIX);
    const first = await conns.get('audit')!.jetstreamManager();
    for (const plan of plans) {
      await first.streams.add({ name: plan.name, subjects: plan.subjects, storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 });
    }
    const stream = plans.find((p) => p.base === ServiceStartedEvent.stream)!.name;
    for (const service of SERVICE_NAMES) {
      const nc = conns.get(service)!;
      const jsm = await nc.jetstreamManager();
      for (const plan of plans) expect((await jsm.streams.info(plan.name)).config.name).toBe(plan.name);
      const ack = await nc.jetstream().publish(eventSubject(PREFIX, ServiceStartedEvent), codec.encode({ service }), { msgID: `k8s-${service}` });
      expect(ack.stream).toBe(stream);
      const durable = `k8s-${service}`;
      await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: eventSubject(PREFIX, ServiceStartedEvent) });
      const consumer = await nc.jetstream().consumers.get(stream, durable);
      const msg = await consumer.next({ expires: 5000 });
      expect(msg).not.toBeNull();
      await msg!.ackAck();
    }
  });
});
