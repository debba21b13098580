/**
 * A Kubernetes rolling update, simulated on the distributed harness: two replicas each of the
 * gateway and the credential proxy are replaced one at a time (a new replica ready and in
 * rotation first, then the old one out of rotation and sent SIGTERM, as maxSurge 1 /
 * maxUnavailable 0 with a readiness probe and preStop do) under steady load on public
 * endpoints of both — among them authenticated MCP tool calls, each written to the audit log —
 * and no request fails and no audit event is lost.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import type { ServiceName } from '@stack/contracts';
import { STACK_ENTRY, repoRoot, startDistributedStack, type DistributedStack, type StackProcess } from '@stack/testing';

interface Probe {
  name: string;
  method: 'GET' | 'POST';
  path: string;
  owner: ServiceName;
  body?: string;
  headers?: Record<string, string>;
  /** A successful answer is an audited tool call. */
  audited?: boolean;
}

const TOOL = 'stack_list_services';

function mcpProbe(apiKey: string): Probe {
  return {
    name: `POST /mcp ${TOOL}`,
    method: 'POST',
    path: '/mcp',
    owner: 'mcp-gateway',
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: TOOL, arguments: {} } }),
    headers: { authorization: `Bearer ${apiKey}`, accept: 'application/json, text/event-stream' },
    audited: true,
  };
}

// Public endpoints that exist today; a 404 from the owning service is an answer, a 502/503/504
// or a connection error from the proxy is a failed request.
const PROBES: readonly Probe[] = [
  { name: 'GET /v1/openapi.json', method: 'GET', path: '/v1/openapi.json', owner: 'mcp-gateway' },
  { name: 'GET /v1/services', method: 'GET', path: '/v1/services', owner: 'credential-proxy' },
  { name: 'GET /v1/proxy/…', method: 'GET', path: '/v1/proxy/github/user', owner: 'credential-proxy' },
  { name: 'POST /v1/proxy/…', method: 'POST', path: '/v1/proxy/github/repos', owner: 'credential-proxy', body: '{"name":"rolling"}' },
];

interface Counts {
  total: number;
  failed: number;
  /** Tool calls answered with a result: each must be in the audit log. */
  toolCalls: number;
  byProbe: Record<string, { answered: number; failed: number; statuses: Record<string, number> }>;
  byInstance: Record<string, number>;
  failures: string[];
}

function startLoad(publicUrl: string, workers: number, probes: readonly Probe[]): { stop(): Promise<Counts> } {
  const counts: Counts = { total: 0, failed: 0, toolCalls: 0, byProbe: {}, byInstance: {}, failures: [] };
  for (const p of probes) counts.byProbe[p.name] = { answered: 0, failed: 0, statuses: {} };
  let running = true;
  const worker = async (offset: number): Promise<void> => {
    for (let i = offset; running; i += 1) {
      const probe = probes[i % probes.length];
      const entry = counts.byProbe[probe.name];
      counts.total += 1;
      try {
        const res = await fetch(`${publicUrl}${probe.path}`, {
          method: probe.method,
          body: probe.body,
          headers: { ...(probe.body ? { 'content-type': 'application/json' } : {}), ...probe.headers },
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        if (probe.audited && res.status === 200) {
          const result = (JSON.parse(text) as { result?: { isError?: boolean } }).result;
          if (result && !result.isError) counts.toolCalls += 1;
          else counts.failures.push(`${probe.name}: tool error ${text.slice(0, 200)}`);
        }
        entry.statuses[res.status] = (entry.statuses[res.status] ?? 0) + 1;
        const servedBy = res.headers.get('x-stack-services');
        const instance = res.headers.get('x-stack-instance') ?? '?';
        if ([502, 503, 504].includes(res.status) || servedBy !== probe.owner) {
          entry.failed += 1;
          counts.failed += 1;
          counts.failures.push(`${probe.name}: ${res.status} from ${servedBy ?? 'the proxy'}`);
        } else {
          entry.answered += 1;
          counts.byInstance[instance] = (counts.byInstance[instance] ?? 0) + 1;
        }
      } catch (err) {
        entry.failed += 1;
        counts.failed += 1;
        counts.failures.push(`${probe.name}: ${(err as Error).message}`);
      }
    }
  };
  const all = Array.from({ length: workers }, (_, i) => worker(i));
  return {
    async stop() {
      running = false;
      await Promise.all(all);
      return counts;
    },
  };
}

/** `stack admin create-owner` then `create-api-key`, as an operator sets up a headless client. */
async function ownerApiKey(stack: DistributedStack): Promise<string> {
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: stack.database.url, STACK_INTERNAL_SECRET: stack.internalSecret, STACK_MASTER_KEYS: stack.masterKeys, STACK_PUBLIC_URL: stack.publicUrl };
  const run = (args: string[]) => promisify(execFile)(process.execPath, [join(repoRoot(), STACK_ENTRY), 'admin', ...args], { cwd: repoRoot(), env, timeout: 120_000 });
  await run(['create-owner', '--email', 'ops@rolling.example', '--password', 'rolling-owner-password-1', '--operator-name', 'Rolling']);
  return (await run(['create-api-key', '--email', 'ops@rolling.example', '--name', 'load'])).stdout.trim();
}

/** Audit entries of successful tool calls, read page by page through the public REST API. */
async function auditedToolCalls(publicUrl: string, apiKey: string): Promise<number> {
  let n = 0;
  let cursor: string | undefined;
  do {
    const q = new URLSearchParams({ action: `tool.${TOOL}`, outcome: 'success', limit: '500', ...(cursor ? { cursor } : {}) });
    const res = await fetch(`${publicUrl}/v1/audit?${q}`, { headers: { authorization: `Bearer ${apiKey}` } });
    const page = (await res.json()) as { items: unknown[]; next_cursor?: string };
    if (res.status !== 200) throw new Error(`GET /v1/audit: ${res.status} ${JSON.stringify(page)}`);
    n += page.items.length;
    cursor = page.next_cursor;
  } while (cursor);
  return n;
}

describe('rolling restart of the gateway and the proxy', () => {
  let stack: DistributedStack;
  let apiKey: string;

  beforeAll(async () => {
    stack = await startDistributedStack({ replicas: { 'mcp-gateway': 2, 'credential-proxy': 2 }, env: { STACK_MCP_RATE_LIMIT: '1000000:1000000' }, logLevel: 'warn' });
    apiKey = await ownerApiKey(stack);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('replaces every replica one at a time under steady load: no request fails, no audit event is lost', async () => {
    const load = startLoad(stack.publicUrl, 5, [...PROBES, mcpProbe(apiKey)]);
    const rolled: { service: ServiceName; old: string; replacement: string; exitCode: number | null }[] = [];
    let counts: Counts;
    try {
      // Let the load settle on the old replicas first.
      await new Promise((r) => setTimeout(r, 1000));
      for (const service of ['mcp-gateway', 'credential-proxy'] as const) {
        const old = stack.processes.filter((p) => p.service === service);
        expect(old).toHaveLength(2);
        for (const replica of old) {
          // maxSurge 1: the new pod is ready (readiness probe) and in rotation first...
          const replacement: StackProcess = await stack.addReplica(service);
          await new Promise((r) => setTimeout(r, 500));
          // ...then the old one leaves rotation, and after that gets SIGTERM (preStop, then drain).
          const exitCode = await stack.removeReplica(replica, { timeoutMs: 20_000 });
          rolled.push({ service, old: replica.instanceId, replacement: replacement.instanceId, exitCode });
        }
      }
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      counts = await load.stop();
    }

    process.stdout.write(
      `\nrolling restart: ${counts.total} requests, ${counts.total - counts.failed} answered, ${counts.failed} failed; ${counts.toolCalls} audited tool calls\n` +
        `${Object.entries(counts.byProbe).map(([name, c]) => `  ${name.padEnd(22)} answered ${c.answered}, failed ${c.failed}, statuses ${JSON.stringify(c.statuses)}`).join('\n')}\n` +
        `  served by instance: ${JSON.stringify(counts.byInstance)}\n` +
        `  replaced: ${rolled.map((r) => `${r.old} → ${r.replacement} (old exited ${r.exitCode})`).join(', ')}\n` +
        `  reproduce: npx jest apps/e2e/src/k8s-rolling-restart\n`,
    );

    expect(counts.failures.slice(0, 20)).toEqual([]);
    expect(counts.failed).toBe(0);
    for (const [name, c] of Object.entries(counts.byProbe)) expect({ name, answeredSome: c.answered > 20 }).toEqual({ name, answeredSome: true });
    // Every old replica drained and exited cleanly; every replacement served traffic.
    expect(rolled.map((r) => r.exitCode)).toEqual([0, 0, 0, 0]);
    for (const r of rolled) {
      expect({ old: r.old, served: (counts.byInstance[r.old] ?? 0) > 0 }).toEqual({ old: r.old, served: true });
      expect({ replacement: r.replacement, served: (counts.byInstance[r.replacement] ?? 0) > 0 }).toEqual({ replacement: r.replacement, served: true });
    }
    expect(stack.processes.filter((p) => p.service === 'mcp-gateway' || p.service === 'credential-proxy').map((p) => p.replica).sort()).toEqual([3, 3, 4, 4]);

    // No audit event lost: every tool call answered during the roll is in the log (appended asynchronously).
    expect(counts.toolCalls).toBeGreaterThan(20);
    let logged = 0;
    for (let i = 0; i < 100 && logged < counts.toolCalls; i++) {
      logged = await auditedToolCalls(stack.publicUrl, apiKey);
      if (logged < counts.toolCalls) await new Promise((r) => setTimeout(r, 200));
    }
    process.stdout.write(`  audit: ${logged} entries for ${counts.toolCalls} tool calls\n`);
    expect(logged).toBe(counts.toolCalls);
  });
});
