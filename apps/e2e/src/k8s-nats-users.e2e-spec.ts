/**
 * The per-service NATS users of the manifests on a real nats-server started from the dev
 * overlay's own nats.conf + nats-auth.conf. Raw `nats` clients (each with its service's inbox
 * prefix) try each permission on its own subject: a service serves its commands, requests any
 * other's and gets the reply on its own inbox; reads no other service's replies; publishes the
 * events it emits and no other; reaches its own consumers and stream info, while audit alone
 * creates the streams and nobody purges or deletes one. Then the bus library on those users (a
 * service that may not create the streams waits for audit), and STACK itself: six processes, one
 * per service, each logged in as its own user, doing their work with nothing refused.
 */
import { randomBytes } from 'node:crypto';

import { AckPolicy, connect, DeliverPolicy, JSONCodec, nanos, RetentionPolicy, StorageType, type NatsConnection, type StreamConfig } from 'nats';
import { Pool } from 'pg';

import { connectNatsBus, serviceInboxPrefix, streamPlans, type BusConnection } from '@stack/bus';
import { ALL_EVENT_DEFS, AuditRecordedEvent, ClientApprovedEvent, RevocationRecordedEvent, SERVICE_NAMES, SYSTEM_COMMANDS, commandSubject, eventSubject, queueGroup, streamName, type ServiceName } from '@stack/contracts';
import { startDistributedStack, type DistributedStack } from '@stack/testing';

import { expectReadsRecordedAndProven } from './support/audit-checks';
import { expectHandOffAcrossRuntimes, setUpDropoffAgents } from './support/dropoff-checks';
import { expectPeersAnswer, expectReady } from './support/foundation-checks';
import { startDevNats, type DevNats } from './support/k8s-dev-nats';
import { consumerSubjects, SERVICE_BUS_USE } from './support/k8s-nats-permissions';
import { expectIssueAndVerify, expectRevocationKinds } from './support/passport-checks';
import { PassportClient } from './support/passport-client';

const PREFIX = 'stack';
const codec = JSONCodec<Record<string, unknown>>();
const VIOLATION = /permissions violation/i;

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

/** 'allowed', or the error the attempt failed with. */
function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'allowed',
    (err: Error) => err.message,
  );
}

function streamConfig(plan: ReturnType<typeof streamPlans>[number]): Partial<StreamConfig> & { name: string } {
  return { name: plan.name, subjects: plan.subjects, storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 };
}

/**
 * A raw client logged in as `service`, reading replies where its user may: its own inbox
 * (`_INBOX_<service>`), else the shared `_INBOX` (as one holding the password would, so each
 * refusal below is the server's, whichever inbox the users allow).
 */
async function connectAs(nats: DevNats, service: ServiceName): Promise<NatsConnection> {
  const url = new URL(nats.urlFor(service));
  const options = { servers: `nats://${url.host}`, user: decodeURIComponent(url.username), pass: url.password, name: `k8s-test-${service}` };
  const own = await connect({ ...options, inboxPrefix: serviceInboxPrefix(service) });
  if ((await trySubscribe(own, `${serviceInboxPrefix(service)}.probe`)) === 'allowed') return own;
  await own.close();
  return connect(options);
}

describe('NATS users per service (dev overlay configuration on a real nats-server)', () => {
  let nats: DevNats;
  const conns = new Map<ServiceName, NatsConnection>();
  const conn = (service: ServiceName): NatsConnection => conns.get(service)!;

  beforeAll(async () => {
    nats = await startDevNats();
    for (const service of SERVICE_NAMES) conns.set(service, await connectAs(nats, service));
  });

  afterAll(async () => {
    await Promise.allSettled([...conns.values()].map((c) => c.close()));
    await nats?.stop();
  });

  it('refuses a wrong password', async () => {
    const url = new URL(nats.urlFor('audit'));
    await expect(connect({ servers: `nats://${url.host}`, user: 'audit', pass: 'wrong', maxReconnectAttempts: 0 })).rejects.toThrow(/authorization/i);
  });

  it("lets each service serve its own commands in its queue group, and no other service's", async () => {
    for (const service of SERVICE_NAMES) {
      const nc = conn(service);
      expect({ service, own: await trySubscribe(nc, commandSubject(PREFIX, SYSTEM_COMMANDS[service].ping), queueGroup(PREFIX, service)) }).toEqual({ service, own: 'allowed' });
      for (const other of SERVICE_NAMES.filter((s) => s !== service)) {
        const result = await trySubscribe(nc, commandSubject(PREFIX, SYSTEM_COMMANDS[other].ping), queueGroup(PREFIX, other));
        expect({ service, other, result }).toEqual({ service, other, result: expect.stringMatching(VIOLATION) });
      }
      // Nor every event, nor everything.
      expect(await trySubscribe(nc, `${PREFIX}.v1.events.>`)).toMatch(VIOLATION);
      expect(await trySubscribe(nc, '>')).toMatch(VIOLATION);
    }
  });

  it("lets every service request every other service's commands and get the reply on its own inbox", async () => {
    const subs = SERVICE_NAMES.map((service) =>
      conn(service).subscribe(commandSubject(PREFIX, SYSTEM_COMMANDS[service].ping), {
        queue: queueGroup(PREFIX, service),
        callback: (_err, msg) => msg.respond(codec.encode({ service, reply: msg.reply ?? '' })),
      }),
    );
    try {
      for (const c of conns.values()) await c.flush();
      for (const from of SERVICE_NAMES) {
        for (const to of SERVICE_NAMES.filter((s) => s !== from)) {
          const reply = await conn(from).request(commandSubject(PREFIX, SYSTEM_COMMANDS[to].ping), codec.encode({}), { timeout: 3000 });
          expect(codec.decode(reply.data)).toEqual({ service: to, reply: expect.stringMatching(new RegExp(`^${serviceInboxPrefix(from)}\\.`)) });
        }
      }
    } finally {
      for (const s of subs) s.unsubscribe();
    }
  });

  it("keeps each service's replies to itself: skill-runner cannot read passport's answers to the gateway", async () => {
    const runner = conn('skill-runner');
    // The shared default inbox, the gateway's, passport's, and all of them at once.
    for (const spy of ['_INBOX.>', `${serviceInboxPrefix('mcp-gateway')}.>`, `${serviceInboxPrefix('passport')}.>`, '_INBOX_*.>']) {
      expect({ spy, result: await trySubscribe(runner, spy) }).toEqual({ spy, result: expect.stringMatching(VIOLATION) });
    }
    for (const service of SERVICE_NAMES) {
      for (const other of SERVICE_NAMES.filter((s) => s !== service)) {
        expect({ service, other, result: await trySubscribe(conn(service), `${serviceInboxPrefix(other)}.>`) }).toEqual({ service, other, result: expect.stringMatching(VIOLATION) });
      }
      expect({ service, own: await trySubscribe(conn(service), `${serviceInboxPrefix(service)}.>`) }).toEqual({ service, own: 'allowed' });
    }
  });

  /** What each attempt came to, next to what it must come to: one comparison shows every wrong one. */
  function ledger() {
    const results: Record<string, string> = {};
    const expected: Record<string, unknown> = {};
    return {
      results,
      expected,
      async attempt(what: string, p: Promise<unknown>, allowed: boolean): Promise<void> {
        results[what] = await outcome(p);
        expected[what] = allowed ? 'allowed' : expect.stringMatching(VIOLATION);
      },
    };
  }

  /** The streams as audit makes them (again, if an earlier test lost them), and a message in each that the tests read. */
  async function streamsByAudit(): Promise<void> {
    const jsm = await conn('audit').jetstreamManager();
    // Creating a stream again with the same configuration changes nothing.
    for (const plan of streamPlans(PREFIX)) await jsm.streams.add(streamConfig(plan));
    await conn('credential-proxy').jetstream().publish(eventSubject(PREFIX, AuditRecordedEvent), codec.encode({}), { msgID: 'k8s-audit-kept' });
    await conn('passport').jetstream().publish(eventSubject(PREFIX, RevocationRecordedEvent), codec.encode({}), { msgID: 'k8s-revocation-kept' });
    await conn('auth').jetstream().publish(eventSubject(PREFIX, ClientApprovedEvent), codec.encode({}), { msgID: 'k8s-client-approved-kept' });
  }

  // skill-runner first: the review found it able to do all of this.
  const attackersFirst: ServiceName[] = ['skill-runner', ...SERVICE_NAMES.filter((s) => s !== 'skill-runner')];

  it('lets audit alone create and update the streams, every service read their info, and nobody purge or delete one', async () => {
    const plans = streamPlans(PREFIX);
    const l = ledger();
    for (const service of attackersFirst) {
      const jsm = await conn(service).jetstreamManager();
      for (const plan of plans) await l.attempt(`${service} creates ${plan.name}`, jsm.streams.add(streamConfig(plan)), service === 'audit');
    }
    await streamsByAudit();
    for (const service of attackersFirst) {
      const jsm = await conn(service).jetstreamManager();
      for (const plan of plans) await l.attempt(`${service} reads ${plan.name}'s info`, jsm.streams.info(plan.name), true);
      // What ensureStreams does when a version adds a subject (here: the same subjects).
      await l.attempt(`${service} updates ${plans[0]!.name}`, jsm.streams.update(plans[0]!.name, { subjects: plans[0]!.subjects }), service === 'audit');
      await l.attempt(`${service} purges STACK_AUDIT`, jsm.streams.purge(streamName(PREFIX, 'AUDIT')), false);
      await l.attempt(`${service} deletes STACK_REVOCATIONS`, jsm.streams.delete(streamName(PREFIX, 'REVOCATIONS')), false);
      await l.attempt(`${service} deletes STACK_AUDIT`, jsm.streams.delete(streamName(PREFIX, 'AUDIT')), false);
    }
    const audit = await conn('audit').jetstreamManager();
    const kept = async (base: 'AUDIT' | 'REVOCATIONS') => String((await audit.streams.info(streamName(PREFIX, base)).catch(() => undefined))?.state.messages ?? 'no stream');
    l.results['messages kept in STACK_AUDIT'] = await kept('AUDIT');
    l.expected['messages kept in STACK_AUDIT'] = '1';
    l.results['messages kept in STACK_REVOCATIONS'] = await kept('REVOCATIONS');
    l.expected['messages kept in STACK_REVOCATIONS'] = '1';
    expect(l.results).toEqual(l.expected);
  });

  it('lets each service publish the events it emits and refuses every other: skill-runner cannot publish a revocation', async () => {
    await streamsByAudit();
    const l = ledger();
    for (const service of attackersFirst) {
      const js = conn(service).jetstream();
      for (const event of ALL_EVENT_DEFS) {
        const subject = eventSubject(PREFIX, event);
        await l.attempt(`${service} publishes ${subject}`, js.publish(subject, codec.encode({ from: service }), { msgID: `k8s-${service}-${subject}` }), SERVICE_BUS_USE[service].emits.includes(event));
      }
    }
    expect(l.results).toEqual(l.expected);
  });

  it('lets each service create, pull and acknowledge its own consumers, and reach no other: skill-runner cannot read STACK_AUDIT', async () => {
    await streamsByAudit();
    const l = ledger();
    for (const service of SERVICE_NAMES) {
      const nc = conn(service);
      const jsm = await nc.jetstreamManager();
      for (const use of SERVICE_BUS_USE[service].consumers) {
        const stream = streamName(PREFIX, use.stream);
        const durable = use.durable === '*' ? `revocations-k8s-${service}-${randomBytes(4).toString('hex')}` : use.durable;
        const filter = /\.CONSUMER\.CREATE\.[^.]+\.[^.]+\.(.+)$/.exec(consumerSubjects(PREFIX, use, durable).create)?.[1];
        // As the bus does it: a durable pull consumer, filtered when it wants one subject of several.
        await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ...(filter ? { filter_subject: filter } : {}), ...(use.durable === '*' ? { inactive_threshold: nanos(60_000) } : {}) });
        const msg = await (await nc.jetstream().consumers.get(stream, durable)).next({ expires: 5000 });
        l.results[`${service} pulls and acknowledges ${durable === use.durable ? durable : 'its revocation feed'}`] = msg ? String(await msg.ackAck()) : 'nothing delivered';
        l.expected[`${service} pulls and acknowledges ${durable === use.durable ? durable : 'its revocation feed'}`] = 'true';
      }
    }
    const audit = streamName(PREFIX, 'AUDIT');
    const next = codec.encode({ batch: 1, no_wait: true });
    for (const service of attackersFirst.filter((s) => s !== 'audit')) {
      const nc = conn(service);
      const jsm = await nc.jetstreamManager();
      await l.attempt(`${service} creates a consumer of STACK_AUDIT`, jsm.consumers.add(audit, { durable_name: `spy-${service}`, ack_policy: AckPolicy.Explicit }), false);
      await l.attempt(`${service} creates an ephemeral consumer of STACK_AUDIT`, jsm.consumers.add(audit, { ack_policy: AckPolicy.None }), false);
      await l.attempt(`${service} reads audit-ingest's info`, jsm.consumers.info(audit, 'audit-ingest'), false);
      await l.attempt(`${service} pulls from audit-ingest`, nc.request(`$JS.API.CONSUMER.MSG.NEXT.${audit}.audit-ingest`, next, { timeout: 3000 }), false);
      await l.attempt(`${service} gets a STACK_AUDIT message`, jsm.streams.getMessage(audit, { seq: 1 }), false);
      await l.attempt(`${service} deletes audit-ingest`, jsm.consumers.delete(audit, 'audit-ingest'), false);
    }
    for (const service of attackersFirst.filter((s) => !SERVICE_BUS_USE[s].consumers.some((c) => c.stream === 'REVOCATIONS'))) {
      const jsm = await conn(service).jetstreamManager();
      await l.attempt(`${service}, which has no revocation feed, creates one`, jsm.consumers.add(streamName(PREFIX, 'REVOCATIONS'), { durable_name: `revocations-spy-${service}`, ack_policy: AckPolicy.Explicit }), false);
    }
    expect(l.results).toEqual(l.expected);
  });
});

describe('the bus library on the dev NATS users', () => {
  let nats: DevNats;
  const secret = randomBytes(32);
  const buses: BusConnection[] = [];
  const busOf = async (service: ServiceName): Promise<BusConnection> => {
    const bus = await connectNatsBus({ servers: nats.urlFor(service), prefix: PREFIX, internalSecret: secret, timeoutMs: 3000, instanceId: `k8s-${service}`, inboxPrefix: serviceInboxPrefix(service) });
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    nats = await startDevNats();
  });

  afterAll(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    await nats?.stop();
  });

  it('has a service that may not create the streams wait at start until audit has created them', async () => {
    const runner = await busOf('skill-runner');
    let ready = false;
    const waiting = runner.ensureStreams().then(() => {
      ready = true;
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(ready).toBe(false);
    await (await busOf('audit')).ensureStreams();
    await waiting;
    expect(ready).toBe(true);
  });

  it('requests and answers on per-service inboxes, and refuses at once an event its user may not publish', async () => {
    const [gateway, passport, runner] = [await busOf('mcp-gateway'), await busOf('passport'), await busOf('skill-runner')];
    passport.forService('passport').handle(SYSTEM_COMMANDS.passport.ping, () => ({ service: 'passport' as const, instance: 'k8s', pid: process.pid, at: new Date().toISOString() }));
    await passport.flush();
    expect(await gateway.forService('mcp-gateway').request(SYSTEM_COMMANDS.passport.ping, { from: 'k8s' })).toMatchObject({ service: 'passport' });
    const revocation = { id: `rev_${randomBytes(4).toString('hex')}`, kind: 'agent' as const, value: 'agt_k8s', operator_id: 'op_k8s', revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 60_000 };
    expect(await passport.forService('passport').publish(RevocationRecordedEvent, revocation, { id: revocation.id })).toMatchObject({ stream: streamName(PREFIX, 'REVOCATIONS') });
    const started = Date.now();
    await expect(runner.forService('skill-runner').publish(RevocationRecordedEvent, { ...revocation, id: 'rev_forged' }, { id: 'rev_forged' })).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE', message: expect.stringMatching(VIOLATION) });
    // Not the acknowledgement's timeout (3 s): the server's refusal.
    expect(Date.now() - started).toBeLessThan(1500);
  });
});

describe('STACK on the dev NATS users: one process per service, each logged in as its own user', () => {
  let nats: DevNats;
  let stack: DistributedStack;
  let pool: Pool;

  beforeAll(async () => {
    nats = await startDevNats();
    // Started together, as a rollout does: the services other than audit wait for its streams.
    stack = await startDistributedStack({
      natsUrl: nats.urlFor('audit'),
      serviceEnv: Object.fromEntries(SERVICE_NAMES.map((s) => [s, { NATS_URL: nats.urlFor(s) }])),
      env: { STACK_BUS_PREFIX: PREFIX, STACK_AUDIT_CHECKPOINT_INTERVAL_MS: '300', STACK_MCP_RATE_LIMIT: '100000:100000' },
      logLevel: 'warn',
    });
    pool = new Pool({ connectionString: stack.database.url, max: 2 });
  }, 180_000);

  afterAll(async () => {
    await pool?.end();
    await stack?.stop();
    await nats?.stop();
  });

  it('runs each service ready (its bus round trip, its revocation state fresh) and answering every other over the bus', async () => {
    for (const p of stack.processes) {
      const body = await expectReady(p.url, [p.service]);
      if (SERVICE_BUS_USE[p.service].consumers.some((c) => c.stream === 'REVOCATIONS')) expect({ service: p.service, ...body.checks.revocations }).toMatchObject({ service: p.service, ok: true });
      await expectPeersAnswer(p.url, [p.service]);
    }
  });

  it('issues, verifies and revokes passports, hands a drop-off over through the gateway, and keeps the audit log', async () => {
    const api = new PassportClient(stack.publicUrl, stack.internalSecret);
    await expectIssueAndVerify(api, stack.publicUrl);
    await expectRevocationKinds(api);
    const world = { publicUrl: stack.publicUrl, api, sql: async (q: string, params: unknown[]) => (await pool.query(q, params)).rows as Array<Record<string, unknown>> };
    const agents = await setUpDropoffAgents(world);
    try {
      await expectHandOffAcrossRuntimes(world, agents);
    } finally {
      await agents.mcp.close();
    }
    await expectReadsRecordedAndProven({ publicUrl: stack.publicUrl, internalSecret: stack.internalSecret }, `op_k8s_${randomBytes(3).toString('hex')}`);
    // Heartbeats and revocations still reach every node after all that.
    for (const p of stack.processes) await expectReady(p.url, [p.service]);
  }, 120_000);

  it('has NATS refuse nothing but stream creation to the services that wait for audit to make the streams', () => {
    const log = nats.process.logs();
    expect(log.some((l) => /Server is ready/.test(l))).toBe(true);
    const refused = log.filter((l) => /violation/i.test(l));
    const unexpected = refused.filter((l) => !/Publish Violation - User "(auth|mcp-gateway|credential-proxy|passport|skill-runner)", Subject "\$JS\.API\.STREAM\.(CREATE|UPDATE)\.STACK_(EVENTS|AUDIT|REVOCATIONS)"/.test(l));
    expect(unexpected).toEqual([]);
  });
});
