/**
 * The passport-check benchmark, shrunk: it must run end to end (no failed check) and print
 * its three rows, the targets and the command that reproduces it.
 */
import { parseFlags } from './benchmark';
import { passportCheckBenchmark } from './passport-check.bench';
import { Printer } from './report-printer';

describe('passport-check benchmark', () => {
  it('measures bare, cold and warm checks and prints the verdicts and the reproduce command', async () => {
    const flags = parseFlags(passportCheckBenchmark.flags, ['--tokens', '50', '--warm-checks', '200', '--revocations', '20']);
    let output = '';
    await passportCheckBenchmark.run({ flags, out: new Printer((t) => (output += t)), command: `bench passport-check ${flags.commandLine()}` });
    for (const label of ['bare node:crypto Ed25519 verify', 'cold: signature + claims + revocation', 'warm: cache hit + revocation']) {
      expect(output.split('\n').find((l) => l.startsWith(label))?.replace(/\s+/g, ' ')).toMatch(/ 0$/);
    }
    expect(output).toMatch(/cold p50 \/ bare p50\s+\d+\.\d\d×\s+≤ 1\.2×\s+(PASS|FAIL)/);
    expect(output).toContain('Reproduce: bench passport-check --tokens 50');
  });
});
