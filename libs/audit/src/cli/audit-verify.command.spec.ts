/**
 * `stack audit verify` on export files written here: an entry after the last checkpoint is a
 * failure naming how many are uncovered, and without --key a pass says plainly that it only checked
 * the file against the key the file itself carries.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { MerkleLevels, entryLeafHash, formatCheckpoint, noteSignerFromSeed, signNote, type AuditEntry, type NoteSigner } from '@stack/contracts';

import { auditCliCommand } from './audit-verify.command';

const ORIGIN = 'audit.test/audit/op_cli/1';
const deployment = noteSignerFromSeed('audit.test/audit', randomBytes(32));

const entry = (i: number): AuditEntry => ({ action: 'credential.proxy', id: `aud_${String(i).padStart(6, '0')}`, layer: 'proxy', leaf_index: i, occurred_at: '2026-01-01T00:00:00.000Z', operator_id: 'op_cli', outcome: 'success' });

/** An export of `entries` signed by `signer` at `signedSize` (proofs against it), as GET /v1/audit/export writes one. */
function exportFile(entries: AuditEntry[], signedSize: number | undefined, signer: NoteSigner = deployment): string {
  const tree = MerkleLevels.fromLeaves(entries.map(entryLeafHash));
  const lines = [JSON.stringify({ type: 'header', format: 'stack-audit-export/v1', origin: ORIGIN, tree_id: 1, verifier_key: signer.verifierKey })];
  if (signedSize !== undefined) lines.push(JSON.stringify({ type: 'checkpoint', note: signNote(formatCheckpoint({ origin: ORIGIN, treeSize: signedSize, rootHash: tree.root(signedSize) }), signer) }));
  entries.forEach((e, i) => {
    const inclusion = signedSize !== undefined && i < signedSize ? { inclusion: { leaf_index: i, tree_size: signedSize, hashes: tree.inclusionProof(i, signedSize).map((h) => h.toString('base64')) } } : {};
    lines.push(JSON.stringify({ type: 'entry', entry: e, leaf_index: i, ...inclusion }));
  });
  const file = join(mkdtempSync(join(tmpdir(), 'audit-cli-')), 'export.ndjson');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true));
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += String(chunk)), true));
  try {
    return { code: await auditCliCommand.run(args, []), out, err };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

describe('stack audit verify', () => {
  const entries = Array.from({ length: 12 }, (_, i) => entry(i));

  it('passes an export its checkpoint covers whole, with the deployment key given', async () => {
    const res = await cli('verify', exportFile(entries, 12), '--key', deployment.verifierKey);
    expect(res).toEqual({ code: 0, out: 'OK: 12 entries, 1 checkpoints; verified up to tree size 12\n', err: '' });
  });

  it('fails, naming how many, when entries after the last checkpoint were edited', async () => {
    const edited = entries.map((e, i) => (i >= 9 ? { ...e, outcome: 'denied' as const } : e));
    // Signed at 9 (the first 9 are untouched): the edits sit where no checkpoint reaches.
    const res = await cli('verify', exportFile(edited, 9), '--key', deployment.verifierKey);
    expect(res.code).toBe(1);
    expect(res.out).toBe('FAILED at leaf 9: 3 of 12 entries (leaves 9–11) are not covered by any signed checkpoint (the last is of tree size 9): nothing vouches for them\n');
  });

  it('fails an export with no checkpoint at all', async () => {
    const res = await cli('verify', exportFile(entries, undefined), '--key', deployment.verifierKey);
    expect(res.code).toBe(1);
    expect(res.out).toContain('12 of 12 entries (leaves 0–11) are not covered by any signed checkpoint (there is none)');
  });

  it('without --key says it checked only against the key the file carries, and how to pass the deployment key', async () => {
    // Re-signed by someone else, their key in the header: consistent, so it passes — loudly qualified.
    const forger = noteSignerFromSeed('audit.test/audit', randomBytes(32));
    const forged = exportFile(entries.map((e) => ({ ...e, outcome: 'denied' as const })), 12, forger);
    const res = await cli('verify', forged);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/^OK: 12 entries, 1 checkpoints; verified up to tree size 12 \(against the key in the file itself, not a key you gave/);
    expect(res.err).toContain('WARNING: no --key given');
    expect(res.err).toContain(forger.verifierKey);
    expect(res.err).toContain('NOT that your deployment signed it');
    expect(res.err).toContain('/v1/audit/public-key');
    // With the deployment's key the forgery fails.
    expect(await cli('verify', forged, '--key', deployment.verifierKey)).toMatchObject({ code: 1, out: expect.stringContaining('does not verify') });
  });

  it('refuses --key without a key instead of falling back to the file key', async () => {
    const res = await cli('verify', exportFile(entries, 12), '--key');
    expect(res.code).toBe(2);
    expect(res.err).toContain('usage');
    expect(res.out).toBe('');
  });
});
