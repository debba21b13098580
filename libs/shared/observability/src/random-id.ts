/**
 * Random identifiers for hot paths (request ids, audit entry ids): the same CSPRNG bytes as
 * `randomBytes`, drawn from a pooled buffer refilled in one call every few hundred ids, the way
 * `crypto.randomUUID()` buffers its entropy. Unique and unguessable; not for keys or secrets.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** `prefix` followed by `bytes` random bytes in base64url (e.g. `randomId('req_', 12)`). */
export function randomId(prefix: string, bytes: number): string {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 256) throw new RangeError('randomId: bytes must be an integer in 1..256');
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = prefix + pool.toString('base64url', offset, offset + bytes);
  // Each byte is handed out once.
  pool.fill(0, offset, offset + bytes);
  offset += bytes;
  return id;
}
