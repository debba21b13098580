/**
 * The audit log, measured on the running service (the built `stack` with STACK_SERVICES=audit):
 * sustained append rate through STACK_AUDIT with a checkpoint signed every second (entries/s and
 * publish-to-committed p50/p99, from each entry's occurred_at and appended_at), then a log of a
 * million entries (bulk-inserted in SQL) and the cost of an inclusion proof: produced by the
 * service over REST, verified here; and the whole log checked by the service (stack_audit_verify
 * without an entry), with the audit process's resident memory meanwhile. Beside it the embedded
 * shape (PGlite + in-process bus), driven through REST reads, each of which the log records before
 * it happens.
 */
import { loadavg } from 'node:os';

import { connectNatsBus } from '@stack/bus';
import { AuditVerifyCommand, MerkleLevels, entryLeafHash, openNote, parseCheckpoint, parseVerifierKey, verifyInclusion, type AuditEntry, type CallerContext } from '@stack/contracts';
import { AuditRecorder } from '@stack/runtime';
import { CallerContextSigner } from '@stack/security';
import { generateStackSecrets, startDistributedStack, startOneProcessStack } from '@stack/testing';
import { Client } from 'pg';

import type { Benchmark, BenchmarkContext } from './benchmark';
import { rssMiB } from './quiesce';
import { percentile } from './stats';

const admin = (operator_id: string): CallerContext => ({ issuer: 'auth', kind: 'member', operator_id, member_id: 'mem_bench', scopes: ['stack:admin'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function bearer(secret: string, operator: string): Record<string, string> {
  return { authorization: `Bearer ${new CallerContextSigner(Buffer.from(secret, 'base64')).sign(admin(operator))}` };
}

const FILL_SQL = `
  INSERT INTO audit.entries (id, operator_id, tree_id, leaf_index, entry, leaf_hash, occurred_at, action, outcome)
  SELECT 'aud_fill' || lpad(i::text, 10, '0'), 'op_big', 1, i, e, sha256('\\x00'::bytea || convert_to(e, 'UTF8')), '2026-01-01T00:00:00Z', 'bench.fill', 'success'
  FROM generate_series(0, $1::bigint - 1) AS i,
       LATERAL (SELECT '{"action":"bench.fill","id":"aud_fill' || lpad(i::text, 10, '0') || '","layer":"system","leaf_index":' || i || ',"occurred_at":"2026-01-01T00:00:00.000Z","operator_id":"op_big","outcome":"success"}' AS e) AS x`;

export const auditBenchmark: Benchmark = {
  name: 'audit',
  summary: 'audit log: sustained append with 1 s checkpoints, inclusion proofs and a whole-log verify in a log of a million entries',
  flags: {
    events: { kind: 'int', default: 20_000, doc: 'events published to STACK_AUDIT (real servers)' },
    concurrency: { kind: 'int', default: 64, doc: 'publishers at once' },
    leaves: { kind: 'int', default: 1_000_000, doc: 'entries of the big log' },
    samples: { kind: 'int', default: 500, doc: 'inclusion proofs fetched and verified' },
    'embedded-reads': { kind: 'int', default: 1000, doc: 'recorded REST reads in the embedded shape' },
  },
  // The whole-log verify of the big log: ~30k entries/s here, so 100 s a million leaves leaves room.
  extraTimeMs: (flags) => Math.max(0, flags.int('leaves')) / 10,
  async run({ flags, out, command }: BenchmarkContext) {
    const f = (n: number) => n.toFixed(1);
    const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
    const mark = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
    out.line(`load average at start: ${load()}`);
    out.heading('audit: sustained append, checkpoint every 1 s (Postgres + NATS, audit in its own process)');
    const stack = await startDistributedStack({ services: ['audit', 'passport'], env: { STACK_AUDIT_CHECKPOINT_INTERVAL_MS: '1000' }, logLevel: 'warn' });
    const db = new Client({ connectionString: stack.database.url });
    await db.connect();
    try {
      const sender = await connectNatsBus({ servers: stack.natsUrl, prefix: stack.busPrefix, internalSecret: Buffer.from(stack.internalSecret, 'base64'), timeoutMs: 5000, instanceId: 'bench' });
      const recorder = new AuditRecorder(sender.forService('credential-proxy'));
      const events = flags.int('events');
      let next = 0;
      await Promise.all(
        Array.from({ length: flags.int('concurrency') }, async () => {
          while (next < events) {
            next += 1;
            await recorder.record({ operator_id: 'op_rate', layer: 'proxy', action: 'credential.proxy', outcome: 'success', target: { service: 'github', method: 'GET', host: 'api.github.com', path: '/user' } });
          }
        }),
      );
      await sender.close();
      const count = async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM audit.entries WHERE operator_id = 'op_rate'`)).rows[0]!.n);
      const deadline = Date.now() + 300_000;
      while ((await count()) < events && Date.now() < deadline) await sleep(100);
      const r = (
        await db.query<{ secs: number; p50: number; p99: number }>(
          `SELECT extract(epoch FROM max(appended_at) - min(occurred_at))::float8 AS secs,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM appended_at - occurred_at) * 1000)::float8 AS p50,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM appended_at - occurred_at) * 1000)::float8 AS p99
           FROM audit.entries WHERE operator_id = 'op_rate'`,
        )
      ).rows[0]!;
      const checkpoints = Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM audit.checkpoints WHERE operator_id = 'op_rate'`)).rows[0]!.n);
      const rate = events / r.secs;
      out.line(`  ${events} entries: ${Math.round(rate)} entries/s   publish→committed p50 ${f(r.p50)} ms  p99 ${f(r.p99)} ms   ${checkpoints} checkpoints signed   target ≥ 5000 entries/s: ${mark(rate >= 5000)}`);

      const leaves = flags.int('leaves');
      out.heading(`audit: inclusion proofs in a log of ${leaves} entries`);
      let t = performance.now();
      await db.query(FILL_SQL, [leaves]);
      await db.query(`INSERT INTO audit.heads (operator_id, tree_size) VALUES ('op_big', $1)`, [leaves]);
      out.line(`  bulk insert: ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const headers = bearer(stack.internalSecret, 'op_big');
      const vkey = parseVerifierKey(((await (await fetch(`${stack.publicUrl}/v1/audit/public-key`)).json()) as { verifier_key: string }).verifier_key);
      t = performance.now();
      let cp: { tree_size: number; note: string } | undefined;
      while (!cp || cp.tree_size < leaves) {
        const res = await fetch(`${stack.publicUrl}/v1/audit/checkpoints/latest`, { headers });
        cp = res.status === 200 ? ((await res.json()) as { tree_size: number; note: string }) : undefined;
        if (!cp || cp.tree_size < leaves) await sleep(200);
      }
      out.line(`  first checkpoint of the big log (the service loads its leaf hashes and builds the tree): ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const root = parseCheckpoint(openNote(cp.note, [vkey]).text).rootHash;
      const gen: number[] = [];
      const ver: number[] = [];
      for (let s = 0; s < flags.int('samples'); s++) {
        const i = Math.floor(Math.random() * leaves);
        const a = performance.now();
        const proof = (await (await fetch(`${stack.publicUrl}/v1/audit/proofs/inclusion?leaf_index=${i}&tree_size=${leaves}`, { headers })).json()) as { hashes: string[] };
        const b = performance.now();
        const entry: AuditEntry = { action: 'bench.fill', id: `aud_fill${String(i).padStart(10, '0')}`, layer: 'system', leaf_index: i, occurred_at: '2026-01-01T00:00:00.000Z', operator_id: 'op_big', outcome: 'success' };
        const ok = verifyInclusion(entryLeafHash(entry), i, leaves, proof.hashes.map((h) => Buffer.from(h, 'base64')), root);
        const c = performance.now();
        if (!ok) throw new Error(`the proof of leaf ${i} did not verify`);
        gen.push(b - a);
        ver.push((c - b) * 1000);
      }
      gen.sort((x, y) => x - y);
      ver.sort((x, y) => x - y);
      out.line(`  produce (REST round trip): p50 ${f(percentile(gen, 50))} ms  p99 ${f(percentile(gen, 99))} ms`);
      out.line(`  verify (recompute the leaf hash + the path): p50 ${f(percentile(ver, 50))} µs  p99 ${f(percentile(ver, 99))} µs   target ≤ 1 ms (p50): ${mark(percentile(ver, 50) <= 1000)}`);
      const tree = MerkleLevels.fromLeaves(Array.from({ length: 1 << 16 }, (_, i) => entryLeafHash({ action: 'x.y', id: `aud_${i}`, layer: 'system', leaf_index: i, occurred_at: '2026-01-01T00:00:00.000Z', operator_id: 'op', outcome: 'success' })));
      const g0 = performance.now();
      for (let i = 0; i < 10_000; i++) tree.inclusionProof(i, tree.size);
      out.line(`  in memory, without HTTP: ${f(((performance.now() - g0) * 1000) / 10_000)} µs per proof (tree of ${tree.size})`);

      // The whole log checked as `stack audit verify` checks an export (stack_audit_verify without
      // an entry), the audit process's resident memory sampled meanwhile.
      const auditPid = stack.processes.find((p) => p.service === 'audit')!.process.pid;
      const asking = await connectNatsBus({ servers: stack.natsUrl, prefix: stack.busPrefix, internalSecret: Buffer.from(stack.internalSecret, 'base64'), timeoutMs: 1_800_000, instanceId: 'bench-verify' });
      try {
        const before = rssMiB(auditPid) ?? 0;
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(auditPid) ?? 0)), 50);
        t = performance.now();
        const verdict = await asking.forService('mcp-gateway').request(AuditVerifyCommand, {}, { caller: admin('op_big') }).finally(() => clearInterval(sampler));
        const secs = (performance.now() - t) / 1000;
        out.line(`  whole-log verify (stack_audit_verify without an entry): ${verdict.verdict} for ${verdict.tree_size} entries in ${secs.toFixed(1)} s (${Math.round((verdict.tree_size ?? 0) / secs)} entries/s); the audit process's resident memory ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`);
      } finally {
        await asking.close();
      }
    } finally {
      await db.end();
      await stack.stop();
    }

    out.heading('audit: embedded shape (one process, PGlite, in-process bus), appends driven by recorded REST reads');
    const { internalSecret } = generateStackSecrets();
    const one = await startOneProcessStack({ env: { STACK_INTERNAL_SECRET: internalSecret, STACK_AUDIT_CHECKPOINT_INTERVAL_MS: '1000' }, logLevel: 'warn' });
    try {
      const headers = bearer(internalSecret, 'op_emb');
      const reads = flags.int('embedded-reads');
      const lat: number[] = [];
      const t0 = performance.now();
      let n = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (n < reads) {
            n += 1;
            const a = performance.now();
            const res = await fetch(`${one.publicUrl}/v1/audit?limit=1`, { headers });
            await res.arrayBuffer();
            lat.push(performance.now() - a);
          }
        }),
      );
      const secs = (performance.now() - t0) / 1000;
      lat.sort((x, y) => x - y);
      out.line(`  ${reads} recorded reads: ${Math.round(reads / secs)} appends/s   read incl. durable audit record p50 ${f(percentile(lat, 50))} ms  p99 ${f(percentile(lat, 99))} ms`);
    } finally {
      await one.stop();
    }
    out.line(`load average at end: ${load()}`);
    out.reproduce(command);
  },
};
