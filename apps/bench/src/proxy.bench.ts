/**
 * `proxy`: what the credential proxy adds to an upstream call. The same small GET answered by a
 * loopback upstream (its own process) is sent four ways:
 *   direct          undici straight to the upstream;
 *   floor           through a minimal pass-through proxy (plain Node `http` + undici, no checks, its
 *                   own process): the floor for any Node proxy on this machine;
 *   stack 1-proc    `POST /v1/proxy` of STACK in the one-process shape (embedded Postgres,
 *                   in-process bus and cache: `npm start`), its own process;
 *   stack distrib.  `POST /v1/proxy` of a credential-proxy process on the real Postgres, NATS and
 *                   Redis (the distributed shape), straight to the process; passport and audit
 *                   run beside it, so the audit records are appended as they are in production.
 * Each at a fixed rate (open loop, `--rate` requests/s) and at saturation (closed loop,
 * `--concurrency` in flight), rounds interleaved. STACK runs the whole pipeline on every call:
 * connection lookup, canonical request, scope rules, allowed hosts, network guard, audit record
 * (acknowledged), vault decrypt (kept with its row after the first call), injection, scrub. The
 * caller is an agent with a passport granting read on the connection: the passport authenticates
 * the request and is checked as the call's authority (signature, audience, expiry, revocation),
 * as a script or an MCP client holding it would call.
 *
 * `--sustain-seconds N` adds a long saturation run of the one-process shape, reported window by
 * window with the process's resident memory: what a short run cannot show (state that grows with
 * every call and slows the next ones, memory that is never given back).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';

import { Pool } from 'undici';

import { CallerContextSigner } from '@stack/security';
import { startDistributedStack, startOneProcessStack, type DistributedStack, type OneProcessStack } from '@stack/testing';

import type { Benchmark, BenchmarkContext } from './benchmark';
import { formatRatio, formatUs, type LatencyRow } from './report-printer';
import { cpuSeconds, processesNamed, QuietGate, rssMiB, threadCpuSeconds } from './quiesce';
import { mergeRuns, runConcurrent, summarize, type Operation, type RunResult } from './stats';

/** Issue 6's targets, in the one-process mode against the floor. */
const TARGET_ADDED_P50_US = 1000;
const TARGET_SATURATED_SHARE = 0.6;

const UPSTREAM_JS = `
const http = require('node:http');
const body = JSON.stringify({ login: 'octocat', id: 1, plan: { name: 'pro' } });
http.createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body); }); })
  .listen(0, '127.0.0.1', function () { process.stdout.write('PORT ' + this.address().port + '\\n'); });
`;

const FLOOR_JS = `
const http = require('node:http');
const { Pool } = require(process.argv[2]);
const upstream = new Pool(process.argv[1], { connections: 64 });
http.createServer(async (req, res) => {
  try {
    const r = await upstream.request({ method: req.method, path: req.url, headers: { accept: 'application/json', authorization: 'Bearer floor' } });
    const chunks = []; for await (const c of r.body) chunks.push(c);
    const out = Buffer.concat(chunks);
    res.writeHead(r.statusCode, { 'content-type': r.headers['content-type'] || 'application/octet-stream', 'content-length': out.length });
    res.end(out);
  } catch (e) { res.writeHead(502); res.end(); }
}).listen(0, '127.0.0.1', function () { process.stdout.write('PORT ' + this.address().port + '\\n'); });
`;

async function spawnServer(script: string, args: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let seen = '';
    child.stdout!.on('data', (c: Buffer) => {
      seen += c.toString();
      const m = /PORT (\d+)/.exec(seen);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`helper process exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, child };
}

/**
 * Open loop: starts a request every 1/rate s for `durationMs`, whatever the answers do. Between
 * sends it sleeps on a timer (1 ms granularity: a send may leave up to ~1 ms late, and then every
 * request already due leaves at once) rather than spinning until the exact microsecond: on this
 * 2-core machine a spinning generator burns a whole core that the proxy under test and the
 * upstream need, which measures the generator, not the proxy. Latency is timed from each actual send.
 */
async function runAtRate(rate: number, durationMs: number, fn: Operation): Promise<RunResult> {
  const samplesNs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const interval = 1e9 / rate;
  const start = process.hrtime.bigint();
  const total = Math.floor((rate * durationMs) / 1000);
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < total; i++) {
    const due = start + BigInt(Math.round(i * interval));
    const waitMs = Number(due - process.hrtime.bigint()) / 1e6;
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
    const t0 = process.hrtime.bigint();
    pending.push(
      fn(i).then(
        () => void samplesNs.push(Number(process.hrtime.bigint() - t0)),
        (err: unknown) => {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        },
      ),
    );
  }
  await Promise.all(pending);
  return { samplesNs, wallNs: Number(process.hrtime.bigint() - start), errors, firstError, truncated: false };
}

function getter(pool: Pool, path: string): Operation {
  return async () => {
    const r = await pool.request({ method: 'GET', path, headers: { accept: 'application/json' } });
    await r.body.arrayBuffer();
    if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
  };
}

/** The agent's call: its passport both authenticates the request and is the authority the proxy checks. */
function stackCall(pool: Pool, passport: string, connectionId: string): Operation {
  const body = JSON.stringify({ service: connectionId, method: 'GET', path: '/user', passport_token: passport });
  return async () => {
    const r = await pool.request({ method: 'POST', path: '/v1/proxy', headers: { 'content-type': 'application/json', authorization: `Bearer ${passport}` }, body });
    const text = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}: ${text.slice(0, 200)}`);
    if ((JSON.parse(text) as { status: number }).status !== 200) throw new Error(`upstream status in ${text.slice(0, 200)}`);
  };
}

async function call<T>(url: string, bearer: string, path: string, body: unknown, expect = 201): Promise<T> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` }, body: JSON.stringify(body) });
  if (res.status !== expect) throw new Error(`bench set-up: POST ${path} → ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** A GitHub connection (by a member), an agent granted read on it, and that agent's passport for it. */
async function agentWithPassport(url: string, member: string): Promise<{ connectionId: string; passport: string }> {
  const { id: connectionId } = await call<{ id: string }>(url, member, '/v1/connections', { service_id: 'github', name: 'bench', credential: { token: `ghp_${randomBytes(16).toString('hex')}` } });
  const agent = await call<{ id: string }>(url, member, '/v1/agents/register', { name: `bench-${randomBytes(3).toString('hex')}` });
  await call(url, member, `/v1/agents/${agent.id}/grants`, { connection_id: connectionId, service_id: 'github', service_name: 'GitHub', scopes: ['read'] });
  const { token } = await call<{ token: string }>(url, member, '/v1/passports/issue', { agent_id: agent.id, ttl_seconds: 3600, intent_summary: 'proxy bench', services: [{ connection_id: connectionId, scopes: ['read'] }] });
  return { connectionId, passport: token };
}

/**
 * The one-process shape at saturation for `seconds`, in back-to-back windows: throughput, latency
 * and resident memory of each, and the last window's throughput against the first's.
 */
async function sustained(out: BenchmarkContext['out'], call: Operation, pid: number, concurrency: number, seconds: number, windowS: number): Promise<void> {
  out.line();
  out.line(`Sustained: the one-process shape at saturation (c=${concurrency}) for ${seconds} s, in ${windowS} s windows.`);
  const rows: LatencyRow[] = [];
  const rates: number[] = [];
  const memory: string[] = [];
  for (let at = 0; at < seconds; at += windowS) {
    const ms = Math.min(windowS, seconds - at) * 1000;
    const run = await runConcurrent(Number.MAX_SAFE_INTEGER, concurrency, call, { maxMs: ms });
    const summary = summarize(run);
    rates.push(summary.throughputPerSec);
    const rss = rssMiB(pid);
    memory.push(rss === undefined ? '?' : rss.toFixed(0));
    rows.push({ labels: [`${at}–${at + ms / 1000} s`, rss === undefined ? 'rss ?' : `rss ${rss.toFixed(0)} MiB`], summary });
  }
  out.latencyTable(['window', 'memory'], rows);
  const first = rates[0]!;
  const last = rates[rates.length - 1]!;
  out.line(`Sustained throughput: last window ${last.toFixed(0)} req/s against the first's ${first.toFixed(0)} (${formatRatio(last / first)}); resident memory by window (MiB): ${memory.join(', ')}.`);
}

export const proxyBenchmark: Benchmark = {
  name: 'proxy',
  summary: 'credential proxy overhead: direct vs a minimal Node proxy (the floor) vs /v1/proxy, one-process and distributed',
  flags: {
    rate: { kind: 'int', default: 500, doc: 'requests per second of the fixed-rate phase' },
    seconds: { kind: 'int', default: 4, doc: 'length of each fixed-rate run, seconds (split over the rounds)' },
    requests: { kind: 'int', default: 20000, doc: 'requests per variant at saturation (split over the rounds; enough that a run lasts seconds, not the few hundred ms a backlog takes to drain)' },
    concurrency: { kind: 'int', default: 32, doc: 'requests in flight at saturation' },
    rounds: { kind: 'int', default: 2, doc: 'interleaved rounds' },
    warmup: { kind: 'int', default: 3000, doc: 'unrecorded requests per variant first (at concurrency 8), so every variant is measured warm: with 300, V8 had not yet optimised the hot paths and the first seconds at a fixed rate measured that' },
    'max-seconds': { kind: 'int', default: 10, doc: 'time budget of each saturation run' },
    'sustain-seconds': { kind: 'int', default: 0, doc: 'then a saturation run of the one-process shape this long, window by window (0: none)' },
    'sustain-window': { kind: 'int', default: 10, doc: 'length of each window of the sustained run, seconds' },
  },
  extraTimeMs: (flags) => Math.max(0, flags.int('sustain-seconds')) * 1000,
  async run({ flags, out, command }: BenchmarkContext): Promise<void> {
    const rate = flags.int('rate');
    const seconds = flags.int('seconds');
    const requests = flags.int('requests');
    const concurrency = flags.int('concurrency');
    const rounds = Math.max(1, flags.int('rounds'));
    const warmup = flags.int('warmup');
    const maxMs = flags.int('max-seconds') * 1000;
    const undiciPath = require.resolve('undici');

    const internalSecret = randomBytes(32).toString('base64');
    const signer = new CallerContextSigner(Buffer.from(internalSecret, 'base64'));
    const member = signer.sign({ issuer: 'auth', kind: 'member', operator_id: 'op_bench', member_id: 'mem_bench', scopes: ['stack:services', 'stack:passports', 'stack:admin'] });
    const children: ChildProcess[] = [];
    const pools: Pool[] = [];
    let one: OneProcessStack | undefined;
    let dist: DistributedStack | undefined;
    try {
      const upstream = await spawnServer(UPSTREAM_JS, []);
      children.push(upstream.child);
      const floor = await spawnServer(FLOOR_JS, [upstream.url, undiciPath]);
      children.push(floor.child);
      const env = { STACK_INTERNAL_SECRET: internalSecret, STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32', STACK_SERVICE_BASE_URLS: `github=${upstream.url}` };
      one = await startOneProcessStack({ env, logLevel: 'warn' });
      dist = await startDistributedStack({ services: ['credential-proxy', 'passport', 'audit'], env, logLevel: 'warn' });
      const distUrl = dist.processes.find((p) => p.service === 'credential-proxy')!.url;
      const pool = (url: string) => {
        const p = new Pool(url, { connections: concurrency * 2 });
        pools.push(p);
        return p;
      };
      const oneAgent = await agentWithPassport(one.publicUrl, member);
      const distAgent = await agentWithPassport(dist.publicUrl, member);
      // Each variant with the processes it runs on (besides the upstream): the ones it must leave quiet.
      const distPids = dist.processes.map((p) => p.process.pid);
      // `busiest`: what the busiest thread besides the main one is, where that is known.
      // `names`: what each of several processes is; `servers`: the shared servers are measured too.
      const variants: Array<{ label: string; call: Operation; pids: number[]; busiest?: string; names?: string[]; servers?: boolean }> = [
        { label: 'direct', call: getter(pool(upstream.url), '/user'), pids: [] },
        { label: 'floor (minimal Node proxy)', call: getter(pool(floor.url), '/user'), pids: [floor.child.pid!] },
        { label: 'stack /v1/proxy, one process', call: stackCall(pool(one.publicUrl), oneAgent.passport, oneAgent.connectionId), pids: [one.process.pid], busiest: 'the embedded Postgres' },
        { label: 'stack /v1/proxy, distributed', call: stackCall(pool(distUrl), distAgent.passport, distAgent.connectionId), pids: distPids, names: dist.processes.map((p) => p.service), servers: true },
      ];
      const gate = new QuietGate([upstream.child.pid!, ...variants.flatMap((v) => v.pids)]);
      const drains = new Map<string, number[]>();

      out.heading('proxy — what the credential proxy adds to an upstream call');
      out.line(`node ${process.version}; ${cpus().length} CPUs; load average ${loadavg()[0].toFixed(2)}; ${rounds} interleaved round(s), ${warmup} warm-up requests per variant.`);
      out.line('Upstream, floor and each STACK shape run in their own processes; this process is the load generator.');
      for (const v of variants) await runConcurrent(Math.max(1, warmup), Math.min(concurrency, 8), v.call);

      // Every run starts with every process quiet, so no variant's backlog (STACK's audit appends)
      // slows the next; a saturation run lasts until its own processes are quiet again, so a rate
      // that leaves work behind is not counted as sustained.
      const modes = [
        { label: `${rate} req/s`, run: (v: Operation) => runAtRate(rate, (seconds * 1000) / rounds, v), countDrain: false },
        { label: `saturation c=${concurrency}`, run: (v: Operation) => runConcurrent(Math.max(1, Math.floor(requests / rounds)), concurrency, v, { maxMs: maxMs / rounds }), countDrain: true },
      ];
      // CPU time of each variant's processes over its saturation runs (from the run's start until
      // they were quiet again), thread by thread: what a call costs, steadier than the rate.
      const cpu = new Map<string, { calls: number; threads: Map<string, number> }>();
      const serverCpu = new Map<string, { calls: number; seconds: Map<string, number> }>();
      // The fixed work beside each variant: the upstream's CPU and this load generator's, a call.
      // This virtual machine's speed itself varies between runs (by half, measured): a variant's
      // CPU a call divided by the upstream's compares across runs where the raw figures do not.
      const reference = new Map<string, { calls: number; upstream: number; generator: number }>();
      // The shared servers the distributed shape makes work (when they run on this machine), looked
      // up at each snapshot: a Postgres backend may start during a run (its CPU then all counts).
      const serverSnapshot = () => new Map(processesNamed(['nats-server', 'postgres', 'redis-server']).map(({ pid, name }) => [`${name}/${pid}`, cpuSeconds(pid) ?? 0] as const));
      const snapshot = (pids: readonly number[]) => new Map(pids.flatMap((pid) => [...(threadCpuSeconds(pid) ?? new Map<number, number>())].map(([tid, sec]) => [`${pid}/${tid}`, sec] as const)));
      const measure = async (mode: (typeof modes)[number], v: (typeof variants)[number]): Promise<RunResult> => {
        let before: Map<string, number> | undefined;
        let serversBefore: Map<string, number> | undefined;
        let upstreamBefore: number | undefined;
        let generatorBefore: NodeJS.CpuUsage | undefined;
        const { run, drainMs } = await gate.run(
          () => {
            if (mode.countDrain) {
              upstreamBefore = cpuSeconds(upstream.child.pid!);
              generatorBefore = process.cpuUsage();
            }
            if (mode.countDrain) before = snapshot(v.pids);
            if (mode.countDrain && v.servers) serversBefore = serverSnapshot();
            return mode.run(v.call);
          },
          mode.countDrain ? v.pids : undefined,
        );
        if (drainMs !== undefined) drains.set(v.label, [...(drains.get(v.label) ?? []), drainMs]);
        const upstreamAfter = upstreamBefore === undefined ? undefined : cpuSeconds(upstream.child.pid!);
        if (generatorBefore && upstreamBefore !== undefined && upstreamAfter !== undefined) {
          const used = process.cpuUsage(generatorBefore);
          const acc = reference.get(v.label) ?? { calls: 0, upstream: 0, generator: 0 };
          acc.calls += run.samplesNs.length;
          acc.upstream += upstreamAfter - upstreamBefore;
          acc.generator += (used.user + used.system) / 1e6;
          reference.set(v.label, acc);
        }
        if (before && v.pids.length) {
          const acc = cpu.get(v.label) ?? { calls: 0, threads: new Map<string, number>() };
          for (const [thread, sec] of snapshot(v.pids)) acc.threads.set(thread, (acc.threads.get(thread) ?? 0) + sec - (before.get(thread) ?? 0));
          acc.calls += run.samplesNs.length;
          cpu.set(v.label, acc);
        }
        if (serversBefore) {
          const acc = serverCpu.get(v.label) ?? { calls: 0, seconds: new Map<string, number>() };
          for (const [key, sec] of serverSnapshot()) {
            const name = key.split('/')[0]!;
            acc.seconds.set(name, (acc.seconds.get(name) ?? 0) + sec - (serversBefore.get(key) ?? 0));
          }
          acc.calls += run.samplesNs.length;
          serverCpu.set(v.label, acc);
        }
        return run;
      };
      const rows: LatencyRow[] = [];
      const results = new Map<string, ReturnType<typeof summarize>>();
      for (const mode of modes) {
        const per = new Map<string, RunResult[]>();
        for (let round = 0; round < rounds; round++) {
          const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
          for (const v of order) per.set(v.label, [...(per.get(v.label) ?? []), await measure(mode, v)]);
        }
        for (const v of variants) {
          const summary = summarize(mergeRuns(per.get(v.label) ?? []));
          results.set(`${mode.label}|${v.label}`, summary);
          rows.push({ labels: [mode.label, v.label], summary });
        }
      }
      out.latencyTable(['mode', 'path'], rows);
      out.line(`At saturation a run lasts until its processes are quiet again (counted in req/s): ${[...drains].map(([label, ms]) => `${label} ${ms.map((x) => `${x.toFixed(0)} ms`).join(' / ')}`).join('; ')}.`);
      for (const warning of gate.warnings()) out.line(warning);

      out.line();
      out.line('Against the floor (targets, one-process mode: added p50 within 1 ms at the fixed rate; saturated throughput ≥ 60 % of the floor):');
      const floorAt = (mode: string) => results.get(`${mode}|floor (minimal Node proxy)`)!;
      const ratioRows = variants
        .filter((v) => v.label.startsWith('stack'))
        .flatMap((v) => modes.map((m) => ({ mode: m.label, label: v.label, s: results.get(`${m.label}|${v.label}`)!, f: floorAt(m.label), direct: results.get(`${m.label}|direct`)! })));
      out.table(
        [
          { header: 'mode', value: (r: (typeof ratioRows)[number]) => r.mode },
          { header: 'path', value: (r) => r.label },
          { header: 'p50 − floor µs', align: 'right', value: (r) => formatUs(r.s.p50Us - r.f.p50Us) },
          { header: 'p99 − floor µs', align: 'right', value: (r) => formatUs(r.s.p99Us - r.f.p99Us) },
          { header: 'p50 / floor', align: 'right', value: (r) => formatRatio(r.s.p50Us / r.f.p50Us) },
          { header: 'req/s / floor', align: 'right', value: (r) => formatRatio(r.s.throughputPerSec / r.f.throughputPerSec) },
          { header: 'floor req/s / direct', align: 'right', value: (r) => formatRatio(r.f.throughputPerSec / r.direct.throughputPerSec) },
        ],
        ratioRows,
      );
      out.line();
      out.line('CPU time per call at saturation, all threads of the variant’s processes (from /proc, each run until its processes were quiet again):');
      for (const v of variants) {
        const acc = cpu.get(v.label);
        if (!acc || acc.calls === 0) continue;
        const us = (sec: number) => `${formatUs((sec * 1e6) / acc.calls)} µs`;
        const total = [...acc.threads.values()].reduce((a, b) => a + b, 0);
        if (v.pids.length !== 1) {
          const per = v.pids.map((pid, i) => `${v.names?.[i] ?? pid} ${us([...acc.threads].filter(([t]) => t.startsWith(`${pid}/`)).reduce((a, [, sec]) => a + sec, 0))}`);
          out.line(`  ${v.label}: ${us(total)} in ${v.pids.length} processes — ${per.join(', ')}`);
          const srv = serverCpu.get(v.label);
          if (srv && srv.calls > 0 && srv.seconds.size > 0) {
            const list = [...srv.seconds].map(([name, sec]) => `${name} ${formatUs((sec * 1e6) / srv.calls)} µs`);
            out.line(`    and the shared servers it uses (all their processes on this machine, whatever else they served meanwhile): ${list.join(', ')}`);
          }
          continue;
        }
        const main = acc.threads.get(`${v.pids[0]}/${v.pids[0]}`) ?? 0;
        const others = [...acc.threads].filter(([t]) => t !== `${v.pids[0]}/${v.pids[0]}`).map(([, sec]) => sec).sort((a, b) => b - a);
        const busiest = others[0] ?? 0;
        out.line(`  ${v.label}: ${us(total)} — main thread ${us(main)}, busiest other thread ${us(busiest)}${v.busiest ? ` (${v.busiest})` : ''}, the rest ${us(total - main - busiest)}`);
      }
      out.line();
      out.line('The fixed work beside each variant at saturation, a call: the upstream and this load generator; then the variant’s own CPU a call in upstream calls (steadier across runs than microseconds, as the machine’s speed varies):');
      for (const v of variants) {
        const ref = reference.get(v.label);
        if (!ref || ref.calls === 0) continue;
        const upstreamUs = (ref.upstream * 1e6) / ref.calls;
        const acc = cpu.get(v.label);
        const ownUs = acc && acc.calls > 0 ? ([...acc.threads.values()].reduce((a, b) => a + b, 0) * 1e6) / acc.calls : undefined;
        const inUpstreamCalls = ownUs !== undefined && upstreamUs > 0 ? `; its own ${formatRatio(ownUs / upstreamUs)} upstream calls` : '';
        out.line(`  ${v.label}: upstream ${formatUs(upstreamUs)} µs, load generator ${formatUs((ref.generator * 1e6) / ref.calls)} µs${inUpstreamCalls}`);
      }
      const oneRate = results.get(`${modes[0]!.label}|stack /v1/proxy, one process`)!;
      const oneSat = results.get(`${modes[1]!.label}|stack /v1/proxy, one process`)!;
      const added = oneRate.p50Us - floorAt(modes[0]!.label).p50Us;
      const share = oneSat.throughputPerSec / floorAt(modes[1]!.label).throughputPerSec;
      out.line();
      out.line(`Target 1 (one process, ${rate} req/s): added p50 ${formatUs(added)} µs vs ≤ ${TARGET_ADDED_P50_US} µs — ${added <= TARGET_ADDED_P50_US ? 'PASS' : 'FAIL'}`);
      out.line(`Target 2 (one process, saturation): ${(share * 100).toFixed(0)} % of the floor's throughput vs ≥ ${TARGET_SATURATED_SHARE * 100} % — ${share >= TARGET_SATURATED_SHARE ? 'PASS' : 'FAIL'}`);
      out.line(`Load average at the end: ${loadavg()[0].toFixed(2)} (other work on the machine skews figures; compare ratios from one run)`);
      const sustainS = flags.int('sustain-seconds');
      if (sustainS > 0) await sustained(out, variants[2]!.call, one.process.pid, concurrency, sustainS, Math.max(1, flags.int('sustain-window')));
      out.reproduce(command);
    } finally {
      await Promise.allSettled(pools.map((p) => p.close()));
      await Promise.allSettled([one?.stop(), dist?.stop()]);
      for (const c of children) c.kill('SIGTERM');
    }
  },
};
