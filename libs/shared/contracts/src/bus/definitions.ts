/**
 * How a bus message is described. Every subject STACK uses is built from one of these
 * definitions by the functions below; no other code spells a subject or stream name.
 */
import type { Static, TSchema } from '@sinclair/typebox';

import type { ServiceName } from '../services';

/** Base names of the durable JetStream streams; the deployed name is prefixed (see streamName). */
export const STREAM_BASES = ['EVENTS', 'AUDIT', 'REVOCATIONS'] as const;
export type StreamBase = (typeof STREAM_BASES)[number];

export interface CommandDef<Req extends TSchema = TSchema, Res extends TSchema = TSchema> {
  readonly kind: 'command';
  readonly service: ServiceName;
  /** snake_case command name; the subject is `<prefix>.v1.<service>.<name>`. */
  readonly name: string;
  readonly version: 'v1';
  readonly description: string;
  readonly request: Req;
  readonly response: Res;
}

export interface EventDef<P extends TSchema = TSchema> {
  readonly kind: 'event';
  /** snake_case entity, e.g. `passport`; */
  readonly entity: string;
  /** past-tense verb, e.g. `revoked`; the subject is `<prefix>.v1.events.<entity>.<verb>`. */
  readonly verb: string;
  readonly version: 'v1';
  readonly stream: StreamBase;
  readonly description: string;
  readonly payload: P;
}

export type RequestOf<C extends CommandDef> = Static<C['request']>;
export type ResponseOf<C extends CommandDef> = Static<C['response']>;
export type PayloadOf<E extends EventDef> = Static<E['payload']>;

const TOKEN = /^[a-z][a-z0-9_]*$/;

export function defineCommand<Req extends TSchema, Res extends TSchema>(def: Omit<CommandDef<Req, Res>, 'kind' | 'version'>): CommandDef<Req, Res> {
  if (!TOKEN.test(def.name)) throw new Error(`command name '${def.name}' must be snake_case`);
  return { kind: 'command', version: 'v1', ...def };
}

export function defineEvent<P extends TSchema>(def: Omit<EventDef<P>, 'kind' | 'version'>): EventDef<P> {
  if (!TOKEN.test(def.entity) || !TOKEN.test(def.verb)) throw new Error(`event '${def.entity}.${def.verb}' must be snake_case`);
  return { kind: 'event', version: 'v1', ...def };
}

/** `STACK_BUS_PREFIX`: letters, digits, `_` and `-`, so it is one subject token. */
export const BUS_PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function commandSubject(prefix: string, def: CommandDef): string {
  return `${prefix}.${def.version}.${def.service}.${def.name}`;
}

export function eventSubject(prefix: string, def: EventDef): string {
  return `${prefix}.${def.version}.events.${def.entity}.${def.verb}`;
}

/** Queue group of a service: replicas of one service share the load of its subjects. */
export function queueGroup(prefix: string, service: ServiceName): string {
  return `${prefix}.${service}`;
}

/** `STACK_EVENTS` for the default prefix `stack`; `T1_EVENTS` for prefix `t1`. */
export function streamName(prefix: string, base: StreamBase): string {
  return `${prefix.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${base}`;
}
