/**
 * The bus benchmark, shrunk, against the real NATS: it must keep running end to end (all four
 * variants answered, no failed request) and print its ratios and the command that reproduces it.
 */
import { TEST_NATS_URL } from '@stack/testing';

import { parseFlags } from './benchmark';
import { busBenchmark } from './bus.bench';
import { Printer } from './report-printer';

describe('bus benchmark', () => {
  it('measures raw nats, raw nats with the same envelope, @stack/bus and the in-process bus, and prints the reproduce command', async () => {
    const flags = parseFlags(busBenchmark.flags, ['--nats', TEST_NATS_URL, '--requests', '60', '--concurrent-requests', '200', '--concurrency', '8', '--warmup', '10', '--rounds', '2']);
    let output = '';
    const out = new Printer((t) => {
      output += t;
    });
    await busBenchmark.run({ flags, out, command: `bench bus ${flags.commandLine()}` });

    const rows = output.split('\n').filter((l) => /^(sequential|concurrency 8)\s{2}/.test(l));
    const labels = ['raw nats client', 'raw nats + same envelope', '@stack/bus over NATS', 'in-process bus (embedded)'];
    for (const mode of ['sequential', 'concurrency 8']) {
      for (const label of labels) {
        const row = rows.find((l) => l.startsWith(mode) && l.includes(label));
        // n = all requests (2 rounds of half each), errors 0 in the last column.
        expect({ mode, label, row: row?.replace(/\s+/g, ' ') }).toEqual({ mode, label, row: expect.stringMatching(new RegExp(`${mode === 'sequential' ? ' 60 ' : ' 200 '}.* 0$`)) });
      }
    }
    expect(output).toMatch(/sequential\s+\d+\.\d\d×\s+\d+\.\d\d×.*(PASS|FAIL)/);
    expect(output).toContain('Reproduce: bench bus --nats');
    expect(output).not.toContain('failed, first:');
  });
});
