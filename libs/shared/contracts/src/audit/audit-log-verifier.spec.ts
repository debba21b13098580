import { randomBytes } from 'node:crypto';

import type { AuditEntry } from './audit-entry';
import { ExportVerifier, LogVerifier, entryLeafHash, verifyExportLines, verifyLog, type VerifiableItem } from './audit-log-verifier';
import { MerkleLevels } from './merkle-tree';
import { formatCheckpoint, noteSignerFromSeed, signNote } from './signed-note';

const signer = noteSignerFromSeed('audit.test', randomBytes(32));
const ORIGIN = 'audit.test/op_v/1';

function entry(i: number, action = 'credential.proxy'): AuditEntry {
  return { action, id: `aud_${String(i).padStart(6, '0')}`, layer: 'proxy', leaf_index: i, occurred_at: '2026-01-01T00:00:00.000Z', operator_id: 'op_v', outcome: 'success' };
}

/** A log of `n` entries, checkpoints signed at `sizes`, every entry proven against the last. */
function log(n: number, sizes: number[]): { checkpoints: string[]; items: VerifiableItem[] } {
  const entries = Array.from({ length: n }, (_, i) => entry(i));
  const tree = MerkleLevels.fromLeaves(entries.map(entryLeafHash));
  const checkpoints = sizes.map((size) => signNote(formatCheckpoint({ origin: ORIGIN, treeSize: size, rootHash: tree.root(size) }), signer));
  const last = sizes[sizes.length - 1]!;
  const items = entries.map((e, i) => ({
    entry: e,
    leaf_index: i,
    ...(i < last ? { inclusion: { leaf_index: i, tree_size: last, hashes: tree.inclusionProof(i, last).map((h) => h.toString('base64')) } } : {}),
  }));
  return { checkpoints, items };
}

const verify = (l: { checkpoints: string[]; items: VerifiableItem[] }) => verifyLog({ verifierKey: signer.verifierKey, origin: ORIGIN, ...l });

describe('LogVerifier', () => {
  it('verifies a log entry by entry and says how far the signed checkpoints reach', () => {
    const l = log(300, [100, 257, 300]);
    const v = new LogVerifier({ verifierKey: signer.verifierKey, origin: ORIGIN, checkpoints: l.checkpoints });
    for (const item of l.items) v.add(item);
    expect(v.failure).toBeUndefined();
    expect(v.finish()).toEqual({ ok: true, entries: 300, checkpoints: 3, verified_tree_size: 300 });
  });

  it('refuses entries no signed checkpoint covers, edited or not, naming how many', () => {
    const l = log(300, [100, 257]);
    expect(verify(l)).toEqual({
      ok: false,
      entries: 300,
      checkpoints: 2,
      verified_tree_size: 0,
      failure: { leaf_index: 257, reason: '43 of 300 entries (leaves 257–299) are not covered by any signed checkpoint (the last is of tree size 257): nothing vouches for them' },
    });
    // An entry after the last checkpoint edited: nothing else could have caught it.
    const edited = log(30, [20]);
    edited.items[25] = { entry: entry(25, 'credential.proxz'), leaf_index: 25 };
    expect(verify(edited)).toMatchObject({ ok: false, failure: { leaf_index: 20, reason: expect.stringContaining('10 of 30 entries (leaves 20–29) are not covered') } });
    expect(verify(log(21, [20]))).toMatchObject({ ok: false, failure: { leaf_index: 20, reason: expect.stringContaining('1 of 21 entries (leaf 20) is not covered') } });
    // No checkpoint at all: every entry uncovered, however it reads.
    const bare = log(5, [5]);
    bare.items.forEach((item) => delete item.inclusion);
    bare.items[2] = { entry: entry(2, 'credential.proxz'), leaf_index: 2 };
    expect(verify({ checkpoints: [], items: bare.items })).toMatchObject({ ok: false, entries: 5, failure: { leaf_index: 0, reason: expect.stringContaining('5 of 5 entries (leaves 0–4) are not covered by any signed checkpoint (there is none)') } });
    // A log with no entries and no checkpoint claims nothing.
    expect(verify({ checkpoints: [], items: [] })).toEqual({ ok: true, entries: 0, checkpoints: 0, verified_tree_size: 0 });
  });

  it('names the first entry whose proof fails', () => {
    const l = log(64, [64]);
    l.items[9] = { ...l.items[9]!, entry: entry(9, 'credential.proxz') };
    expect(verify(l)).toMatchObject({ ok: false, entries: 64, failure: { leaf_index: 9, entry_id: 'aud_000009', reason: expect.stringContaining('inclusion proof fails') } });
  });

  it('names a moved entry before the proofs it breaks, even ones listed before it', () => {
    // Entries 30 and 31 swapped, proofs made from the swapped tree (as an export of swapped rows
    // would be): every proof fails from leaf 0 on, but the cause is at leaf 30.
    const entries = Array.from({ length: 64 }, (_, i) => entry(i));
    [entries[30], entries[31]] = [entries[31]!, entries[30]!];
    const swapped = MerkleLevels.fromLeaves(entries.map(entryLeafHash));
    const honest = log(64, [64]);
    const items = entries.map((e, i) => ({ entry: e, leaf_index: i, inclusion: { leaf_index: i, tree_size: 64, hashes: swapped.inclusionProof(i, 64).map((h) => h.toString('base64')) } }));
    const v = new LogVerifier({ verifierKey: signer.verifierKey, origin: ORIGIN, checkpoints: honest.checkpoints });
    v.add(items[0]!);
    // After the first entry only its proof has failed...
    expect(v.failure).toMatchObject({ leaf_index: 0 });
    for (const item of items.slice(1)) v.add(item);
    // ...and once the move is seen, it is what is named.
    expect(v.finish()).toMatchObject({ ok: false, entries: 64, failure: { leaf_index: 30, entry_id: 'aud_000031', reason: expect.stringContaining('moved') } });
  });

  it('names a gap', () => {
    const l = log(50, [50]);
    l.items.splice(20, 1);
    expect(verify(l)).toMatchObject({ ok: false, failure: { leaf_index: 20, entry_id: 'aud_000021', reason: expect.stringContaining('leaf 20 is missing') } });
  });

  it('bounds a change the proofs do not show by the checkpoints: between the last root that matches and the first that does not', () => {
    const l = log(40, [10, 25, 40]);
    for (const item of l.items) delete item.inclusion;
    expect(verify(l).ok).toBe(true);
    l.items[17] = { entry: entry(17, 'credential.proxz'), leaf_index: 17 };
    expect(verify(l)).toMatchObject({ ok: false, failure: { leaf_index: 10, reason: expect.stringContaining('tree size 25: an entry at leaves 10–24 differs') } });
    const one = log(40, [40]);
    for (const item of one.items) delete item.inclusion;
    one.items[3] = { entry: entry(3, 'credential.proxz'), leaf_index: 3 };
    expect(verify(one)).toMatchObject({ ok: false, failure: { leaf_index: 0, reason: expect.stringContaining('leaves 0–39') } });
  });

  it('refuses a log shorter than its checkpoint, a checkpoint of another log and one signed by another key', () => {
    const l = log(40, [40]);
    expect(verify({ ...l, items: l.items.slice(0, 39) })).toMatchObject({ ok: false, failure: { leaf_index: 39, reason: expect.stringContaining('ends at 39') } });
    expect(verifyLog({ verifierKey: signer.verifierKey, origin: 'audit.test/op_other/1', ...l })).toMatchObject({ ok: false, failure: { leaf_index: -1, reason: expect.stringContaining('another log') } });
    const other = noteSignerFromSeed('audit.test', randomBytes(32));
    expect(verifyLog({ verifierKey: other.verifierKey, ...l })).toMatchObject({ ok: false, entries: 40, failure: { leaf_index: -1, reason: expect.stringContaining('does not verify') } });
  });
});

/** The export of `log(n, sizes)` as NDJSON lines, made one at a time. */
function* exportOf(n: number, sizes: number[]): Generator<string> {
  const l = log(n, sizes);
  yield JSON.stringify({ type: 'header', format: 'stack-audit-export/v1', origin: ORIGIN, tree_id: 1, verifier_key: signer.verifierKey });
  for (const note of l.checkpoints) yield JSON.stringify({ type: 'checkpoint', note });
  for (const item of l.items) yield JSON.stringify({ type: 'entry', ...item });
}

describe('ExportVerifier', () => {
  it('checks an export line by line as it is read, holding no line', () => {
    const v = new ExportVerifier();
    let read = 0;
    for (const line of exportOf(500, [200, 500])) {
      v.push(line);
      read++;
    }
    expect(read).toBe(503);
    expect(v.finish()).toEqual({ ok: true, entries: 500, checkpoints: 2, verified_tree_size: 500 });
    expect(verifyExportLines(exportOf(10, [10]))).toMatchObject({ ok: true, entries: 10 });
  });

  it('refuses an export whose entries after its last checkpoint were edited, or that has no checkpoint', () => {
    const lines = [...exportOf(30, [20])];
    const edited = lines.map((line, i) => (i === 2 + 25 ? line.replace('"credential.proxy"', '"credential.proxz"') : line));
    expect(verifyExportLines(edited)).toMatchObject({ ok: false, entries: 30, failure: { leaf_index: 20, reason: expect.stringContaining('10 of 30 entries (leaves 20–29) are not covered') } });
    const none = [lines[0]!, ...lines.slice(2).map((line) => line.replace(/,"inclusion":\{[^}]*\}/, ''))];
    expect(verifyExportLines(none)).toMatchObject({ ok: false, entries: 30, checkpoints: 0, failure: { leaf_index: 0, reason: expect.stringContaining('30 of 30 entries') } });
  });

  it('takes the key given over the one in the header', () => {
    const other = noteSignerFromSeed('audit.test', randomBytes(32));
    expect(verifyExportLines(exportOf(10, [10]), other.verifierKey)).toMatchObject({ ok: false, failure: { reason: expect.stringContaining('does not verify') } });
    const headless = [...exportOf(10, [10])].slice(1);
    expect(verifyExportLines(headless)).toMatchObject({ ok: false, failure: { leaf_index: -1, reason: expect.stringContaining('no verifier key') } });
    expect(verifyExportLines(headless, signer.verifierKey)).toMatchObject({ ok: true, entries: 10 });
    for (const key of ['not-a-key', '5']) {
      const header = JSON.stringify({ type: 'header', verifier_key: key === '5' ? 5 : key });
      expect(verifyExportLines([header, ...headless])).toMatchObject({ ok: false, failure: { leaf_index: -1, reason: expect.stringContaining('the verifier key does not parse') } });
    }
  });

  it('refuses a line that is not JSON and a checkpoint after the entries, and counts every entry', () => {
    const lines = [...exportOf(30, [30])];
    const garbled = [...lines.slice(0, 12), '{"type":"entry",', ...lines.slice(12)];
    expect(verifyExportLines(garbled)).toMatchObject({ ok: false, failure: { reason: 'line 13 is not JSON' } });
    // A checkpoint for a larger tree appended after the entries would change what the entries were checked against.
    const late = [lines[0]!, ...lines.slice(2), lines[1]!];
    expect(verifyExportLines(late)).toMatchObject({ ok: false, entries: 30, failure: { reason: 'line 32: a checkpoint after the entries (an export lists its header and checkpoints first)' } });
    // The first failure is the one named; later entries are counted, not checked.
    const tampered = lines.map((line, i) => (i === 5 ? line.replace('"credential.proxy"', '"credential.proxz"') : line));
    expect(verifyExportLines(tampered)).toMatchObject({ ok: false, entries: 30, failure: { leaf_index: 3, reason: expect.stringContaining('inclusion proof fails') } });
    // A line that is not JSON after it does not hide it; a late checkpoint does (it changes what
    // every entry was checked against).
    expect(verifyExportLines([...tampered, lines[1]!])).toMatchObject({ ok: false, failure: { leaf_index: 30, reason: expect.stringContaining('a checkpoint after the entries') } });
    expect(verifyExportLines([...tampered.slice(0, 20), '{', ...tampered.slice(20)])).toMatchObject({ ok: false, entries: 18, failure: { leaf_index: 3 } });
    // A line that is not JSON before any failing entry is the failure, not the entries it cut off.
    expect(verifyExportLines([...lines.slice(0, 20), '{', ...lines.slice(20)])).toMatchObject({ ok: false, entries: 18, failure: { leaf_index: 18, reason: 'line 21 is not JSON' } });
  });

  it('names a hostile entry instead of failing itself: a number canonical JSON cannot hold, a proof that is no list of strings', () => {
    const lines = [...exportOf(12, [12])];
    const huge = lines.map((line, i) => (i === 4 ? line.replace('"outcome":"success"', '"outcome":"success","n":1e400') : line));
    expect(verifyExportLines(huge)).toMatchObject({ ok: false, entries: 12, failure: { leaf_index: 2, entry_id: 'aud_000002', reason: 'entry cannot be checked: canonical JSON cannot hold a non-finite number' } });
    for (const hashes of ['"AAAA"', '[1,2]', '{"0":"AAAA"}']) {
      const bad = lines.map((line, i) => (i === 6 ? line.replace(/"hashes":\[[^\]]*\]/, `"hashes":${hashes}`) : line));
      expect(verifyExportLines(bad)).toMatchObject({ ok: false, failure: { leaf_index: 4, reason: 'entry cannot be checked: its inclusion proof is not a list of base64 hashes' } });
    }
    const oddId = lines.map((line, i) => (i === 3 ? line.replace('"action":"credential.proxy"', '"action":"credential.proxz"').replace('"id":"aud_000001"', '"id":{"not":"a string"}') : line));
    expect(verifyExportLines(oddId).failure).toEqual({ leaf_index: 1, reason: expect.stringContaining('inclusion proof fails') });
  });
});
