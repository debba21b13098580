/**
 * `passport-check`: what checking a presented passport costs on a node — cold (first sight:
 * signature, header, claims, audience, expiry), warm (seen before: a SHA-256 of the token and
 * a cache hit) — both including the revocation lookup against a live set, next to a bare
 * node:crypto Ed25519 verify of the same token's bytes. Pure CPU: no server is involved, so
 * the one-process and distributed shapes cost the same here.
 */
import { generateKeyPairSync, verify as cryptoVerify } from 'node:crypto';
import { cpus, loadavg } from 'node:os';

import type { PassportClaims } from '@stack/contracts';
import { PassportVerifier, RevocationState, signPassport, type RevocationFeed } from '@stack/security';

import type { Benchmark, BenchmarkContext } from './benchmark';
import { formatRatio, formatUs, type LatencyRow } from './report-printer';
import { runSequential, summarize, type Operation } from './stats';

const TARGET_COLD_RATIO = 1.2;

interface Verdict {
  name: string;
  value: string;
  target: string;
  ok: boolean;
}
const TARGET_WARM_US = 20;
const AUD = 'https://stack.example';

function claimsFor(i: number): PassportClaims {
  const now = Date.now();
  return {
    jti: `ppt_bench_${i.toString().padStart(8, '0')}`,
    sub: 'agt_bench',
    iss: AUD,
    aud: AUD,
    iat: Math.floor(now / 1000),
    exp: Math.floor(now / 1000) + 900,
    stk: {
      operator_id: 'op_bench',
      agent_id: 'agt_bench',
      agent_name: 'bench-agent',
      member_id: 'mem_bench',
      session_id: 'ses_bench',
      issued_at_ms: now,
      chain: ['ppt_root_bench'],
      delegation_depth: 1,
      intent_summary: 'Read the open issues of the platform repository and summarise them for the weekly report.',
      intent_services: ['github', 'slack'],
      services: [
        { connection_id: 'scon_github_main', service_id: 'github', service_name: 'GitHub', scopes: ['repo:read', 'issues:read'], constraints: [{ path: 'url.host', op: 'eq', value: 'api.github.com' }, { path: 'method', op: 'in', value: ['GET', 'HEAD'] }] },
        { connection_id: 'scon_slack_team', service_id: 'slack', service_name: 'Slack', scopes: ['chat:write'], constraints: [{ path: 'body.channel', op: 'eq', value: 'C0123456' }] },
      ],
    },
  };
}

/** A revocation state that is fresh and holds `entries` unrelated revocations (what a busy node carries). */
async function liveState(entries: number): Promise<RevocationState> {
  const feed: RevocationFeed = { lastSequence: async () => 0, snapshot: async () => ({ seq: 0, entries: [] }), follow: async () => ({ stop: async () => undefined }) };
  const state = new RevocationState({ feed, maxStalenessMs: 3600_000 });
  state.start();
  await state.whenFresh(1000);
  const now = Date.now();
  for (let i = 0; i < entries; i++) {
    const kinds = ['jti', 'agent', 'session', 'member'] as const;
    state.apply({ id: `rev_${i}`, kind: kinds[i % kinds.length]!, value: `x_${i}`, operator_id: 'op_other', revoked_at_ms: now, expires_at_ms: now + 3600_000 });
  }
  return state;
}

export const passportCheckBenchmark: Benchmark = {
  name: 'passport-check',
  summary: 'passport check on a node: cold (signature) and warm (cached), with the revocation lookup, vs a bare node:crypto Ed25519 verify',
  flags: {
    tokens: { kind: 'int', default: 4000, doc: 'distinct tokens (each checked once cold, once bare)' },
    'warm-checks': { kind: 'int', default: 50000, doc: 'warm checks of already-seen tokens' },
    revocations: { kind: 'int', default: 1000, doc: 'unrelated entries in the live revocation set' },
  },

  async run({ flags, out, command }: BenchmarkContext): Promise<void> {
    const n = Math.max(10, flags.int('tokens'));
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const tokens = Array.from({ length: n }, (_, i) => signPassport(claimsFor(i), { kid: 'k1', privateKey }));
    const state = await liveState(flags.int('revocations'));
    try {
      const verifier = new PassportVerifier({ audience: AUD, keys: () => publicKey, revocations: state });

      // Warm the JIT on tokens that are not measured.
      const warmTokens = Array.from({ length: 200 }, (_, i) => signPassport(claimsFor(n + i), { kid: 'k1', privateKey }));
      for (const t of warmTokens) {
        await verifier.verify(t);
        bare(t);
      }

      const bareOp: Operation = async (i) => {
        if (!bare(tokens[i % n]!)) throw new Error('bare verify failed');
      };
      const coldOp: Operation = async (i) => {
        await verifier.verify(tokens[i]!);
      };
      const warmOp: Operation = async (i) => {
        await verifier.verify(tokens[i % n]!);
      };
      // Interleave bare and cold in halves so load changes fall on both.
      const half = Math.floor(n / 2);
      const bareA = await runSequential(half, bareOp);
      const coldA = await runSequential(half, coldOp);
      const bareRest = await runSequential(n - half, (i) => bareOp(i + half));
      const coldRest = await runSequential(n - half, (i) => coldOp(i + half));
      const warm = await runSequential(flags.int('warm-checks'), warmOp);

      const bareS = summarize({ samplesNs: [...bareA.samplesNs, ...bareRest.samplesNs], wallNs: bareA.wallNs + bareRest.wallNs, errors: bareA.errors + bareRest.errors, truncated: false });
      const coldS = summarize({ samplesNs: [...coldA.samplesNs, ...coldRest.samplesNs], wallNs: coldA.wallNs + coldRest.wallNs, errors: coldA.errors + coldRest.errors, truncated: false, firstError: coldA.firstError ?? coldRest.firstError });
      const warmS = summarize(warm);

      out.heading('passport-check — the cost of checking a presented passport');
      out.line(`node ${process.version}; ${cpus().length} CPUs; load average ${loadavg()[0].toFixed(2)}; token ${tokens[0]!.length} B; revocation set ${state.set.size} entries; no server involved (one-process and distributed nodes pay the same)`);
      out.line();
      const rows: LatencyRow[] = [
        { labels: ['bare node:crypto Ed25519 verify'], summary: bareS },
        { labels: ['cold: signature + claims + revocation'], summary: coldS },
        { labels: ['warm: cache hit + revocation'], summary: warmS },
      ];
      out.latencyTable(['check'], rows);
      out.line();
      const ratio = coldS.p50Us / bareS.p50Us;
      out.table(
        [
          { header: 'figure', value: (r: Verdict) => r.name },
          { header: 'measured', align: 'right', value: (r: Verdict) => r.value },
          { header: 'target', value: (r: Verdict) => r.target },
          { header: 'verdict', value: (r: Verdict) => (r.ok ? 'PASS' : 'FAIL') },
        ],
        [
          { name: 'cold p50 / bare p50', value: formatRatio(ratio), target: `≤ ${TARGET_COLD_RATIO}×`, ok: ratio <= TARGET_COLD_RATIO },
          { name: 'warm p50 µs', value: formatUs(warmS.p50Us), target: `≤ ${TARGET_WARM_US} µs`, ok: warmS.p50Us <= TARGET_WARM_US },
          { name: 'warm p99 µs', value: formatUs(warmS.p99Us), target: `≤ ${TARGET_WARM_US} µs`, ok: warmS.p99Us <= TARGET_WARM_US },
        ],
      );
      out.reproduce(command);
    } finally {
      await state.stop();
    }

    function bare(token: string): boolean {
      const dot = token.lastIndexOf('.');
      return cryptoVerify(null, Buffer.from(token.slice(0, dot)), publicKey, Buffer.from(token.slice(dot + 1), 'base64url'));
    }
  },
};

