/**
 * `mcp`: the `tools/call` round trip of a cheap read-only tool (`stack_verify_passport`, which
 * the passport service answers from memory) through /mcp — JSON-RPC over HTTP, the API key,
 * scope check, rate limit, the bus to the owning service, the audit record — at concurrency 1
 * and 32, in the one-process shape and on the distributed topology, beside the same command
 * sent straight to the owning service over the bus (distributed only: the one process's bus
 * cannot be reached from outside it). The caller is a member with an API key made by
 * `stack admin create-api-key`, as a headless client would have.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { connectNatsBus } from '@stack/bus';
import { PASSPORT_COMMANDS, type CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';
import { STACK_ENTRY, repoRoot, startDistributedStack, startOneProcessStack } from '@stack/testing';

import type { Benchmark, BenchmarkContext } from './benchmark';
import type { LatencyRow } from './report-printer';
import { runConcurrent, runSequential, summarize, type Operation } from './stats';

/** Targets of issue 4 on this 2-core machine. */
const TARGET_P50_US = 5000;
const TARGET_CALLS_PER_S = 1000;

interface Target {
  publicUrl: string;
  internalSecret: string;
}

/** An agent's passport, made through the passport REST API with an operator's signed caller context. */
async function agentPassport(t: Target): Promise<{ token: string; operatorId: string }> {
  const signer = new CallerContextSigner(Buffer.from(t.internalSecret, 'base64'));
  const operatorId = `op_bench_${randomBytes(4).toString('hex')}`;
  const member: CallerContext = { issuer: 'auth', kind: 'member', operator_id: operatorId, member_id: `mem_${randomBytes(4).toString('hex')}`, scopes: ['stack:passports', 'stack:admin'] };
  const call = async (path: string, body: unknown) => {
    const res = await fetch(`${t.publicUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${signer.sign(member)}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const agent = await call('/v1/agents/register', { name: `bench-${randomBytes(3).toString('hex')}` });
  const passport = await call('/v1/passports/issue', { agent_id: agent.id, ttl_seconds: 3600, intent_summary: 'benchmark' });
  return { token: String(passport.token), operatorId };
}

/** `stack admin create-owner` then `create-api-key`, as an operator sets up a headless client. */
async function ownerApiKey(env: Record<string, string>): Promise<string> {
  const run = (args: string[]) => promisify(execFile)(process.execPath, [join(repoRoot(), STACK_ENTRY), 'admin', ...args], { cwd: repoRoot(), env: { PATH: process.env.PATH ?? '', ...env }, timeout: 120_000 });
  const email = `bench-${randomBytes(3).toString('hex')}@bench.example`;
  await run(['create-owner', '--email', email, '--password', 'bench-owner-password-1', '--operator-name', 'Bench']);
  return (await run(['create-api-key', '--email', email, '--name', 'bench'])).stdout.trim();
}

function toolCall(publicUrl: string, apiKey: string, passport: string): Operation {
  let id = 0;
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
  return async () => {
    const res = await fetch(`${publicUrl}/mcp`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'tools/call', params: { name: 'stack_verify_passport', arguments: { token: passport } } }) });
    const body = (await res.json()) as { result?: { isError?: boolean } };
    if (res.status !== 200 || !body.result || body.result.isError) throw new Error(`tools/call failed: ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
  };
}

export const mcpBenchmark: Benchmark = {
  name: 'mcp',
  summary: 'tools/call round trip (stack_verify_passport) through /mcp, one process and distributed, beside the same command straight over the bus',
  flags: {
    sequential: { kind: 'int', default: 1000, doc: 'measured calls at concurrency 1' },
    concurrent: { kind: 'int', default: 4000, doc: 'measured calls at --concurrency' },
    concurrency: { kind: 'int', default: 32, doc: 'calls in flight at once' },
    warmup: { kind: 'int', default: 200, doc: 'unmeasured calls before each run' },
  },
  async run({ flags, out, command }: BenchmarkContext): Promise<void> {
    const n1 = flags.int('sequential');
    const nC = flags.int('concurrent');
    const c = flags.int('concurrency');
    const warmup = flags.int('warmup');
    const rows: LatencyRow[] = [];
    const env = { STACK_MCP_RATE_LIMIT: '100000000:100000000' };
    out.heading('mcp — tools/call round trip (stack_verify_passport)');
    out.line(`node ${process.version}; ${cpus().length} CPUs; load average ${loadavg()[0]!.toFixed(2)}`);

    const measure = async (label: string, op: Operation) => {
      rows.push({ labels: [label, 'concurrency 1'], summary: summarize(await runSequential(n1, op, { warmup })) });
      rows.push({ labels: [label, `concurrency ${c}`], summary: summarize(await runConcurrent(nC, c, op, { warmup })) });
    };

    const internalSecret = randomBytes(32).toString('base64');
    const dataDir = await mkdtemp(join(tmpdir(), 'stack-bench-mcp-'));
    try {
      // The embedded database belongs to one process at a time: set up the account first.
      const apiKey = await ownerApiKey({ STACK_DATA_DIR: dataDir, STACK_INTERNAL_SECRET: internalSecret });
      const one = await startOneProcessStack({ env: { ...env, STACK_INTERNAL_SECRET: internalSecret, STACK_DATA_DIR: dataDir }, logLevel: 'warn' });
      try {
        const { token } = await agentPassport({ publicUrl: one.publicUrl, internalSecret });
        await measure('one process (embedded), /mcp', toolCall(one.publicUrl, apiKey, token));
      } finally {
        await one.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }

    const dist = await startDistributedStack({ env, logLevel: 'warn' });
    try {
      const apiKey = await ownerApiKey({ DATABASE_URL: dist.database.url, STACK_INTERNAL_SECRET: dist.internalSecret, STACK_MASTER_KEYS: dist.masterKeys, STACK_PUBLIC_URL: dist.publicUrl });
      const { token, operatorId } = await agentPassport({ publicUrl: dist.publicUrl, internalSecret: dist.internalSecret });
      await measure('distributed, /mcp via reverse proxy', toolCall(dist.publicUrl, apiKey, token));
      const bus = await connectNatsBus({ servers: dist.natsUrl, prefix: dist.busPrefix, internalSecret: Buffer.from(dist.internalSecret, 'base64'), timeoutMs: 5000, instanceId: 'bench' });
      try {
        const caller: CallerContext = { issuer: 'mcp-gateway', kind: 'member', operator_id: operatorId, member_id: 'mem_bench', scopes: ['stack:passports'] };
        await measure('distributed, same command over the bus', async () => {
          await bus.forService('mcp-gateway').request(PASSPORT_COMMANDS.verifyPassport, { token }, { caller });
        });
      } finally {
        await bus.close();
      }
    } finally {
      await dist.stop();
    }

    out.latencyTable(['path', 'mode'], rows);
    const oneSeq = rows[0]!.summary;
    const oneConc = rows[1]!.summary;
    out.line(`Targets (one process): p50 at concurrency 1 ≤ ${TARGET_P50_US / 1000} ms → ${(oneSeq.p50Us / 1000).toFixed(2)} ms ${oneSeq.p50Us <= TARGET_P50_US ? 'PASS' : 'FAIL'}; ≥ ${TARGET_CALLS_PER_S} calls/s → ${Math.round(oneConc.throughputPerSec)} calls/s at concurrency ${c} ${oneConc.throughputPerSec >= TARGET_CALLS_PER_S ? 'PASS' : 'FAIL'}`);
    out.reproduce(command);
  },
};
