/**
 * `dropoff`: hand-offs per second. One hand-off is the full round trip over REST, each call with
 * the acting agent's passport: agent A creates a drop-off (JSON Schema, TTL), deposits a payload
 * (validated, sealed with its own data key), and agent B collects it (opened, ciphertext destroyed
 * by the statement that marks it collected) — three requests, each change written with its audit
 * entry and event in one statement through the outbox.
 * Also the two-call form (create with the payload, then collect). In the one-process shape on its
 * embedded defaults (`npm start`: PGlite, in-process bus and cache) and on the real Postgres, NATS
 * and Redis; issue 9's target (≥ 500 hand-offs/s) is checked against both.
 */
import { randomBytes } from 'node:crypto';

import { Pool } from 'undici';

import { CallerContextSigner } from '@stack/security';
import { generateStackSecrets, startOneProcessStack, type OneProcessStack } from '@stack/testing';

import type { Benchmark, BenchmarkContext } from './benchmark';
import type { LatencyRow } from './report-printer';
import { runConcurrent, summarize, type Operation } from './stats';

const TARGET_HANDOFFS_PER_SEC = 500;

const schema = { type: 'object', required: ['ticket', 'priority'], properties: { ticket: { type: 'string', pattern: '^[A-Z]+-[0-9]+$' }, priority: { enum: ['low', 'high'] }, notes: { type: 'string' } } };

async function json<T>(pool: Pool, token: string, method: 'GET' | 'POST', path: string, body?: unknown, expect = 200): Promise<T> {
  const r = await pool.request({ method, path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await r.body.text();
  if (r.statusCode !== expect) throw new Error(`${method} ${path} → ${r.statusCode} ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

async function agents(url: string, internalSecret: string): Promise<{ a: string; b: string; bId: string }> {
  const signer = new CallerContextSigner(Buffer.from(internalSecret, 'base64'));
  const owner = signer.sign({ issuer: 'auth', kind: 'member', operator_id: `op_bench_${randomBytes(3).toString('hex')}`, member_id: 'mem_bench', scopes: [] });
  const pool = new Pool(url, { connections: 2 });
  try {
    const reg = async (name: string) => (await json<{ id: string }>(pool, owner, 'POST', '/v1/agents/register', { name }, 201)).id;
    const issue = async (id: string) => (await json<{ token: string }>(pool, owner, 'POST', '/v1/passports/issue', { agent_id: id, ttl_seconds: 3600, intent_summary: 'bench' }, 201)).token;
    const aId = await reg('bench-writer');
    const bId = await reg('bench-reader');
    return { a: await issue(aId), b: await issue(bId), bId };
  } finally {
    await pool.close();
  }
}

export const dropoffBenchmark: Benchmark = {
  name: 'dropoff',
  summary: 'drop-off hand-offs (create + deposit + collect over REST with passports), one-process embedded vs real servers',
  flags: {
    handoffs: { kind: 'int', default: 600, doc: 'hand-offs per run' },
    concurrency: { kind: 'int', default: 16, doc: 'hand-offs in flight' },
    warmup: { kind: 'int', default: 50, doc: 'unrecorded hand-offs first' },
    'payload-bytes': { kind: 'int', default: 1024, doc: 'size of the notes field of each payload' },
    'max-seconds': { kind: 'int', default: 12, doc: 'time budget of each run' },
  },
  async run({ flags, out, command }: BenchmarkContext): Promise<void> {
    const n = flags.int('handoffs');
    const concurrency = flags.int('concurrency');
    const warmup = flags.int('warmup');
    const notes = 'x'.repeat(flags.int('payload-bytes'));
    const maxMs = flags.int('max-seconds') * 1000;
    out.heading('dropoff — schema-checked, sealed, exactly-once hand-offs between agents');
    out.line(`Each hand-off: A creates, A deposits (~${notes.length} B payload), B collects — REST, passports, each change one statement with its audit entry and event. c=${concurrency}.`);
    const rows: LatencyRow[] = [];
    const shapes: Array<{ label: string; embedded: boolean }> = [
      { label: 'one process, embedded (npm start)', embedded: true },
      { label: 'one process, Postgres+NATS+Redis', embedded: false },
    ];
    const targets: Array<{ label: string; perSec: number }> = [];
    for (const shape of shapes) {
      const { internalSecret } = generateStackSecrets();
      let stack: OneProcessStack | undefined;
      let pool: Pool | undefined;
      try {
        stack = await startOneProcessStack({ embedded: shape.embedded, env: { STACK_INTERNAL_SECRET: internalSecret }, logLevel: 'warn' });
        const who = await agents(stack.publicUrl, internalSecret);
        pool = new Pool(stack.publicUrl, { connections: concurrency * 2 });
        const p = pool;
        let seq = 0;
        const threeCalls: Operation = async () => {
          const payload = { ticket: `OPS-${++seq}`, priority: 'high', notes };
          const d = await json<{ id: string }>(p, who.a, 'POST', '/v1/dropoffs', { to_agent: who.bId, schema, ttl_seconds: 600 }, 201);
          await json(p, who.a, 'POST', `/v1/dropoffs/${d.id}/deposit`, { payload });
          const got = await json<{ payload: { ticket: string } }>(p, who.b, 'POST', `/v1/dropoffs/${d.id}/collect`);
          if (got.payload.ticket !== payload.ticket) throw new Error('collected someone else’s payload');
        };
        const twoCalls: Operation = async () => {
          const payload = { ticket: `OPS-${++seq}`, priority: 'low', notes };
          const d = await json<{ id: string }>(p, who.a, 'POST', '/v1/dropoffs', { to_agent: who.bId, schema, ttl_seconds: 600, payload }, 201);
          const got = await json<{ payload: { ticket: string } }>(p, who.b, 'POST', `/v1/dropoffs/${d.id}/collect`);
          if (got.payload.ticket !== payload.ticket) throw new Error('collected someone else’s payload');
        };
        const three = summarize(await runConcurrent(n, concurrency, threeCalls, { maxMs, warmup }));
        const two = summarize(await runConcurrent(n, concurrency, twoCalls, { maxMs }));
        rows.push({ labels: [shape.label, 'create + deposit + collect'], summary: three });
        rows.push({ labels: [shape.label, 'create(payload) + collect'], summary: two });
        targets.push({ label: shape.label, perSec: three.throughputPerSec });
      } finally {
        await pool?.close();
        await stack?.stop();
      }
    }
    out.latencyTable(['shape', 'hand-off'], rows);
    out.line('(req/s above = hand-offs per second; latencies are of one whole hand-off)');
    for (const t of targets) out.line(`Target (${t.label}): ${t.perSec.toFixed(0)} hand-offs/s vs ≥ ${TARGET_HANDOFFS_PER_SEC} — ${t.perSec >= TARGET_HANDOFFS_PER_SEC ? 'PASS' : 'FAIL'}`);
    out.reproduce(command);
  },
};
