/**
 * `stack audit verify FILE [--key VERIFIER_KEY]`: checks an export (GET /v1/audit/export) offline —
 * checkpoint signatures, leaf hashes recomputed from the entries, inclusion proofs, roots, and that
 * a signed checkpoint covers every entry — and names the first entry that fails. Exit 0 when the
 * log verifies, 1 when it does not, 2 on usage.
 *
 * Without --key the checkpoints are checked against the key the file's own header names. That
 * proves the file consistent, not who signed it: whoever edited the entries could re-sign the
 * checkpoints and put their own key in the header. It still exits 0, with a warning on stderr and
 * on the OK line: the check is worth having (it catches every edit made without re-signing, and
 * an export fetched over TLS from one's own deployment carries that deployment's key), scripts
 * and tests that verify their own fresh export rely on it, and a non-zero code would make it
 * indistinguishable from a log that failed. Who needs to know the signer passes --key.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

import { ExportVerifier } from '@stack/contracts';
import type { CliCommand } from '@stack/runtime';

const USAGE = 'usage: stack audit verify FILE [--key name+keyid+base64]   (the key: GET /v1/audit/public-key → verifier_key)\n';

export const auditCliCommand: CliCommand = {
  summary: 'audit verify FILE [--key KEY]: check an audit export offline (proofs, roots, checkpoint signatures, every entry covered)',
  async run(args) {
    const [sub, file, ...rest] = args;
    const keyAt = rest.indexOf('--key');
    const key = keyAt >= 0 ? rest[keyAt + 1] : undefined;
    // `--key` with nothing after it must not quietly fall back to the file's own key.
    if (sub !== 'verify' || !file || (keyAt >= 0 && !key)) {
      process.stderr.write(USAGE);
      return 2;
    }
    // Line by line: an export of millions of entries is checked without being held.
    const verifier = new ExportVerifier(key);
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) verifier.push(line);
    const result = verifier.finish();
    // Said only of a pass: what a failure names does not depend on whose key it is.
    const selfKey = result.ok ? verifier.selfDeclaredKey : undefined;
    if (selfKey) {
      process.stderr.write(
        [
          'WARNING: no --key given, so the checkpoints were checked against the key the file itself carries:',
          `  ${selfKey}`,
          '  That proves the file is consistent with that key, NOT that your deployment signed it: whoever',
          '  edited the entries could have re-signed the checkpoints with a key of their own and put it in the file.',
          '  To check who signed it, pass the deployment\'s key (from a source you trust, not the file):',
          '    stack audit verify FILE --key "$(curl -s https://YOUR-STACK/v1/audit/public-key | jq -r .verifier_key)"',
          '',
        ].join('\n'),
      );
    }
    if (result.ok) {
      const against = selfKey ? ' (against the key in the file itself, not a key you gave: see the warning)' : '';
      process.stdout.write(`OK: ${result.entries} entries, ${result.checkpoints} checkpoints; verified up to tree size ${result.verified_tree_size}${against}\n`);
      return 0;
    }
    const f = result.failure!;
    process.stdout.write(`FAILED at leaf ${f.leaf_index}${f.entry_id ? ` (entry ${f.entry_id})` : ''}: ${f.reason}\n`);
    return 1;
  },
};
