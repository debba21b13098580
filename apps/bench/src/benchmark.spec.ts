/** The CLI's flags and its printed tables: a misspelt flag fails early, a run prints how to repeat it. */
import { FlagError, parseFlags, type FlagSpecs } from './benchmark';
import { Printer, renderTable } from './report-printer';
import { summarize } from './stats';

const SPECS: FlagSpecs = {
  requests: { kind: 'int', default: 100, doc: 'requests' },
  nats: { kind: 'string', default: 'nats://127.0.0.1:4222', doc: 'server' },
};

describe('parseFlags', () => {
  it('takes defaults, `--name value` and `--name=value`', () => {
    expect(parseFlags(SPECS, []).int('requests')).toBe(100);
    expect(parseFlags(SPECS, ['--requests', '7']).int('requests')).toBe(7);
    const flags = parseFlags(SPECS, ['--requests=9', '--nats', 'nats://h:1']);
    expect(flags.int('requests')).toBe(9);
    expect(flags.string('nats')).toBe('nats://h:1');
  });

  it('refuses unknown flags, missing values and malformed numbers before anything runs', () => {
    expect(() => parseFlags(SPECS, ['--request', '7'])).toThrow(FlagError);
    expect(() => parseFlags(SPECS, ['--requests'])).toThrow(/needs a value/);
    expect(() => parseFlags(SPECS, ['--requests', 'many'])).toThrow(/non-negative integer/);
    expect(() => parseFlags(SPECS, ['stray'])).toThrow(/unexpected argument/);
  });

  it('prints every flag with the value the run used, so the command reproduces it', () => {
    expect(parseFlags(SPECS, ['--requests', '7']).commandLine()).toBe('--requests 7 --nats nats://127.0.0.1:4222');
    expect(parseFlags(SPECS, ['--nats', 'a b']).commandLine()).toBe("--requests 100 --nats 'a b'");
  });
});

describe('report printer', () => {
  it('aligns columns: labels left, figures right', () => {
    const text = renderTable(
      [
        { header: 'name', value: (r: { name: string; n: number }) => r.name },
        { header: 'n', align: 'right', value: (r: { name: string; n: number }) => String(r.n) },
      ],
      [
        { name: 'a', n: 1000 },
        { name: 'longer', n: 5 },
      ],
    );
    expect(text.split('\n')).toEqual(['name       n', '──────  ────', 'a       1000', 'longer     5']);
  });

  it('prints latency rows, marks a truncated run and shows the first error', () => {
    let output = '';
    const out = new Printer((t) => {
      output += t;
    });
    const summary = summarize({ samplesNs: [120_000, 80_000], wallNs: 1e9, errors: 1, firstError: 'timed out', truncated: true });
    out.latencyTable(['client'], [{ labels: ['raw'], summary }]);
    out.reproduce('node main.js bus');
    expect(output).toContain('raw');
    expect(output).toMatch(/\b2\*\s+80\.0\s+120\.0/);
    expect(output).toContain('stopped early');
    expect(output).toContain('raw: 1 failed, first: timed out');
    expect(output).toContain('Reproduce: node main.js bus');
  });
});
