/**
 * Checks a log offline: every checkpoint's signature, that entries sit at the leaf index they
 * name (no gap, no move), each entry's inclusion proof against a signed checkpoint (recomputing
 * its leaf hash from the entry itself), and every checkpoint's root against the tree the entries
 * make; and that the last checkpoint covers every entry (one after it was checked against nothing).
 * Reports the first entry that fails. `stack audit verify` and the `verify` command share it.
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
  const verifier = new LogVerifier(input);
  for (const item of input.items) verifier.add(item);
  return verifier.finish();
}

/**
 * The same checks one entry at a time, for logs too big to hold: it keeps the checkpoints and the
 * tree of leaf hashes (64 bytes a leaf), never the entries. What it reports is what a check of the whole log names first: a gap or a
 * moved entry wherever it is (it breaks every proof of the tree, so a failing proof before it is
 * its symptom), else the first entry whose proof fails, else the leaves a root does not match.
 */
export class LogVerifier {
  private readonly cps: Checkpoint[] = [];
  private readonly bySize = new Map<number, Checkpoint>();
  private readonly tree = new MerkleLevels();
  private readonly checkpointCount: number;
  private entries = 0;
  /** A checkpoint that does not verify, or the first gap or moved entry: nothing after it is checked. */
  private orderFailure?: VerifyFailure;
  /** The first entry whose proof failed: the order is still checked after it, nothing else. */
  private proofFailure?: VerifyFailure;

  constructor(input: Omit<VerifyInput, 'items'>) {
    this.checkpointCount = input.checkpoints.length;
    let key: ReturnType<typeof parseVerifierKey>;
    try {
      key = parseVerifierKey(input.verifierKey);
    } catch (err) {
      this.orderFailure = { leaf_index: -1, reason: `the verifier key does not parse: ${(err as Error).message}` };
      return;
    }
    for (const note of input.checkpoints) {
      let cp: Checkpoint;
      try {
        cp = parseCheckpoint(openNote(note, [key]).text);
      } catch (err) {
        this.orderFailure = { leaf_index: -1, reason: `checkpoint does not verify: ${(err as Error).message}` };
        return;
      }
      if (input.origin && cp.origin !== input.origin) {
        this.orderFailure = { leaf_index: -1, reason: `checkpoint of another log (${cp.origin})` };
        return;
      }
      this.cps.push(cp);
    }
    this.cps.sort((a, b) => a.treeSize - b.treeSize);
    // The first signed at each size, as a search of the sorted list would find it.
    for (const cp of this.cps) if (!this.bySize.has(cp.treeSize)) this.bySize.set(cp.treeSize, cp);
  }

  /** The failure that will be reported, as far as the entries so far tell (the roots are checked by finish). */
  get failure(): VerifyFailure | undefined {
    return this.orderFailure ?? this.proofFailure;
  }

  /** Checks the next entry. */
  add(item: VerifiableItem): void {
    const pos = this.entries++;
    if (this.orderFailure) return;
    const id = typeof item.entry?.id === 'string' ? item.entry.id : undefined;
    if (item.leaf_index !== pos) {
      this.orderFailure = { leaf_index: pos, entry_id: id, reason: `leaf ${pos} is missing: the next entry is listed at leaf ${item.leaf_index}` };
      return;
    }
    if (item.entry.leaf_index !== pos) {
      this.orderFailure = { leaf_index: pos, entry_id: id, reason: `entry was moved: it was appended at leaf ${item.entry.leaf_index}, found at leaf ${pos}` };
      return;
    }
    if (this.proofFailure) return;
    let hash: Buffer;
    try {
      // What a file holds is not always what its types say: an entry canonical JSON cannot hold
      // (a number too large), a proof that is not a list of strings.
      hash = entryLeafHash(item.entry);
      if (item.inclusion) {
        // Looked up, not searched: a tree checkpointed every minute has ~1,440 a day, and every entry asks.
        const cp = this.bySize.get(item.inclusion.tree_size);
        if (!cp) {
          this.proofFailure = { leaf_index: pos, entry_id: id, reason: `inclusion proof is against tree size ${item.inclusion.tree_size}, which no signed checkpoint has` };
          return;
        }
        const hashes: unknown = item.inclusion.hashes;
        if (!Array.isArray(hashes) || !hashes.every((h) => typeof h === 'string')) throw new Error('its inclusion proof is not a list of base64 hashes');
        const proof = hashes.map((h: string) => Buffer.from(h, 'base64'));
        if (item.inclusion.leaf_index !== pos || !verifyInclusion(hash, pos, cp.treeSize, proof, cp.rootHash)) {
          this.proofFailure = { leaf_index: pos, entry_id: id, reason: `entry does not match the signed checkpoint of tree size ${cp.treeSize} (inclusion proof fails)` };
          return;
        }
      }
    } catch (err) {
      this.proofFailure = { leaf_index: pos, entry_id: id, reason: `entry cannot be checked: ${(err as Error).message}` };
      return;
    }
    this.tree.append(hash);
  }

  /**
   * The verdict on everything added: the first failure, or the largest signed size that checked
   * out. A log passes only when that size covers every entry: an entry after the last checkpoint
   * (or any entry of a log with none) was checked against nothing and could say anything.
   */
  finish(): VerifyResult {
    const base = { entries: this.entries, checkpoints: this.checkpointCount, verified_tree_size: 0 };
    const failure = this.failure ?? this.rootFailure() ?? this.coverageFailure();
    if (failure) return { ...base, ok: false, failure };
    return { ...base, ok: true, verified_tree_size: this.cps[this.cps.length - 1]?.treeSize ?? 0 };
  }

  private coverageFailure(): VerifyFailure | undefined {
    const signed = this.cps[this.cps.length - 1]?.treeSize ?? 0;
    const uncovered = this.entries - signed;
    if (uncovered <= 0) return undefined;
    const which = uncovered === 1 ? `(leaf ${signed}) is` : `(leaves ${signed}–${this.entries - 1}) are`;
    const why = signed === 0 ? 'there is none' : `the last is of tree size ${signed}`;
    return { leaf_index: signed, reason: `${uncovered} of ${this.entries} entries ${which} not covered by any signed checkpoint (${why}): nothing vouches for ${uncovered === 1 ? 'it' : 'them'}` };
  }

  private rootFailure(): VerifyFailure | undefined {
    const { tree } = this;
    const latest = this.cps[this.cps.length - 1];
    if (latest && latest.treeSize > tree.size) return { leaf_index: tree.size, reason: `the log ends at ${tree.size} entries but a checkpoint signed ${latest.treeSize}` };
    // Checkpoints smallest first: the first whose root the entries do not make bounds the change
    // to the leaves after the last one they do make. Which leaf it is, the signed roots cannot tell
    // (every proof of a tree with one leaf changed fails); an entry's own proof can.
    let from = 0;
    for (const cp of this.cps) {
      if (!tree.root(cp.treeSize).equals(cp.rootHash)) {
        const range = cp.treeSize - from === 1 ? `leaf ${from}` : `leaves ${from}–${cp.treeSize - 1}`;
        return { leaf_index: from, reason: `the entries do not make the root of the signed checkpoint of tree size ${cp.treeSize}: an entry at ${range} differs from what it signed` };
      }
      from = cp.treeSize;
    }
    return undefined;
  }
}

/** Parses export lines (NDJSON) and verifies them; `trustedKey` overrides the key in the file's header. */
export function verifyExportLines(lines: Iterable<string>, trustedKey?: string): VerifyResult {
  const verifier = new ExportVerifier(trustedKey);
  for (const line of lines) verifier.push(line);
  return verifier.finish();
}

/**
 * Verifies an export line by line, as it is read or made: what it keeps grows by ~64 bytes an
 * entry (its leaf hash in the tree), never the entries, so a log of millions of entries is
 * checked without holding it. An export lists its header and checkpoints before its entries;
 * a header or checkpoint after the first entry is a failure.
 */
export class ExportVerifier {
  private header?: { origin?: string; verifier_key?: string };
  private readonly checkpoints: string[] = [];
  private log?: LogVerifier;
  private lineNo = 0;
  private entries = 0;
  private unreadable = false;
  /** A header or checkpoint came after the entries. */
  private late = false;
  private failure?: VerifyFailure;

  constructor(private readonly trustedKey?: string) {}

  /**
   * The key the file names for itself, when no trusted key was given and the checks used it: they
   * then prove the file consistent with its own key, not that the deployment signed it (whoever
   * rewrote the entries could have re-signed the checkpoints and put their key in the header).
   */
  get selfDeclaredKey(): string | undefined {
    return this.trustedKey === undefined && typeof this.header?.verifier_key === 'string' ? this.header.verifier_key : undefined;
  }

  push(line: string): void {
    this.lineNo++;
    // After a line that is not JSON nothing more is read (as a reader of the file would stop).
    if (this.unreadable || !line.trim()) return;
    let obj: { type?: string; note?: string; origin?: string; verifier_key?: string } & Partial<VerifiableItem>;
    try {
      obj = JSON.parse(line) as typeof obj;
    } catch {
      this.unreadable = true;
      this.failure ??= { leaf_index: this.entries, reason: `line ${this.lineNo} is not JSON` };
      return;
    }
    if (obj.type === 'header' || (obj.type === 'checkpoint' && obj.note)) {
      if (this.log && !this.late) {
        this.late = true;
        this.failure = { leaf_index: this.entries, reason: `line ${this.lineNo}: a ${obj.type} after the entries (an export lists its header and checkpoints first)` };
      }
      else if (obj.type === 'header') this.header = obj;
      else this.checkpoints.push(obj.note!);
    } else if (obj.type === 'entry' && obj.entry) {
      // Entries are counted after a failure too; only checked before it.
      this.entries++;
      const log = this.failure ? undefined : this.start();
      log?.add({ entry: obj.entry, leaf_index: Number(obj.leaf_index), ...(obj.inclusion ? { inclusion: obj.inclusion } : {}) });
    }
  }

  finish(): VerifyResult {
    // A header or checkpoint after the entries first: it changes what every entry was checked
    // against, so the entries' failures are its symptoms. Else the first failure in the file's
    // order: an entry's (the log stopped being fed at a failure of the file, so any it has came
    // first), else the line's, else the roots'.
    const log = (this.log?.failure && !this.late) || !this.failure ? this.start() : undefined;
    if (log) return { ...log.finish(), entries: this.entries };
    return { ok: false, entries: this.entries, checkpoints: this.checkpoints.length, verified_tree_size: 0, failure: this.failure! };
  }

  /** The log verifier, made at the first entry (or the end) from the header and checkpoints read so far. */
  private start(): LogVerifier | undefined {
    if (this.log) return this.log;
    const key = this.trustedKey ?? this.header?.verifier_key;
    if (!key) {
      this.failure ??= { leaf_index: -1, reason: 'no verifier key (give --key or an export with a header)' };
      return undefined;
    }
    this.log = new LogVerifier({ verifierKey: key, origin: this.header?.origin, checkpoints: this.checkpoints });
    return this.log;
  }
}
