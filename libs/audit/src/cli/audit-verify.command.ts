/**
 * `stack audit verify FILE [--key VERIFIER_KEY]`: checks an export (GET /v1/audit/export) offline —
 * checkpoint signatures, leaf hashes recomputed from the entries, inclusion proofs, roots — and
 * names the first entry that fails. Exit 0 when the log verifies, 1 when it does not, 2 on usage.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

import { ExportVerifier } from '@stack/contracts';
import type { CliCommand } from '@stack/runtime';

export const auditCliCommand: CliCommand = {
  summary: 'audit verify FILE [--key KEY]: check an audit export offline (proofs, roots, checkpoint signatures)',
  async run(args) {
    const [sub, file, ...rest] = args;
    if (sub !== 'verify' || !file) {
      process.stderr.write('usage: stack audit verify FILE [--key name+keyid+base64]\n');
      return 2;
    }
    const keyAt = rest.indexOf('--key');
    const key = keyAt >= 0 ? rest[keyAt + 1] : undefined;
    // Line by line: an export of millions of entries is checked without being held.
    const verifier = new ExportVerifier(key);
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) verifier.push(line);
    const result = verifier.finish();
    if (result.ok) {
      process.stdout.write(`OK: ${result.entries} entries, ${result.checkpoints} checkpoints; verified up to tree size ${result.verified_tree_size}\n`);
      return 0;
    }
    const f = result.failure!;
    process.stdout.write(`FAILED at leaf ${f.leaf_index}${f.entry_id ? ` (entry ${f.entry_id})` : ''}: ${f.reason}\n`);
    return 1;
  },
};
