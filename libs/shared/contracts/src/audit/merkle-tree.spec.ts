import { createHash } from 'node:crypto';

import { EMPTY_ROOT, MerkleLevels, leafHash, nodeHash, verifyConsistency, verifyInclusion } from './merkle-tree';

/** The textbook recursive MTH of RFC 6962, to check the cached levels against. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

// The leaves of the certificate-transparency reference tests (RFC 6962 implementations share them).
const CT_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => leafHash(Buffer.from(h, 'hex')));

describe('RFC 6962 Merkle tree', () => {
  it('matches the reference roots', () => {
    const t = MerkleLevels.fromLeaves(CT_LEAVES);
    expect(EMPTY_ROOT.toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(t.root(1).toString('hex')).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    expect(t.root(8).toString('hex')).toBe('5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328');
  });

  it('computes every root, inclusion and consistency proof that verifies, and only those', () => {
    const leaves = Array.from({ length: 33 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
    const t = MerkleLevels.fromLeaves(leaves);
    for (let n = 1; n <= leaves.length; n++) {
      const root = mth(leaves.slice(0, n));
      expect(t.root(n).equals(root)).toBe(true);
      for (let m = 0; m < n; m++) {
        const proof = t.inclusionProof(m, n);
        expect(verifyInclusion(leaves[m]!, m, n, proof, root)).toBe(true);
        expect(verifyInclusion(leaves[(m + 1) % n]!, m, n, proof, root)).toBe(n === 1);
      }
      for (let m = 1; m <= n; m++) {
        const proof = t.consistencyProof(m, n);
        expect(verifyConsistency(m, n, proof, mth(leaves.slice(0, m)), root)).toBe(true);
        if (m < n) expect(verifyConsistency(m, n, proof, mth(leaves.slice(1, m + 1)), root)).toBe(false);
      }
    }
  });

  it('keeps its hashes past many buffer growths: roots and proofs of a 3,000-leaf tree match the reference', () => {
    const leaves = Array.from({ length: 3000 }, (_, i) => leafHash(Buffer.from(`grown ${i}`)));
    const t = new MerkleLevels();
    leaves.forEach((l, i) => {
      t.append(l);
      // Roots along the way, at sizes that cross the rows' doublings.
      if ([64, 65, 128, 129, 1023, 1024, 2049].includes(i + 1)) expect(t.root().equals(mth(leaves.slice(0, i + 1)))).toBe(true);
    });
    const root = mth(leaves);
    expect(t.root().equals(root)).toBe(true);
    for (const m of [0, 63, 64, 127, 1024, 2047, 2999]) {
      expect(t.leaf(m).equals(leaves[m]!)).toBe(true);
      expect(verifyInclusion(leaves[m]!, m, 3000, t.inclusionProof(m, 3000), root)).toBe(true);
    }
    expect(verifyConsistency(1000, 3000, t.consistencyProof(1000, 3000), mth(leaves.slice(0, 1000)), root)).toBe(true);
  });

  it('hands out copies: changing a returned hash changes nothing in the tree', () => {
    const leaves = Array.from({ length: 8 }, (_, i) => leafHash(Buffer.from(`copy ${i}`)));
    const t = MerkleLevels.fromLeaves(leaves);
    const root = t.root();
    const before = Buffer.from(root);
    root.fill(0);
    t.leaf(3).fill(0);
    t.subtree(0, 4).fill(0);
    expect(t.root().equals(before)).toBe(true);
    expect(t.leaf(3).equals(leaves[3]!)).toBe(true);
    // And a leaf buffer changed after it was appended leaves the tree as it was.
    const mine = Buffer.from(leafHash(Buffer.from('mine')));
    t.append(mine);
    mine.fill(1);
    expect(t.leaf(8).equals(leafHash(Buffer.from('mine')))).toBe(true);
  });

  it('refuses a hash that is not 32 bytes, and leaves outside the tree', () => {
    const t = new MerkleLevels();
    expect(() => t.append(Buffer.alloc(31))).toThrow(RangeError);
    expect(t.size).toBe(0);
    t.append(leafHash(Buffer.from('x')));
    expect(() => t.leaf(1)).toThrow(RangeError);
    expect(() => t.leaf(-1)).toThrow(RangeError);
    expect(() => t.leaf(0.5)).toThrow(RangeError);
  });

  describe('compact (blockBits): lower levels kept for the last block only', () => {
    const hex = (hashes: Buffer | Buffer[]) => (Array.isArray(hashes) ? hashes : [hashes]).map((h) => h.toString('hex')).join(' ');
    /** Block b's leaves, as storage would give them back. */
    const source =
      (leaves: readonly Buffer[], bits: number, served?: Set<number>) =>
      (b: number): Buffer[] | undefined => {
        served?.add(b);
        const from = b * 2 ** bits;
        return from + 2 ** bits <= leaves.length ? leaves.slice(from, from + 2 ** bits) : undefined;
      };

    it('gives every root, proof and leaf the whole tree gives, at every size, reading only the blocks blocksFor names', () => {
      const leaves = Array.from({ length: 37 }, (_, i) => leafHash(Buffer.from(`compact ${i}`)));
      for (const bits of [1, 2, 3]) {
        const whole = new MerkleLevels();
        const compact = new MerkleLevels({ blockBits: bits });
        expect(compact.blockSize).toBe(2 ** bits);
        for (let n = 1; n <= leaves.length; n++) {
          whole.append(leaves[n - 1]!);
          compact.append(leaves[n - 1]!);
          expect(compact.size).toBe(n);
          // Only the named blocks are given: a computation needing another one would throw.
          const exactly = (compute: (b: (block: number) => readonly Buffer[] | undefined) => Buffer | Buffer[]) => {
            const named = new Set(compact.blocksFor(compute));
            const all = source(leaves, bits);
            return compute((b) => (named.has(b) ? all(b) : undefined));
          };
          for (const size of [n, Math.max(1, n - 1), Math.ceil(n / 2)]) {
            expect((exactly((b) => compact.root(size, b)) as Buffer).equals(whole.root(size))).toBe(true);
          }
          for (let m = 0; m < n; m++) {
            expect(hex(exactly((b) => compact.inclusionProof(m, n, b)))).toBe(hex(whole.inclusionProof(m, n)));
            expect((exactly((b) => compact.leaf(m, b)) as Buffer).equals(leaves[m]!)).toBe(true);
          }
          for (let m = 1; m <= n; m++) expect(hex(exactly((b) => compact.consistencyProof(m, n, b)))).toBe(hex(whole.consistencyProof(m, n)));
        }
      }
    });

    it('needs no block for the current root, and at most a few blocks for a proof', () => {
      const bits = 4;
      const leaves = Array.from({ length: 1000 }, (_, i) => leafHash(Buffer.from(`few ${i}`)));
      const t = MerkleLevels.fromLeaves(leaves, { blockBits: bits });
      expect(t.blocksFor((b) => t.root(1000, b))).toEqual([]);
      expect(t.root().equals(mth(leaves))).toBe(true);
      // Leaf 100 sits in block 6; its path below level 4 lies inside that block.
      expect(t.blocksFor((b) => t.inclusionProof(100, 1000, b))).toEqual([6]);
      const served = new Set<number>();
      expect(verifyInclusion(leaves[100]!, 100, 1000, t.inclusionProof(100, 1000, source(leaves, bits, served)), mth(leaves))).toBe(true);
      expect([...served]).toEqual([6]);
      // A past size cut inside an old block: that block's leaves, and the old leaf's.
      expect(t.blocksFor((b) => t.consistencyProof(333, 1000, b)).length).toBeLessThanOrEqual(2);
      expect(verifyConsistency(333, 1000, t.consistencyProof(333, 1000, source(leaves, bits)), mth(leaves.slice(0, 333)), mth(leaves))).toBe(true);
    });

    it('refuses a computation whose blocks are not given, or given with the wrong number of leaves', () => {
      const leaves = Array.from({ length: 43 }, (_, i) => leafHash(Buffer.from(`refuse ${i}`)));
      const t = MerkleLevels.fromLeaves(leaves, { blockBits: 3 });
      expect(() => t.inclusionProof(3, 43)).toThrow(/leaves of block 0 are needed/);
      expect(() => t.leaf(3)).toThrow(/leaves of block 0 are needed/);
      expect(() => t.inclusionProof(3, 43, () => leaves.slice(0, 7))).toThrow(/has 7 leaves, not 8/);
      // The last, incomplete block (leaves 40–42) is in memory: no blocks needed there.
      expect(t.leaf(42).equals(leaves[42]!)).toBe(true);
      expect(t.blocksFor((b) => t.inclusionProof(41, 43, b))).toEqual([]);
      expect(() => new MerkleLevels({ blockBits: 0 })).toThrow(RangeError);
      expect(() => new MerkleLevels({ blockBits: 1.5 })).toThrow(RangeError);
    });
  });
});

