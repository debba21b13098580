/**
 * The generated AsyncAPI document must be valid for the AsyncAPI ecosystem's own parser and
 * hold exactly the registry's commands and events; the registry's subjects must be unique.
 */
import { DiagnosticSeverity, Parser } from '@asyncapi/parser';

import { commandSubject, eventSubject, streamName } from '../bus/definitions';
import { BUS_HEADERS } from '../bus/headers';
import { ALL_COMMANDS, ALL_EVENT_DEFS } from '../bus/registry';
import { SYSTEM_COMMANDS } from '../bus/system';
import { asyncApiJson, buildAsyncApiDocument } from './asyncapi';

const PREFIX = 'docs_t1';

describe('AsyncAPI document', () => {
  const json = asyncApiJson(PREFIX, '9.9.9');
  // Building the parser (its Spectral rule set) is the slow part: one parser, one parse of the document.
  const parser = new Parser();
  let parsed: Awaited<ReturnType<Parser['parse']>>;
  beforeAll(async () => {
    parsed = await parser.parse(json);
  });

  it('parses with @asyncapi/parser without error or warning diagnostics', async () => {
    const { document, diagnostics } = parsed;
    // Information and hints are allowed (the parser suggests the newer 3.1.0); errors and warnings are not.
    const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning);
    expect(errors.map((d) => `${d.code}: ${d.message} at ${d.path.join('.')}`)).toEqual([]);
    expect(document).toBeDefined();
    expect(document!.version()).toBe('3.0.0');
    expect(document!.info().version()).toBe('9.9.9');
  });

  it('is checked for real: a document with a dangling reference gets error diagnostics', async () => {
    const broken = JSON.parse(json) as { operations: Record<string, { channel: { $ref: string } }> };
    const first = Object.keys(broken.operations)[0];
    broken.operations[first].channel = { $ref: '#/channels/no-such-channel' };
    const { diagnostics } = await parser.parse(JSON.stringify(broken));
    expect(diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length).toBeGreaterThan(0);
  });

  it('has one channel and operation per command and event, with a reply for each command', () => {
    const { document } = parsed;
    const doc = document!;
    const commandCount = ALL_COMMANDS.length;
    const eventCount = ALL_EVENT_DEFS.length;

    expect(doc.operations().length).toBe(commandCount + eventCount);
    expect(doc.operations().filter((op) => op.action() === 'send').length).toBe(commandCount);
    expect(doc.operations().filter((op) => op.action() === 'receive').length).toBe(eventCount);
    // A subject channel per command and event, plus a dynamic reply channel (the requester's inbox) per command.
    expect(doc.channels().length).toBe(2 * commandCount + eventCount);
    // Request and reply per command, one message per event.
    expect(doc.messages().length).toBe(2 * commandCount + eventCount);

    const addresses = doc
      .channels()
      .all()
      .map((c) => c.address())
      .filter((a): a is string => typeof a === 'string');
    const expected = [...ALL_COMMANDS.map((c) => commandSubject(PREFIX, c)), ...ALL_EVENT_DEFS.map((e) => eventSubject(PREFIX, e))];
    expect([...addresses].sort()).toEqual([...expected].sort());

    for (const op of doc.operations().filter((o) => o.action() === 'send')) {
      const reply = op.reply();
      expect(reply).toBeDefined();
      expect(reply!.messages().length).toBe(1);
    }
    expect(doc.servers().get('nats')?.protocol()).toBe('nats');
  });

  it("takes payload schemas from the contracts' TypeBox schemas, without symbol keys", () => {
    const doc = buildAsyncApiDocument({ prefix: PREFIX, version: '1' }) as {
      components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
    };
    const ping = doc.components.schemas['v1.audit.ping.response'];
    expect(Object.keys(ping.properties ?? {}).sort()).toEqual(['at', 'instance', 'pid', 'service']);
    expect(ping.required).toEqual(expect.arrayContaining(['service', 'instance', 'pid', 'at']));
    expect(Object.getOwnPropertySymbols(ping)).toEqual([]);
    // The round trip must keep JSON Schema content (the literal union of service names).
    expect(JSON.stringify(ping.properties?.service)).toContain('"credential-proxy"');
  });

  it('documents the headers of every event, the envelope of every request, and the stream of every event', () => {
    const { document } = parsed;
    const doc = document!;
    const requestIds = new Set(ALL_COMMANDS.map((c) => `${c.service}.${c.name}.request`));
    for (const msg of doc.messages().all()) {
      if (msg.id().endsWith('.reply')) continue;
      if (requestIds.has(msg.id()) || msg.id().endsWith('.request')) {
        const meta = (msg.payload()?.properties() ?? {}).meta;
        expect({ message: msg.id(), meta: Object.keys(meta?.properties() ?? {}).sort() }).toEqual({ message: msg.id(), meta: ['caller', 'id', 'replay', 'sender', 'traceparent', 'tracestate'] });
        continue;
      }
      const headers = msg.headers()?.properties() ?? {};
      for (const name of [BUS_HEADERS.messageId, BUS_HEADERS.traceparent, BUS_HEADERS.caller, BUS_HEADERS.sender]) {
        expect({ message: msg.id(), header: name, present: name in headers }).toEqual({ message: msg.id(), header: name, present: true });
      }
    }
    const raw = JSON.parse(json) as { channels: Record<string, { address: string | null; 'x-stack-stream'?: string }> };
    for (const e of ALL_EVENT_DEFS) {
      const channel = Object.values(raw.channels).find((c) => c.address === eventSubject(PREFIX, e));
      expect(channel?.['x-stack-stream']).toBe(streamName(PREFIX, e.stream));
    }
  });

  it('is the same for the same input (no clock, no randomness)', () => {
    expect(asyncApiJson(PREFIX, '9.9.9')).toBe(json);
  });
});

describe('bus registry', () => {
  it('gives every command and event its own subject', () => {
    const subjects = [...ALL_COMMANDS.map((c) => commandSubject('stack', c)), ...ALL_EVENT_DEFS.map((e) => eventSubject('stack', e))];
    const dupes = subjects.filter((s, i) => subjects.indexOf(s) !== i);
    expect(dupes).toEqual([]);
    expect(subjects.length).toBeGreaterThan(0);
  });

  it('spells subjects and stream names as DESIGN.md §8 says', () => {
    expect(commandSubject('stack', SYSTEM_COMMANDS.audit.ping)).toBe('stack.v1.audit.ping');
    expect(streamName('stack', 'EVENTS')).toBe('STACK_EVENTS');
    expect(streamName('stack', 'REVOCATIONS')).toBe('STACK_REVOCATIONS');
    expect(streamName('t-1', 'AUDIT')).toBe('T_1_AUDIT');
  });
});
