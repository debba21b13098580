/**
 * Checks a log offline: every checkpoint's signature, that entries sit at the leaf index they
 * name (no gap, no move), each entry's inclusion proof against a signed checkpoint (recomputing
 * its leaf hash from the entry itself), and every checkpoint's root against the tree the entries
 * make. Reports the first entry that fails. `stack audit verify` and the `verify` command share it.
 */
import type { AuditEntry } from './audit-entry';

import { canonicalJson, type JsonValue } from './canonical-json';
import { MerkleLevels, leafHash, verifyInclusion } from './merkle-tree';
import { openNote, parseCheckpoint, parseVerifierKey, type Checkpoint } from './signed-note';

export interface VerifiableItem {
  entry: AuditEntry;
  leaf_index: number;
  inclusion?: { leaf_index: number; tree_size: number; hashes: string[] };
}

export interface VerifyInput {
  verifierKey: string;
  /** Expected origin of every checkpoint (when known). */
  origin?: string;
  checkpoints: string[];
  items: VerifiableItem[];
}

export interface VerifyFailure {
  leaf_index: number;
  entry_id?: string;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  entries: number;
  checkpoints: number;
  /** The largest signed tree size that checked out. */
  verified_tree_size: number;
  failure?: VerifyFailure;
}

export function entryLeafHash(entry: AuditEntry): Buffer {
  return leafHash(canonicalJson(entry as unknown as JsonValue));
}

export function verifyLog(input: VerifyInput): VerifyResult {
  const base = { entries: input.items.length, checkpoints: input.checkpoints.length, verified_tree_size: 0 };
  const fail = (failure: VerifyFailure): VerifyResult => ({ ...base, ok: false, failure });
  const key = parseVerifierKey(input.verifierKey);
  const cps: Checkpoint[] = [];
  for (const note of input.checkpoints) {
    let cp: Checkpoint;
    try {
      cp = parseCheckpoint(openNote(note, [key]).text);
    } catch (err) {
      return fail({ leaf_index: -1, reason: `checkpoint does not verify: ${(err as Error).message}` });
    }
    if (input.origin && cp.origin !== input.origin) return fail({ leaf_index: -1, reason: `checkpoint of another log (${cp.origin})` });
    cps.push(cp);
  }
  cps.sort((a, b) => a.treeSize - b.treeSize);
  const latest = cps[cps.length - 1];

  // First the order: a gap or a moved entry is named where it is, before any proof (which it would break everywhere).
  for (let pos = 0; pos < input.items.length; pos++) {
    const item = input.items[pos]!;
    const id = item.entry?.id;
    if (item.leaf_index !== pos) return fail({ leaf_index: pos, entry_id: id, reason: `leaf ${pos} is missing: the next entry is listed at leaf ${item.leaf_index}` });
    if (item.entry.leaf_index !== pos) return fail({ leaf_index: pos, entry_id: id, reason: `entry was moved: it was appended at leaf ${item.entry.leaf_index}, found at leaf ${pos}` });
  }
  const tree = new MerkleLevels();
  for (let pos = 0; pos < input.items.length; pos++) {
    const item = input.items[pos]!;
    const id = item.entry.id;
    const hash = entryLeafHash(item.entry);
    if (item.inclusion) {
      const cp = cps.find((c) => c.treeSize === item.inclusion!.tree_size);
      if (!cp) return fail({ leaf_index: pos, entry_id: id, reason: `inclusion proof is against tree size ${item.inclusion.tree_size}, which no signed checkpoint has` });
      const proof = item.inclusion.hashes.map((h) => Buffer.from(h, 'base64'));
      if (item.inclusion.leaf_index !== pos || !verifyInclusion(hash, pos, cp.treeSize, proof, cp.rootHash)) {
        return fail({ leaf_index: pos, entry_id: id, reason: `entry does not match the signed checkpoint of tree size ${cp.treeSize} (inclusion proof fails)` });
      }
    }
    tree.append(hash);
  }
  if (latest && latest.treeSize > tree.size) return fail({ leaf_index: tree.size, reason: `the log ends at ${tree.size} entries but a checkpoint signed ${latest.treeSize}` });
  for (const cp of cps) {
    if (!tree.root(cp.treeSize).equals(cp.rootHash)) {
      // Some entry below this size was changed: name the first whose proof against it fails.
      for (let i = 0; i < cp.treeSize; i++) {
        if (!verifyInclusion(tree.leaf(i), i, cp.treeSize, tree.inclusionProof(i, cp.treeSize), cp.rootHash)) {
          return fail({ leaf_index: i, entry_id: input.items[i]!.entry.id, reason: `the entries do not make the root of the signed checkpoint of tree size ${cp.treeSize}` });
        }
      }
    }
  }
  return { ...base, ok: true, verified_tree_size: latest?.treeSize ?? 0 };
}
