/**
 * `bus`: the request/reply round trip through STACK's bus library against the raw `nats`
 * client on the same NATS server, and the in-process bus (the one-process shape) beside them.
 *
 * Both NATS variants use two connections in this process — one answers in a queue group, the
 * other asks — so every request crosses the server. Request and reply bytes are the same in
 * both: the raw responder answers with the library's reply envelope. What the library adds is
 * therefore its own work: the request envelope, the signed caller context, payload validation,
 * tracing, the replay cache. A fourth variant, the raw client sending the library's envelope
 * (message id, sender, a signed caller context of the same length beside the payload), splits
 * that overhead into what the wire format costs and what the library's code costs. Variants run in
 * interleaved rounds so that a change in the machine's load during the run falls on all alike.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';

import { connect, type NatsConnection } from 'nats';

import { connectNatsBus, createInProcessBus, type BusConnection } from '@stack/bus';
import { SYSTEM_COMMANDS, commandSubject, queueGroup, type ResponseOf } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';
import { uniqueName } from '@stack/testing';

import type { Benchmark, BenchmarkContext } from './benchmark';
import { formatRatio, formatUs, type LatencyRow } from './report-printer';
import { mergeRuns, runConcurrent, summarize, type LatencySummary, type Operation, type RunResult } from './stats';

/** The target of issue 2: the library adds at most 20 % to the raw client's p50. */
const TARGET_P50_RATIO = 1.2;

const PING = SYSTEM_COMMANDS.audit.ping;
type PingResponse = ResponseOf<typeof PING>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Variant {
  label: string;
  call: Operation;
}

interface Mode {
  label: string;
  requests: number;
  concurrency: number;
}

function pingAnswer(instance: string): PingResponse {
  return { service: 'audit', instance, pid: process.pid, at: new Date().toISOString() };
}

/** Until a fresh subscription has reached the server a request may find no responder; ask until one answers. */
async function untilServed(call: Operation, what: string): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await call(-1);
      return;
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${what} never answered: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
}

interface RawOptions {
  servers: string;
  prefix: string;
  timeoutMs: number;
  /** Send the library's request envelope instead of the bare payload (its values made the same way, none of them checked). */
  envelope?: { signer: CallerContextSigner };
}

/** Raw `nats`: a queue-group subscriber that decodes the JSON request and answers JSON, and a plain `nc.request`. */
async function rawVariant({ servers, prefix, timeoutMs, envelope }: RawOptions): Promise<{ variant: Variant; connections: NatsConnection[]; version: string }> {
  const tag = envelope ? 'raw-env' : 'raw';
  const responder = await connect({ servers, name: `bench-${tag}-responder-${process.pid}` });
  const requester = await connect({ servers, name: `bench-${tag}-requester-${process.pid}` });
  const subject = commandSubject(prefix, PING);
  const instance = `bench-raw-${process.pid}`;
  responder.subscribe(subject, {
    queue: queueGroup(prefix, PING.service),
    callback: (err, msg) => {
      if (err) return;
      JSON.parse(decoder.decode(msg.data));
      msg.respond(encoder.encode(JSON.stringify({ ok: true, data: pingAnswer(instance) })));
    },
  });
  await responder.flush();
  const payload = { from: 'bench' };
  const bare = encoder.encode(JSON.stringify(payload));
  const caller = envelope?.signer.sign({ issuer: 'passport', kind: 'system', scopes: [] });
  const call: Operation = async () => {
    const body = caller === undefined ? bare : encoder.encode(JSON.stringify({ meta: { id: randomUUID(), caller, sender: 'passport' }, data: payload }));
    const reply = await requester.request(subject, body, { timeout: timeoutMs });
    const envelope = JSON.parse(decoder.decode(reply.data)) as { ok: boolean; data: PingResponse };
    if (!envelope.ok) throw new Error('raw responder answered an error');
    return envelope.data;
  };
  return { variant: { label: envelope ? 'raw nats + same envelope' : 'raw nats client', call }, connections: [responder, requester], version: responder.info?.version ?? 'unknown' };
}

export const busBenchmark: Benchmark = {
  name: 'bus',
  summary: 'request/reply round trip: @stack/bus over NATS vs the raw nats client, and the in-process bus',
  flags: {
    nats: { kind: 'string', default: process.env.NATS_URL ?? 'nats://127.0.0.1:4222', doc: 'NATS server URL ($NATS_URL when set)' },
    requests: { kind: 'int', default: 5000, doc: 'measured sequential requests per variant' },
    'concurrent-requests': { kind: 'int', default: 20000, doc: 'measured requests per variant at --concurrency' },
    concurrency: { kind: 'int', default: 32, doc: 'requests in flight at once in the concurrent mode' },
    warmup: { kind: 'int', default: 500, doc: 'unrecorded requests per variant and mode before measuring' },
    rounds: { kind: 'int', default: 4, doc: 'interleaved rounds the measured requests are split into' },
    'max-seconds': { kind: 'int', default: 20, doc: 'time budget per variant and mode; a slower run stops early and says so' },
  },

  async run({ flags, out, command }: BenchmarkContext): Promise<void> {
    const servers = flags.string('nats');
    const rounds = Math.max(1, flags.int('rounds'));
    const warmup = flags.int('warmup');
    const maxMs = flags.int('max-seconds') * 1000;
    const timeoutMs = 5000;
    const modes: Mode[] = [
      { label: 'sequential', requests: flags.int('requests'), concurrency: 1 },
      { label: `concurrency ${flags.int('concurrency')}`, requests: flags.int('concurrent-requests'), concurrency: Math.max(1, flags.int('concurrency')) },
    ].filter((m) => m.requests > 0);

    // Unique prefixes: parallel runs and test suites on the same server never answer each other.
    const prefix = uniqueName('bench');
    const internalSecret = randomBytes(32);
    const closers: (() => Promise<unknown>)[] = [];
    try {
      const raw = await rawVariant({ servers, prefix: `${prefix}_raw`, timeoutMs }).catch((err: unknown) => {
        throw new Error(`cannot reach NATS at ${servers}: ${err instanceof Error ? err.message : String(err)}`);
      });
      closers.push(...raw.connections.map((c) => () => c.close()));
      const rawEnvelope = await rawVariant({ servers, prefix: `${prefix}_hdr`, timeoutMs, envelope: { signer: new CallerContextSigner(internalSecret) } });
      closers.push(...rawEnvelope.connections.map((c) => () => c.close()));

      const common = { prefix: `${prefix}_lib`, internalSecret, timeoutMs };
      const serving: BusConnection = await connectNatsBus({ ...common, servers, instanceId: `bench-lib-responder-${process.pid}`, name: `bench-lib-responder-${process.pid}` });
      closers.push(() => serving.close());
      const asking: BusConnection = await connectNatsBus({ ...common, servers, instanceId: `bench-lib-requester-${process.pid}`, name: `bench-lib-requester-${process.pid}` });
      closers.push(() => asking.close());
      serving.forService('audit').handle(PING, () => pingAnswer(`bench-lib-${process.pid}`));
      const libraryBus = asking.forService('passport');
      const library: Variant = { label: '@stack/bus over NATS', call: () => libraryBus.request(PING, { from: 'bench' }) };

      const embedded = createInProcessBus({ prefix: `${prefix}_mem`, internalSecret, timeoutMs, instanceId: `bench-mem-${process.pid}` });
      closers.push(() => embedded.close());
      embedded.forService('audit').handle(PING, () => pingAnswer(`bench-mem-${process.pid}`));
      const embeddedBus = embedded.forService('passport');
      const inProcess: Variant = { label: 'in-process bus (embedded)', call: () => embeddedBus.request(PING, { from: 'bench' }) };

      const variants = [raw.variant, rawEnvelope.variant, library, inProcess];
      for (const v of variants) await untilServed(v.call, v.label);

      const requestBytes = encoder.encode(JSON.stringify({ from: 'bench' })).length;
      const replyBytes = encoder.encode(JSON.stringify({ ok: true, data: pingAnswer(`bench-raw-${process.pid}`) })).length;
      out.heading('bus — request/reply round trip');
      out.line(`NATS ${servers} (server ${raw.version}); node ${process.version}; ${cpus().length} CPUs; load average ${loadavg()[0].toFixed(2)}`);
      out.line(`Payload: request ${requestBytes} B, reply ${replyBytes} B (same bytes for the raw client and the library); ${rounds} interleaved round(s), ${warmup} warm-up requests per variant and mode.`);
      out.line();

      const results = new Map<string, LatencySummary>();
      const rows: LatencyRow[] = [];
      for (const mode of modes) {
        for (const v of variants) await runConcurrent(Math.max(1, warmup), mode.concurrency, v.call);
        const perVariant = new Map<string, RunResult[]>(variants.map((v) => [v.label, []]));
        const perRound = Math.ceil(mode.requests / rounds);
        for (let r = 0; r < rounds; r++) {
          // Rotate the order each round so no variant always runs first (or right after a slow one).
          const order = variants.map((_, i) => variants[(i + r) % variants.length]);
          for (const v of order) perVariant.get(v.label)?.push(await runConcurrent(perRound, mode.concurrency, v.call, { maxMs: maxMs / rounds }));
        }
        for (const v of variants) {
          const summary = summarize(mergeRuns(perVariant.get(v.label) ?? []));
          results.set(`${mode.label}/${v.label}`, summary);
          rows.push({ labels: [mode.label, v.label], summary });
        }
      }
      out.latencyTable(['mode', 'client'], rows);

      out.line();
      out.line(`Library / raw (target: the library adds at most ${Math.round((TARGET_P50_RATIO - 1) * 100)} % to the raw client's p50)`);
      out.table(
        [
          { header: 'mode', value: (m: Mode) => m.label },
          { header: 'p50 ratio', align: 'right', value: (m: Mode) => formatRatio(ratio(results, m, library, raw.variant, 'p50Us')) },
          { header: 'p99 ratio', align: 'right', value: (m: Mode) => formatRatio(ratio(results, m, library, raw.variant, 'p99Us')) },
          { header: 'added p50 µs', align: 'right', value: (m: Mode) => formatUs(diff(results, m, library, raw.variant, 'p50Us')) },
          { header: 'of it envelope µs', align: 'right', value: (m: Mode) => formatUs(diff(results, m, rawEnvelope.variant, raw.variant, 'p50Us')) },
          { header: 'throughput ratio', align: 'right', value: (m: Mode) => formatRatio(ratio(results, m, library, raw.variant, 'throughputPerSec')) },
          { header: 'target', value: (m: Mode) => (ratio(results, m, library, raw.variant, 'p50Us') <= TARGET_P50_RATIO ? 'PASS' : 'FAIL') },
        ],
        modes,
      );
      out.line(`Load average at the end: ${loadavg()[0].toFixed(2)} (other work on the machine skews figures; compare ratios from one run)`);
      out.reproduce(command);
    } finally {
      for (const close of closers.reverse()) await close().catch(() => undefined);
    }
  },
};

type Figure = 'p50Us' | 'p99Us' | 'throughputPerSec';

function figure(results: Map<string, LatencySummary>, mode: Mode, variant: Variant, key: Figure): number {
  return results.get(`${mode.label}/${variant.label}`)?.[key] ?? Number.NaN;
}

function ratio(results: Map<string, LatencySummary>, mode: Mode, a: Variant, b: Variant, key: Figure): number {
  return figure(results, mode, a, key) / figure(results, mode, b, key);
}

function diff(results: Map<string, LatencySummary>, mode: Mode, a: Variant, b: Variant, key: Figure): number {
  return figure(results, mode, a, key) - figure(results, mode, b, key);
}
