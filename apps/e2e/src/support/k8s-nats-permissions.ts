/**
 * The NATS users of the deployment (one per service), read from the dev overlay's
 * nats-auth.conf and the prod NATS chart values, and checked against the bus contracts and
 * what each service's code does on the bus: which subjects each service must be able to
 * publish and subscribe to, and which it must not.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { serviceInboxPrefix, streamPlans } from '@stack/bus';
import * as contracts from '@stack/contracts';
import { ALL_COMMANDS, ALL_EVENT_DEFS, SERVICE_NAMES, STREAM_BASES, commandSubject, eventSubject, streamName } from '@stack/contracts';
import type { EventDef, ServiceName, StreamBase } from '@stack/contracts';
import { repoRoot } from '@stack/testing';

import { readRepoYaml } from './k8s-render';

export const DEV_NATS_AUTH_CONF = 'k8s/overlays/dev/engines/nats-auth.conf';
export const DEV_NATS_CONF = 'k8s/overlays/dev/engines/nats.conf';
export const PROD_NATS_VALUES = 'deploy/nats/values.yaml';

export interface NatsUser {
  user: string;
  password: string;
  permissions: {
    publish?: { allow?: string[]; deny?: string[] };
    subscribe?: { allow?: string[]; deny?: string[] };
    allow_responses?: boolean;
  };
}

/**
 * nats-auth.conf is written as `authorization: <JSON>` with unquoted `$VARIABLE` passwords
 * (NATS reads them from the environment), so quoting those makes the rest JSON.
 */
export function readDevNatsUsers(): NatsUser[] {
  const text = readFileSync(join(repoRoot(), DEV_NATS_AUTH_CONF), 'utf8')
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('\n');
  const body = text.replace(/^\s*authorization:\s*/, '').replace(/:\s*\$([A-Z0-9_]+)/g, ': "$$$1"');
  return (JSON.parse(body) as { users: NatsUser[] }).users;
}

export function readProdNatsValues(): { config: { cluster: { enabled: boolean; replicas: number }; jetstream: { enabled: boolean }; nats: { tls: { enabled: boolean } }; merge: { max_payload: number; authorization: { users: NatsUser[] } } } } {
  return readRepoYaml(PROD_NATS_VALUES) as ReturnType<typeof readProdNatsValues>;
}

/** A durable consumer a service's code reads; `*` stands for names made per process. */
export interface ConsumerUse {
  stream: StreamBase;
  durable: string;
  events: readonly EventDef[];
}

export interface ServiceBusUse {
  /** Events it publishes: bus.publish, and the outbox rows its relay publishes for it. */
  emits: readonly EventDef[];
  consumers: readonly ConsumerUse[];
  /** Creates and updates the streams (ensureStreams); the other services wait for them. */
  managesStreams: boolean;
}

/** Every process: its outbox relay announces the start, and its audit recorder writes entries. */
const EVERY_SERVICE_EMITS: readonly EventDef[] = [contracts.ServiceStartedEvent, contracts.AuditRecordedEvent];

/** libs/shared/runtime/src/revocation.module.ts: `revocations-<instance>-<random>`, one per process. */
const REVOCATION_FEED: ConsumerUse = { stream: 'REVOCATIONS', durable: '*', events: [contracts.RevocationRecordedEvent, contracts.RevocationHeartbeatEvent] };

/**
 * What each service does on the bus besides requesting commands and serving its own, as its
 * code does it (publish and Outbox calls, `bus.consume`, libs/shared/runtime's start-up): the
 * NATS users must allow this and nothing more. `eventsPublishedInCode` keeps the events honest;
 * the e2e spec runs the services on the users, which the consumers must satisfy.
 */
export const SERVICE_BUS_USE: Record<ServiceName, ServiceBusUse> = {
  auth: { emits: [...EVERY_SERVICE_EMITS, contracts.RevocationRecordedEvent, contracts.MemberRevokedEvent, contracts.ClientApprovedEvent], consumers: [], managesStreams: false },
  'mcp-gateway': { emits: EVERY_SERVICE_EMITS, consumers: [REVOCATION_FEED], managesStreams: false },
  'credential-proxy': { emits: EVERY_SERVICE_EMITS, consumers: [REVOCATION_FEED], managesStreams: false },
  passport: {
    emits: [...EVERY_SERVICE_EMITS, contracts.RevocationRecordedEvent, contracts.RevocationHeartbeatEvent, contracts.DropoffDepositedEvent, contracts.DropoffCollectedEvent, contracts.DropoffExpiredEvent],
    // libs/passport/src/agents/client-agents.consumer.ts
    consumers: [REVOCATION_FEED, { stream: 'EVENTS', durable: 'passport-client-agents', events: [contracts.ClientApprovedEvent] }],
    managesStreams: false,
  },
  'skill-runner': { emits: EVERY_SERVICE_EMITS, consumers: [], managesStreams: false },
  audit: {
    emits: [...EVERY_SERVICE_EMITS, contracts.AuditCheckpointSignedEvent],
    // libs/audit/src/log/audit-log.service.ts (AUDIT_INGEST_CONSUMER)
    consumers: [REVOCATION_FEED, { stream: 'AUDIT', durable: 'audit-ingest', events: [contracts.AuditRecordedEvent] }],
    managesStreams: true,
  },
};

/** Event definitions by the name the contracts export them under. */
function eventsByName(): Map<string, EventDef> {
  const byName = new Map<string, EventDef>();
  for (const [name, value] of Object.entries(contracts)) {
    if (value && typeof value === 'object' && (value as { kind?: unknown }).kind === 'event') byName.set(name, value as EventDef);
  }
  return byName;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'testing' ? [] : sourceFiles(path);
    return e.name.endsWith('.ts') && !/\.(spec|int-spec|e2e-spec|suite)\.ts$/.test(e.name) ? [path] : [];
  });
}

/**
 * The events a service's code hands to the bus or its outbox (`.publish(XEvent`, `Outbox.enqueue(m,
 * XEvent`, `Outbox.row(XEvent`), in its library and in the runtime every service runs.
 */
export function eventsPublishedInCode(service: ServiceName): EventDef[] {
  const byName = eventsByName();
  const found = new Set<EventDef>();
  const call = /(?:\.publish|[Oo]utbox\.(?:enqueue|row))\(\s*(?:[\w.]+\s*,\s*)?(\w+Event)\b/g;
  for (const dir of [`libs/${service}/src`, 'libs/shared/runtime/src']) {
    for (const file of sourceFiles(join(repoRoot(), dir))) {
      for (const m of readFileSync(file, 'utf8').matchAll(call)) {
        const def = byName.get(m[1]!);
        if (def) found.add(def);
      }
    }
  }
  return [...found];
}

/** NATS subject matching: `*` is one token, `>` the rest (at least one token). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i += 1) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

export function mayPublish(user: NatsUser, subject: string): boolean {
  const pub = user.permissions.publish;
  return !!pub?.allow?.some((a) => subjectMatches(a, subject)) && !pub.deny?.some((d) => subjectMatches(d, subject));
}

export function maySubscribe(user: NatsUser, subject: string): boolean {
  const sub = user.permissions.subscribe;
  return !!sub?.allow?.some((a) => subjectMatches(a, subject)) && !sub.deny?.some((d) => subjectMatches(d, subject));
}

/** The JetStream API subjects a consumer's reader uses, as the bus library and nats.js spell them. */
export function consumerSubjects(prefix: string, use: ConsumerUse, name = use.durable): { create: string; info: string; next: string; ack: string } {
  const stream = streamName(prefix, use.stream);
  const all = streamPlans(prefix).find((p) => p.base === use.stream)?.subjects ?? [];
  // The bus filters a consumer that wants one subject of a stream holding more (nats-bus.ts consume).
  const filter = use.events.length === 1 && all.length > 1 ? `.${eventSubject(prefix, use.events[0]!)}` : '';
  return {
    create: `$JS.API.CONSUMER.CREATE.${stream}.${name}${filter}`,
    info: `$JS.API.CONSUMER.INFO.${stream}.${name}`,
    next: `$JS.API.CONSUMER.MSG.NEXT.${stream}.${name}`,
    ack: `$JS.ACK.${stream}.${name}.1.2.3.1700000000000000000.0`,
  };
}

const CONSUMER_VERBS = { create: 'create', info: 'read the info of', next: 'pull from', ack: 'acknowledge for' } as const;

/** Stands for a revocation feed consumer's per-process name. */
const SAMPLE_FEED_NAME = 'revocations-stack-mcp-gateway-1-0a1b2c3d';

export interface PermissionProblem {
  user: string;
  problem: string;
}

/**
 * Checks a set of users against the contracts for bus prefix `prefix`: one user per service; a
 * service subscribes to its own command subjects and reply inbox and no other's, requests any
 * command, answers requests, publishes the events it emits and no other (nor reads any outside
 * JetStream), and reaches only the JetStream API it uses: stream info, its own consumers (create,
 * info, pull, acknowledge), stream create and update for the one service that manages them, no
 * delete or purge for anyone.
 */
export function checkNatsUsers(users: readonly NatsUser[], prefix = 'stack'): PermissionProblem[] {
  const problems: PermissionProblem[] = [];
  const names = users.map((u) => u.user).sort();
  if (names.join(',') !== [...SERVICE_NAMES].sort().join(',')) problems.push({ user: '*', problem: `users are ${names.join(', ')}; expected one per service` });
  for (const user of users) {
    const service = user.user as ServiceName;
    const use = SERVICE_BUS_USE[service];
    const bad = (problem: string): void => {
      problems.push({ user: user.user, problem });
    };
    if (!use) continue;
    if (!user.password.startsWith('$') && !/^<< \$[A-Z0-9_]+ >>$/.test(user.password)) bad('password is not read from the environment');
    if (user.permissions.allow_responses !== true) bad('cannot answer requests (allow_responses)');

    for (const command of ALL_COMMANDS) {
      const subject = commandSubject(prefix, command);
      if (!mayPublish(user, subject)) bad(`cannot request ${subject}`);
      if (command.service === service && !maySubscribe(user, subject)) bad(`cannot serve its own ${subject}`);
      if (command.service !== service && maySubscribe(user, subject)) bad(`may subscribe to ${command.service}'s ${subject}`);
    }
    // A command another issue has not written yet still lands under the owner's token.
    for (const other of SERVICE_NAMES.filter((s) => s !== service)) {
      if (maySubscribe(user, `${prefix}.v1.${other}.any_future_command`)) bad(`may subscribe to ${other}'s future commands`);
    }

    // Replies: its own inbox only. Another service's carry passports, proxied responses, drop-off
    // payloads and API-key resolutions.
    if (!maySubscribe(user, `${serviceInboxPrefix(service)}.abc.def`)) bad(`cannot receive replies on ${serviceInboxPrefix(service)}`);
    if (maySubscribe(user, '_INBOX.abc.def')) bad('may read the shared _INBOX (every client\'s default replies)');
    for (const other of SERVICE_NAMES.filter((s) => s !== service)) {
      if (maySubscribe(user, `${serviceInboxPrefix(other)}.abc.def`)) bad(`may read ${other}'s replies`);
    }
    if (maySubscribe(user, '>') || maySubscribe(user, `${prefix}.>`)) bad('may subscribe to everything');

    for (const event of ALL_EVENT_DEFS) {
      const subject = eventSubject(prefix, event);
      const emits = use.emits.includes(event);
      if (emits && !mayPublish(user, subject)) bad(`cannot publish its ${subject}`);
      if (!emits && mayPublish(user, subject)) bad(`may publish ${subject}, which it does not emit`);
      if (maySubscribe(user, subject)) bad(`may read ${subject} outside JetStream`);
    }
    if (mayPublish(user, `${prefix}.v1.events.any_future.event`)) bad('may publish events it does not emit (a wildcard)');

    if (!mayPublish(user, '$JS.API.INFO')) bad('cannot reach the JetStream API');
    for (const base of STREAM_BASES) {
      const stream = streamName(prefix, base);
      if (!mayPublish(user, `$JS.API.STREAM.INFO.${stream}`)) bad(`cannot read ${stream}'s info`);
      for (const op of ['CREATE', 'UPDATE']) {
        const may = mayPublish(user, `$JS.API.STREAM.${op}.${stream}`);
        if (use.managesStreams && !may) bad(`cannot ${op.toLowerCase()} ${stream}, which it manages`);
        if (!use.managesStreams && may) bad(`may ${op.toLowerCase()} ${stream}`);
      }
      for (const api of [`STREAM.DELETE.${stream}`, `STREAM.PURGE.${stream}`, `STREAM.MSG.GET.${stream}`, `STREAM.MSG.DELETE.${stream}`, `DIRECT.GET.${stream}`, `STREAM.SNAPSHOT.${stream}`, `CONSUMER.DELETE.${stream}.audit-ingest`, `CONSUMER.CREATE.${stream}`, `CONSUMER.DURABLE.CREATE.${stream}.spy`]) {
        if (mayPublish(user, `$JS.API.${api}`)) bad(`may call $JS.API.${api}`);
      }
      // Only its own consumers; a per-process name (`*`) opens every name on that stream.
      const own = use.consumers.filter((c) => c.stream === base);
      for (const c of own) {
        const s = consumerSubjects(prefix, c, c.durable === '*' ? SAMPLE_FEED_NAME : c.durable);
        if (!mayPublish(user, s.create)) bad(`cannot create its consumer ${c.durable} on ${stream}`);
        if (!mayPublish(user, s.info)) bad(`cannot read its consumer ${c.durable}'s info on ${stream}`);
        if (!mayPublish(user, s.next)) bad(`cannot pull from its consumer ${c.durable} on ${stream}`);
        if (!mayPublish(user, s.ack)) bad(`cannot acknowledge its consumer ${c.durable}'s messages on ${stream}`);
      }
      if (!own.some((c) => c.durable === '*')) {
        const others = [...SERVICE_NAMES.flatMap((s) => SERVICE_BUS_USE[s].consumers).filter((c) => c.stream === base && !own.some((o) => o.durable === c.durable)).map((c) => (c.durable === '*' ? SAMPLE_FEED_NAME : c.durable)), 'spy'];
        for (const name of new Set(others)) {
          const s = consumerSubjects(prefix, { stream: base, durable: name, events: [] }, name);
          for (const [what, subject] of Object.entries(s) as [keyof typeof s, string][]) {
            if (mayPublish(user, subject) || mayPublish(user, `${subject}.${prefix}.v1.events.x.y`)) bad(`may ${CONSUMER_VERBS[what]} consumer ${name} on ${stream}`);
          }
        }
      }
    }
    if (mayPublish(user, '$JS.API.STREAM.CREATE.OTHER') || mayPublish(user, '$JS.API.ACCOUNT.PURGE.x')) bad('may manage streams that are not STACK\'s');
  }
  return problems;
}
