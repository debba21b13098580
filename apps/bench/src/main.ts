/**
 * The benchmark CLI: `npm run bench -- <name|all> [--flags]` (or, once built,
 * `node dist/apps/bench/src/main.js <name|all> [--flags]`) runs benchmarks against the real
 * servers on this machine and prints, for each, a table of figures and the command that
 * reproduces it. A figure never changes the exit code: 0 when every benchmark ran, 1 when one
 * failed to run, 2 for a usage error.
 */
import { FlagError, parseFlags, type Benchmark } from './benchmark';
import { auditBenchmark } from './audit.bench';
import { busBenchmark } from './bus.bench';
import { dropoffBenchmark } from './dropoff.bench';
import { mcpBenchmark } from './mcp.bench';
import { passportCheckBenchmark } from './passport-check.bench';
import { proxyBenchmark } from './proxy.bench';
import { revocationBenchmark } from './revocation.bench';
import { Printer } from './report-printer';

const BENCHMARKS: readonly Benchmark[] = [busBenchmark, mcpBenchmark, auditBenchmark, passportCheckBenchmark, revocationBenchmark, proxyBenchmark, dropoffBenchmark];

/** A benchmark that has not finished by then is stuck (a server gone away), not slow. */
const BENCHMARK_DEADLINE_MS = 120_000;
const ENTRY = 'npm run bench --';

function usage(): string {
  const lines = [`usage: ${ENTRY} <benchmark|all> [--flag value ...]`, '', 'benchmarks:'];
  for (const b of BENCHMARKS) {
    lines.push(`  ${b.name.padEnd(8)} ${b.summary}`);
    for (const [name, spec] of Object.entries(b.flags)) lines.push(`      --${name.padEnd(22)} ${spec.doc} (default ${spec.default})`);
  }
  lines.push(`  ${'all'.padEnd(8)} every benchmark above with its defaults`);
  return lines.join('\n');
}

async function withDeadline(name: string, work: Promise<void>, deadlineMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`benchmark '${name}' did not finish within ${deadlineMs / 1000} s`)), deadlineMs);
  });
  try {
    await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name ? 0 : 2;
  }
  const selected = name === 'all' ? BENCHMARKS : BENCHMARKS.filter((b) => b.name === name);
  if (selected.length === 0) {
    process.stderr.write(`unknown benchmark '${name}'\n\n${usage()}\n`);
    return 2;
  }
  if (name === 'all' && rest.length > 0) {
    process.stderr.write(`'all' runs every benchmark with its defaults and takes no flags; run one benchmark to pass flags\n`);
    return 2;
  }
  const runs = [];
  try {
    for (const b of selected) runs.push({ benchmark: b, flags: parseFlags(b.flags, rest) });
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    process.stderr.write(`${err.message}\n\n${usage()}\n`);
    return 2;
  }

  const out = new Printer();
  let failed = 0;
  for (const { benchmark, flags } of runs) {
    // `npm run bench` installs and builds what is missing first, so this line works on a fresh clone.
    const command = `npm run bench -- ${benchmark.name} ${flags.commandLine()}`;
    try {
      await withDeadline(benchmark.name, benchmark.run({ flags, out, command }), BENCHMARK_DEADLINE_MS + (benchmark.extraTimeMs?.(flags) ?? 0));
    } catch (err) {
      failed += 1;
      process.stderr.write(`\n✗ benchmark '${benchmark.name}' failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.stderr.write(`  It needs the servers on loopback (see apps/bench/README.md). Rerun with: ${command}\n`);
    }
  }
  return failed > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything was closed; should a client library still hold a handle, do not hang on it.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
