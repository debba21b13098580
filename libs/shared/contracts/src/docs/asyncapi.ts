/**
 * The bus contract as an AsyncAPI 3.0 document, generated from the command and event
 * registry so the document cannot drift from what the code sends. It describes the bus as
 * a client of STACK sees it: commands it can send (request/reply over core NATS, answered
 * by one queue group per service) and events it can receive (from the durable JetStream
 * streams). Pure: builds an object, does no I/O.
 */
import type { TSchema } from '@sinclair/typebox';

import { ERROR_CODES } from '../errors/error-codes';
import { commandSubject, eventSubject, queueGroup, streamName, type CommandDef, type EventDef } from '../bus/definitions';
import { BUS_HEADERS, MAX_BUS_PAYLOAD_BYTES } from '../bus/headers';
import { ALL_COMMANDS, ALL_EVENT_DEFS } from '../bus/registry';

export const ASYNCAPI_VERSION = '3.0.0';

export interface AsyncApiOptions {
  /** STACK_BUS_PREFIX the subjects and stream names are shown under. */
  prefix: string;
  /** Version of STACK the document describes (info.version). */
  version: string;
  /** NATS server host:port for `servers.nats`; the local default when omitted. */
  natsHost?: string;
}

/** A JSON value: what the document is made of once TypeBox's symbol keys are gone. */
type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
type JsonObject = { [key: string]: JsonValue };

/** The generated document: plain JSON, ready for JSON.stringify or an AsyncAPI parser. */
export type AsyncApiDocument = JsonObject;

const DEFAULT_NATS_HOST = '127.0.0.1:4222';

/**
 * Ids used inside the document (channel, operation, message and schema keys) leave out the
 * prefix, so the same contract has the same ids in every deployment. They mirror the subject:
 * `v1.audit.ping` is `<prefix>.v1.audit.ping`.
 */
function commandId(def: CommandDef): string {
  return `${def.version}.${def.service}.${def.name}`;
}

function eventId(def: EventDef): string {
  return `${def.version}.events.${def.entity}.${def.verb}`;
}

/** TypeBox schemas are JSON Schema plus symbol keys (Kind, Optional); a JSON round trip keeps exactly the JSON Schema. */
function jsonSchema(schema: TSchema): JsonObject {
  return JSON.parse(JSON.stringify(schema)) as JsonObject;
}

function ref(pointer: string): JsonObject {
  return { $ref: pointer };
}

/** JSON Pointer escaping (RFC 6901): ids contain dots and dashes only, but stay safe if that changes. */
function pointer(...tokens: string[]): string {
  return `#/${tokens.map((t) => t.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

const STRING_HEADER = { type: 'string' } as const;

/** Headers every STACK event carries (headers.ts); the frozen names are the wire names. */
function busHeaders(opts: { jetStream: boolean }): JsonObject {
  const properties: JsonObject = {
    [BUS_HEADERS.messageId]: { ...STRING_HEADER, description: 'Unique message id; receivers deduplicate by it, so a redelivery has no second effect.' },
    [BUS_HEADERS.traceparent]: { ...STRING_HEADER, description: 'W3C trace context of the sending span.' },
    [BUS_HEADERS.tracestate]: { ...STRING_HEADER, description: 'W3C trace state, when the sender has one.' },
    [BUS_HEADERS.caller]: {
      ...STRING_HEADER,
      description: 'Caller context (CallerContext) as a compact JWS signed with the internal key; receivers verify it before acting and refuse the message otherwise.',
    },
    [BUS_HEADERS.sender]: { ...STRING_HEADER, description: 'The STACK service that sent the message.' },
  };
  const required: string[] = [BUS_HEADERS.messageId, BUS_HEADERS.caller, BUS_HEADERS.sender];
  if (opts.jetStream) {
    properties[BUS_HEADERS.natsMessageId] = { ...STRING_HEADER, description: "Same value as Stack-Msg-Id; JetStream's duplicate window drops a second publish with it." };
    required.push(BUS_HEADERS.natsMessageId);
  }
  return { type: 'object', properties, required };
}

const ERROR_BODY_SCHEMA: JsonObject = {
  type: 'object',
  description: 'The error envelope of DESIGN.md §10; the requester raises it again as the same StackError.',
  properties: {
    code: { type: 'string', enum: [...ERROR_CODES] },
    message: { type: 'string' },
    details: { type: 'object' },
  },
  required: ['code', 'message'],
};

/** A command request carries its metadata beside the payload (contracts bus/envelope.ts). */
function requestEnvelope(requestSchemaId: string): JsonObject {
  return {
    type: 'object',
    properties: {
      meta: {
        type: 'object',
        properties: {
          id: { type: 'string', description: 'Unique message id.' },
          replay: { type: 'boolean', description: 'The sender may resend this id; the receiver answers a resend with the first reply instead of acting twice.' },
          caller: { type: 'string', description: 'Caller context (CallerContext) as a compact JWS signed with the internal key; receivers verify it before acting and refuse the message otherwise.' },
          sender: { type: 'string', description: 'The STACK service that sent the request.' },
          traceparent: { type: 'string', description: 'W3C trace context of the sending span.' },
          tracestate: { type: 'string', description: 'W3C trace state, when the sender has one.' },
        },
        required: ['id', 'caller', 'sender'],
      },
      data: ref(pointer('components', 'schemas', requestSchemaId)),
    },
    required: ['meta', 'data'],
  };
}

/** A reply is `{ok: true, data}` or `{ok: false, error}` (contracts bus/envelope.ts). */
function replyEnvelope(responseSchemaId: string): JsonObject {
  return {
    oneOf: [
      {
        type: 'object',
        properties: { ok: { const: true }, data: ref(pointer('components', 'schemas', responseSchemaId)) },
        required: ['ok', 'data'],
      },
      {
        type: 'object',
        properties: { ok: { const: false }, error: ref(pointer('components', 'schemas', 'ErrorBody')) },
        required: ['ok', 'error'],
      },
    ],
  };
}

/** Builds the AsyncAPI 3.0 document of every command and event in the registry under `prefix`. */
export function buildAsyncApiDocument(options: AsyncApiOptions): AsyncApiDocument {
  const { prefix, version } = options;
  const channels: JsonObject = {};
  const operations: JsonObject = {};
  const messages: JsonObject = {};
  const schemas: JsonObject = { ErrorBody: ERROR_BODY_SCHEMA };

  for (const def of ALL_COMMANDS) {
    const id = commandId(def);
    const replyId = `${id}.reply`;
    const subject = commandSubject(prefix, def);
    const requestSchemaId = `${id}.request`;
    const responseSchemaId = `${id}.response`;
    schemas[requestSchemaId] = jsonSchema(def.request);
    schemas[responseSchemaId] = jsonSchema(def.response);
    schemas[`${replyId}.envelope`] = replyEnvelope(responseSchemaId);
    schemas[`${requestSchemaId}.envelope`] = requestEnvelope(requestSchemaId);

    messages[requestSchemaId] = {
      name: requestSchemaId,
      title: `${def.service} ${def.name} request`,
      summary: def.description,
      payload: ref(pointer('components', 'schemas', `${requestSchemaId}.envelope`)),
    };
    messages[replyId] = {
      name: replyId,
      title: `${def.service} ${def.name} reply`,
      summary: `The answer to ${subject}: the response, or the error the handler raised.`,
      payload: ref(pointer('components', 'schemas', `${replyId}.envelope`)),
    };

    channels[id] = {
      address: subject,
      title: `${def.service} ${def.name}`,
      description: `${def.description} Served by the queue group \`${queueGroup(prefix, def.service)}\`, so replicas share the load.`,
      messages: { [requestSchemaId]: ref(pointer('components', 'messages', requestSchemaId)) },
      'x-stack-service': def.service,
      'x-stack-queue-group': queueGroup(prefix, def.service),
    };
    // NATS replies go to the requester's own inbox subject, chosen per request: a dynamic address.
    channels[replyId] = {
      address: null,
      title: `${def.service} ${def.name} reply inbox`,
      description: "The requester's NATS inbox (the reply subject of the request).",
      messages: { [replyId]: ref(pointer('components', 'messages', replyId)) },
    };
    operations[id] = {
      action: 'send',
      title: `Request ${def.service} ${def.name}`,
      summary: def.description,
      channel: ref(pointer('channels', id)),
      messages: [ref(pointer('channels', id, 'messages', requestSchemaId))],
      reply: {
        channel: ref(pointer('channels', replyId)),
        messages: [ref(pointer('channels', replyId, 'messages', replyId))],
      },
      tags: [{ name: def.service }, { name: 'command' }],
    };
  }

  for (const def of ALL_EVENT_DEFS) {
    const id = eventId(def);
    const subject = eventSubject(prefix, def);
    const stream = streamName(prefix, def.stream);
    schemas[id] = jsonSchema(def.payload);
    messages[id] = {
      name: id,
      title: `${def.entity} ${def.verb}`,
      summary: def.description,
      headers: busHeaders({ jetStream: true }),
      payload: ref(pointer('components', 'schemas', id)),
    };
    channels[id] = {
      address: subject,
      title: `${def.entity} ${def.verb}`,
      description: `${def.description} Held durably by the JetStream stream \`${stream}\`.`,
      messages: { [id]: ref(pointer('components', 'messages', id)) },
      'x-stack-stream': stream,
    };
    operations[id] = {
      action: 'receive',
      title: `Receive ${def.entity} ${def.verb}`,
      summary: `Consume from stream ${stream} with a durable consumer filtered on ${subject}; acknowledge after handling, deduplicate by Stack-Msg-Id.`,
      channel: ref(pointer('channels', id)),
      messages: [ref(pointer('channels', id, 'messages', id))],
      tags: [{ name: 'event' }, { name: stream }],
    };
  }

  return {
    asyncapi: ASYNCAPI_VERSION,
    info: {
      title: 'STACK bus',
      version,
      description: [
        `Every subject STACK uses on NATS under the prefix \`${prefix}\` (STACK_BUS_PREFIX).`,
        'Commands are request/reply over core NATS; events live in JetStream streams.',
        `Payloads are JSON, at most ${MAX_BUS_PAYLOAD_BYTES} bytes; receivers validate them and ignore unknown fields.`,
      ].join(' '),
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
    },
    defaultContentType: 'application/json',
    servers: {
      nats: {
        host: options.natsHost ?? DEFAULT_NATS_HOST,
        protocol: 'nats',
        description: 'NATS with JetStream (NATS_URL). In production each service has its own user, limited to its own subjects, over TLS.',
      },
    },
    channels,
    operations,
    components: { schemas, messages },
  };
}

/** The document as pretty-printed JSON, to write to a file or serve as it is. */
export function asyncApiJson(prefix: string, version = '0.1.0'): string {
  return `${JSON.stringify(buildAsyncApiDocument({ prefix, version }), null, 2)}\n`;
}
