import { busContractSuite } from './bus-contract.suite';
import { createInProcessBus, firstAfter } from './in-process-bus';

busContractSuite('in-process bus', async ({ prefix, internalSecret }) => createInProcessBus({ prefix, internalSecret, timeoutMs: 2000, instanceId: 'test' }), { sharedConnection: true });

describe('firstAfter (where a consumer resumes in the in-process stream)', () => {
  const seqs = (...s: number[]) => s.map((seq) => ({ seq }));
  it('finds the first message after a sequence, or -1', () => {
    const m = seqs(5, 6, 7, 9, 12);
    expect(firstAfter(m, 0)).toBe(0);
    expect(firstAfter(m, 5)).toBe(1);
    expect(firstAfter(m, 8)).toBe(3);
    expect(firstAfter(m, 9)).toBe(4);
    expect(firstAfter(m, 11)).toBe(4);
    expect(firstAfter(m, 12)).toBe(-1);
    expect(firstAfter([], 3)).toBe(-1);
  });

  it('agrees with a scan on every position of a long stream', () => {
    let at = 1000;
    const m = seqs(...Array.from({ length: 300 }, (_, i) => (at += 1 + (i % 3))));
    for (let s = 990; s <= m[m.length - 1]!.seq + 2; s++) expect(firstAfter(m, s)).toBe(m.findIndex((x) => x.seq > s));
  });
});
