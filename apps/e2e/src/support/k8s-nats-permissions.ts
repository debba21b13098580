/**
 * The NATS users of the deployment (one per service), read from the dev overlay's
 * nats-auth.conf and the prod NATS chart values, and checked against the bus contracts:
 * which subjects each service must be able to publish and subscribe to, and which it must not.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ALL_COMMANDS, ALL_EVENT_DEFS, SERVICE_NAMES, STREAM_BASES, commandSubject, eventSubject, streamName } from '@stack/contracts';
import type { ServiceName } from '@stack/contracts';
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

export interface PermissionProblem {
  user: string;
  problem: string;
}

/**
 * Checks a set of users against the contracts for bus prefix `prefix`: one user per service;
 * a service subscribes to its own command subjects and no other's, requests any command,
 * publishes events (the outbox relay) but does not subscribe to them outside JetStream,
 * reaches the JetStream API of its streams and its reply inbox, and answers requests.
 */
export function checkNatsUsers(users: readonly NatsUser[], prefix = 'stack'): PermissionProblem[] {
  const problems: PermissionProblem[] = [];
  const names = users.map((u) => u.user).sort();
  if (names.join(',') !== [...SERVICE_NAMES].sort().join(',')) problems.push({ user: '*', problem: `users are ${names.join(', ')}; expected one per service` });
  for (const user of users) {
    const service = user.user as ServiceName;
    const bad = (problem: string): void => {
      problems.push({ user: user.user, problem });
    };
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
    for (const event of ALL_EVENT_DEFS) {
      const subject = eventSubject(prefix, event);
      if (!mayPublish(user, subject)) bad(`cannot publish ${subject}`);
      if (maySubscribe(user, subject)) bad(`may read ${subject} outside JetStream`);
    }
    for (const base of STREAM_BASES) {
      const stream = streamName(prefix, base);
      if (!mayPublish(user, `$JS.API.STREAM.INFO.${stream}`)) bad(`cannot reach the JetStream API of ${stream}`);
      if (!mayPublish(user, `$JS.API.CONSUMER.MSG.NEXT.${stream}.durable`)) bad(`cannot pull from ${stream}`);
      if (!mayPublish(user, `$JS.ACK.${stream}.durable.1.2.3.4.5`)) bad(`cannot acknowledge ${stream} messages`);
    }
    if (!maySubscribe(user, '_INBOX.abc.def')) bad('cannot receive replies on _INBOX');
    if (maySubscribe(user, '>') || maySubscribe(user, `${prefix}.>`)) bad('may subscribe to everything');
  }
  return problems;
}
