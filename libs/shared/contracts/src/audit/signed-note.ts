/**
 * C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and C2SP tlog-checkpoint
 * bodies (https://c2sp.org/tlog-checkpoint) — the formats of the Go checksum database and
 * Sigstore, so their tooling can check our checkpoints. Key id = first 4 bytes of
 * SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key); a signature line is `— name base64(keyid ‖ sig)`;
 * a verifier key is `name+hex(keyid)+base64(0x01 ‖ public key)`.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

const ED25519_ALG = 0x01;
const EM_DASH = '\u2014';
// DER prefixes that wrap a raw 32-byte Ed25519 seed / public key into PKCS#8 / SPKI.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface NoteSigner {
  name: string;
  keyId: Buffer;
  publicKey: Buffer;
  /** `name+keyid+base64(0x01 ‖ pubkey)`, what /v1/audit/public-key returns. */
  verifierKey: string;
  sign(message: Buffer): Buffer;
}

export interface NoteVerifier {
  name: string;
  keyId: Buffer;
  publicKey: Buffer;
}

function checkName(name: string): void {
  if (!name || /[\s+]/.test(name)) throw new Error(`signed-note key name ${JSON.stringify(name)} must be non-empty without spaces or '+'`);
}

export function noteKeyId(name: string, publicKey: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.from(name, 'utf8'))
    .update(Buffer.from([0x0a, ED25519_ALG]))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

/** A signer from a 32-byte Ed25519 seed. */
export function noteSignerFromSeed(name: string, seed: Buffer): NoteSigner {
  checkName(name);
  if (seed.length !== 32) throw new Error('an Ed25519 seed is 32 bytes');
  const privateKey: KeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
  const keyId = noteKeyId(name, publicKey);
  return {
    name,
    keyId,
    publicKey,
    verifierKey: `${name}+${keyId.toString('hex')}+${Buffer.concat([Buffer.from([ED25519_ALG]), publicKey]).toString('base64')}`,
    sign: (message) => sign(null, message, privateKey),
  };
}

/** Parses a `PRIVATE+KEY+name+keyid+base64(0x01 ‖ seed)` signer key (the Go note package's format). */
export function parseNoteSignerKey(skey: string): NoteSigner {
  const m = /^PRIVATE\+KEY\+([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(skey);
  if (!m) throw new Error('malformed signer key');
  const raw = Buffer.from(m[3]!, 'base64');
  if (raw.length !== 33 || raw[0] !== ED25519_ALG) throw new Error('signer key is not an Ed25519 key');
  const signer = noteSignerFromSeed(m[1]!, raw.subarray(1));
  if (signer.keyId.toString('hex') !== m[2]) throw new Error('signer key id does not match its key');
  return signer;
}

export function parseVerifierKey(vkey: string): NoteVerifier {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  if (!m) throw new Error('malformed verifier key: expected name+keyid+base64');
  const raw = Buffer.from(m[3]!, 'base64');
  if (raw.length !== 33 || raw[0] !== ED25519_ALG) throw new Error('verifier key is not an Ed25519 key');
  const publicKey = raw.subarray(1);
  const keyId = noteKeyId(m[1]!, publicKey);
  if (keyId.toString('hex') !== m[2]) throw new Error('verifier key id does not match its key');
  return { name: m[1]!, keyId, publicKey };
}

/** Signs `text` (which must end in a newline) and returns the whole note. */
export function signNote(text: string, signer: NoteSigner): string {
  if (!text.endsWith('\n')) throw new Error('note text must end with a newline');
  const sig = signer.sign(Buffer.from(text, 'utf8'));
  return `${text}\n${EM_DASH} ${signer.name} ${Buffer.concat([signer.keyId, sig]).toString('base64')}\n`;
}

export interface OpenedNote {
  text: string;
  /** Names of the trusted verifiers whose signature checked out. */
  verifiedBy: string[];
}

/** Returns the note's text if at least one signature of a given verifier checks out; throws otherwise. */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('malformed note: no signature block');
  const text = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2).split('\n');
  if (sigLines.pop() !== '') throw new Error('malformed note: signature block must end with a newline');
  const verifiedBy: string[] = [];
  for (const line of sigLines) {
    const m = new RegExp(`^${EM_DASH} (\\S+) ([A-Za-z0-9+/=]+)$`).exec(line);
    if (!m) throw new Error('malformed note: bad signature line');
    const blob = Buffer.from(m[2]!, 'base64');
    if (blob.length < 5) throw new Error('malformed note: short signature');
    const v = verifiers.find((k) => k.name === m[1] && k.keyId.equals(blob.subarray(0, 4)));
    if (!v) continue;
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, v.publicKey]), format: 'der', type: 'spki' });
    if (!verify(null, Buffer.from(text, 'utf8'), publicKey, blob.subarray(4))) throw new Error(`signature by ${v.name} does not verify`);
    verifiedBy.push(v.name);
  }
  if (!verifiedBy.length) throw new Error('no signature by a trusted key');
  return { text, verifiedBy };
}

export interface Checkpoint {
  origin: string;
  treeSize: number;
  rootHash: Buffer;
}

/** The tlog-checkpoint body: origin, decimal tree size, base64 root hash, each on its own line. */
export function formatCheckpoint(cp: Checkpoint): string {
  return `${cp.origin}\n${cp.treeSize}\n${cp.rootHash.toString('base64')}\n`;
}

export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split('\n');
  if (lines.length < 4 || lines[lines.length - 1] !== '') throw new Error('malformed checkpoint');
  const [origin, size, root] = lines as [string, string, string];
  if (!origin || !/^(0|[1-9][0-9]*)$/.test(size)) throw new Error('malformed checkpoint: origin or tree size');
  const rootHash = Buffer.from(root, 'base64');
  if (rootHash.length !== 32 || rootHash.toString('base64') !== root) throw new Error('malformed checkpoint: root hash');
  return { origin, treeSize: Number(size), rootHash };
}
