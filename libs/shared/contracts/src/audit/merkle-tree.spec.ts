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
});
