/**
 * RFC 6962 / RFC 9162 Merkle tree hashing: leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ l ‖ r),
 * the tree over n leaves split at the largest power of two below n. Proof generation reads
 * subtree hashes from a MerkleLevels cache (every aligned perfect subtree, built incrementally),
 * so a proof in a tree of a million leaves costs O(log² n) hash operations, not O(n).
 */
import { createHash, hash } from 'node:crypto';

// One-shot hashing (crypto.hash): no Hash stream object per leaf, a little over half the time of createHash.
export function leafHash(data: Buffer | string): Buffer {
  if (typeof data === 'string') return hash('sha256', `\u0000${data}`, 'buffer');
  const bytes = Buffer.allocUnsafe(data.length + 1);
  bytes[0] = 0x00;
  data.copy(bytes, 1);
  return hash('sha256', bytes, 'buffer');
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  const bytes = Buffer.allocUnsafe(1 + left.length + right.length);
  bytes[0] = 0x01;
  left.copy(bytes, 1);
  right.copy(bytes, 1 + left.length);
  return hash('sha256', bytes, 'buffer');
}

export const EMPTY_ROOT = createHash('sha256').digest();

/** Largest power of two strictly smaller than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const HASH_BYTES = 32;

/**
 * One level's hashes, 32 bytes each, end to end in one growing buffer: a tree of a million leaves
 * is a few dozen buffers, not two million small ones for the garbage collector to trace.
 */
class HashRow {
  private buf = Buffer.allocUnsafe(HASH_BYTES * 64);
  length = 0;

  push(hash: Buffer): void {
    if (hash.length !== HASH_BYTES) throw new RangeError(`a tree hash is ${HASH_BYTES} bytes, not ${hash.length}`);
    if ((this.length + 1) * HASH_BYTES > this.buf.length) {
      const grown = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(grown, 0, 0, this.length * HASH_BYTES);
      this.buf = grown;
    }
    hash.copy(this.buf, this.length * HASH_BYTES);
    this.length += 1;
  }

  /** A copy: a hash handed out stays what it is whatever the tree does next. */
  at(index: number): Buffer | undefined {
    if (index < 0 || index >= this.length || !Number.isInteger(index)) return undefined;
    return Buffer.from(this.buf.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES));
  }

  /** A view, for hashing at once (never kept). */
  view(index: number): Buffer {
    return this.buf.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES);
  }

  /** Empties the row, keeping its buffer for what comes next. */
  clear(): void {
    this.length = 0;
  }
}

/**
 * The leaf hashes of one block of a compact tree (`MerkleLevels` with `blockBits`), by block
 * index: block b holds leaves [b·2^blockBits, (b+1)·2^blockBits). Undefined when not at hand.
 */
export type BlockLeaves = (block: number) => readonly Buffer[] | undefined;

export interface MerkleLevelsOptions {
  /**
   * Keep the hashes below level `blockBits` only for the last, incomplete block of 2^blockBits
   * leaves; a proof reaching into an earlier block is given that block's leaf hashes (`BlockLeaves`,
   * e.g. read back from storage). Memory is then about 64 / 2^blockBits bytes a leaf plus one
   * block, instead of 64 bytes a leaf. Unset: every level is kept whole.
   */
  blockBits?: number;
}

/**
 * Every aligned perfect subtree hash of a growing tree: level 0 holds the leaf hashes, level h
 * the hashes of the subtrees of 2^h leaves starting at multiples of 2^h. Appending is O(1)
 * amortised; memory is about 64 bytes per leaf (each level's hashes in one buffer).
 *
 * Compact (`blockBits` = K): levels below K hold only the last, incomplete block's nodes (their
 * rows start at that block); levels from K up stay whole. A subtree below level K inside an
 * earlier block is hashed from that block's leaves, which the caller passes in (`BlockLeaves`);
 * `blocksFor` tells which blocks a computation needs.
 */
export class MerkleLevels {
  private readonly levels: HashRow[] = [new HashRow()];
  /** Compact trees: leaves per block (2^blockBits), and where the last, incomplete block starts. */
  private readonly blockBits: number;
  private readonly block: number;
  private tailStart = 0;
  /** What a dry run (blocksFor) is given for every block. */
  private standIn?: readonly Buffer[];

  constructor(options: MerkleLevelsOptions = {}) {
    const bits = options.blockBits;
    if (bits !== undefined && (!Number.isInteger(bits) || bits < 1 || bits > 20)) throw new RangeError(`blockBits must be an integer from 1 to 20, not ${bits}`);
    this.blockBits = bits ?? Infinity;
    this.block = 2 ** this.blockBits;
  }

  /** Leaves per block of a compact tree (Infinity when every level is kept). */
  get blockSize(): number {
    return this.block;
  }

  get size(): number {
    return this.tailStart + this.levels[0]!.length;
  }

  append(hash: Buffer): void {
    this.levels[0]!.push(hash);
    let h = 0;
    // Below blockBits, indexes are relative to the last block's start; from blockBits up, absolute.
    let idx = this.levels[0]!.length - 1;
    // Completing a right child completes its parent, and so on up.
    while (idx % 2 === 1) {
      const level = this.levels[h]!;
      const parent = nodeHash(level.view(idx - 1), level.view(idx));
      h += 1;
      this.levels[h] ??= new HashRow();
      this.levels[h]!.push(parent);
      idx = (idx - 1) / 2;
      if (h === this.blockBits) {
        // The block is complete: its node at level blockBits stays, its lower levels go.
        for (let low = 0; low < h; low++) this.levels[low]!.clear();
        this.tailStart += this.block;
        idx = this.tailStart / this.block - 1;
      }
    }
  }

  leaf(index: number, blocks?: BlockLeaves): Buffer {
    if (index < 0 || index >= this.size || !Number.isInteger(index)) throw new RangeError(`leaf ${index} is outside the tree of ${this.size}`);
    if (index >= this.tailStart) return this.levels[0]!.at(index - this.tailStart)!;
    return Buffer.from(this.blockLeaves(Math.floor(index / this.block), blocks)[index % this.block]!);
  }

  /** MTH(D[start:end]) for 0 ≤ start < end ≤ size: a copy, as every hash handed out. */
  subtree(start: number, end: number, blocks?: BlockLeaves): Buffer {
    const n = end - start;
    if (n <= 0 || end > this.size) throw new RangeError(`subtree [${start}, ${end}) outside the tree of ${this.size}`);
    return Buffer.from(this.hashOf(start, end, blocks));
  }

  /** MTH(D[start:end]), checked range: a view into a level for a stored subtree, else a fresh hash. Never handed out. */
  private hashOf(start: number, end: number, blocks: BlockLeaves | undefined): Buffer {
    const n = end - start;
    if ((n & (n - 1)) === 0 && start % n === 0) {
      const h = Math.log2(n);
      if (h >= this.blockBits) return this.levels[h]!.view(start / n);
      if (start >= this.tailStart) return this.levels[h]!.view((start - this.tailStart) / n);
      const leaves = this.blockLeaves(Math.floor(start / this.block), blocks);
      // A dry run (blocksFor) only wants to know which blocks: no hashing.
      return leaves === this.standIn ? STAND_IN : MerkleLevels.fromLeaves(leaves.slice(start % this.block, (start % this.block) + n)).root();
    }
    const k = splitPoint(n);
    return nodeHash(this.hashOf(start, start + k, blocks), this.hashOf(start + k, end, blocks));
  }

  private blockLeaves(block: number, blocks: BlockLeaves | undefined): readonly Buffer[] {
    const leaves = blocks?.(block);
    if (!leaves) throw new RangeError(`the leaves of block ${block} are needed and were not given`);
    if (leaves.length !== this.block) throw new RangeError(`block ${block} has ${leaves.length} leaves, not ${this.block}`);
    return leaves;
  }

  root(treeSize = this.size, blocks?: BlockLeaves): Buffer {
    if (treeSize === 0) return EMPTY_ROOT;
    return this.subtree(0, treeSize, blocks);
  }

  /** RFC 6962 §2.1.1 PATH(m, D[0:n]), leaf to root. */
  inclusionProof(leafIndex: number, treeSize: number, blocks?: BlockLeaves): Buffer[] {
    if (leafIndex < 0 || leafIndex >= treeSize || treeSize > this.size) throw new RangeError(`no leaf ${leafIndex} in a tree of ${treeSize}`);
    const path = (m: number, start: number, end: number): Buffer[] => {
      const n = end - start;
      if (n === 1) return [];
      const k = splitPoint(n);
      if (m < k) return [...path(m, start, start + k), this.subtree(start + k, end, blocks)];
      return [...path(m - k, start + k, end), this.subtree(start, start + k, blocks)];
    };
    return path(leafIndex, 0, treeSize);
  }

  /** RFC 6962 §2.1.2 PROOF(m, D[0:n]). */
  consistencyProof(oldSize: number, newSize: number, blocks?: BlockLeaves): Buffer[] {
    if (oldSize < 0 || oldSize > newSize || newSize > this.size) throw new RangeError(`no consistency proof from ${oldSize} to ${newSize} in a tree of ${this.size}`);
    if (oldSize === 0 || oldSize === newSize) return [];
    const sub = (m: number, start: number, end: number, whole: boolean): Buffer[] => {
      const n = end - start;
      if (m === n) return whole ? [] : [this.subtree(start, end, blocks)];
      const k = splitPoint(n);
      if (m <= k) return [...sub(m, start, start + k, whole), this.subtree(start + k, end, blocks)];
      return [...sub(m - k, start + k, end, false), this.subtree(start, start + k, blocks)];
    };
    return sub(oldSize, 0, newSize, true);
  }

  /**
   * The blocks whose leaves `compute` (a root, proof or leaf of this tree given `BlockLeaves`)
   * needs, ascending: found by running it once with stand-in hashes, whose result is dropped.
   */
  blocksFor(compute: (blocks: BlockLeaves) => unknown): number[] {
    if (this.block === Infinity) return [];
    const wanted = new Set<number>();
    this.standIn ??= Array.from({ length: this.block }, () => STAND_IN);
    const standIn = this.standIn;
    compute((block) => {
      wanted.add(block);
      return standIn;
    });
    return [...wanted].sort((a, b) => a - b);
  }

  static fromLeaves(hashes: Iterable<Buffer>, options?: MerkleLevelsOptions): MerkleLevels {
    const levels = new MerkleLevels(options);
    for (const h of hashes) levels.append(h);
    return levels;
  }
}

const STAND_IN = Buffer.alloc(HASH_BYTES);

/** RFC 9162 §2.1.3.2: does `proof` show leaf `leafIndex` (hash `leaf`) in the tree of `treeSize` with `root`? */
export function verifyInclusion(leaf: Buffer, leafIndex: number, treeSize: number, proof: readonly Buffer[], root: Buffer): boolean {
  if (leafIndex < 0 || leafIndex >= treeSize) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: is the tree of `newSize` (`newRoot`) an append-only extension of the tree of `oldSize` (`oldRoot`)? */
export function verifyConsistency(oldSize: number, newSize: number, proof: readonly Buffer[], oldRoot: Buffer, newRoot: Buffer): boolean {
  if (oldSize > newSize) return false;
  if (oldSize === newSize) return proof.length === 0 && oldRoot.equals(newRoot);
  if (oldSize === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = [...proof];
  // When the old tree is a perfect subtree, its root is the proof's implicit first element.
  if ((oldSize & (oldSize - 1)) === 0) path.unshift(oldRoot);
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}
