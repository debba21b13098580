/**
 * The audit log: turns STACK_AUDIT events into entries (allow-listed fields only), appends them
 * in batches (one transaction each, acknowledged after commit, deduplicated by id), keeps each
 * operator's Merkle tree in memory for fast proofs, signs checkpoints, and answers reads for a
 * caller — always inside the caller's own operator.
 */
import { hkdfSync } from 'node:crypto';

import type { EventContext, Handle } from '@stack/bus';
import {
  AuditCheckpointSignedEvent,
  AuditRecordedEvent,
  SYSTEM_AUDIT_OPERATOR,
  StackError,
  type AuditCheckpoint,
  type AuditEntry,
  type CallerContext,
  type PayloadOf,
  MerkleLevels,
  type BlockLeaves,
  canonicalAuditEntry,
  entryLeafHash,
  formatCheckpoint,
  leafHash,
  noteSignerFromSeed,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
  verifyInclusion,
  ExportVerifier,
  type NoteSigner,
  type VerifyResult,
} from '@stack/contracts';
import type { ServiceKit } from '@stack/runtime';

import { AuditLogRepository, type CheckpointRow, type Head, type PreparedEntry, type StoredRow, type TreeRef } from '../store/audit-log.repository';

type RecordedPayload = PayloadOf<typeof AuditRecordedEvent>;

/** Durable consumer name on STACK_AUDIT: a wire name, renaming it replays the stream. */
export const AUDIT_INGEST_CONSUMER = 'audit-ingest';
const MAX_BATCH = 1000;
// How long a batch waits for company. Nothing waits on the commit except readers of the log (a proxy
// call waits only for the stream's acknowledgement), so a longer wait buys fewer, larger transactions.
const LINGER_MS = 25;
const MAX_IN_FLIGHT = 4000;
// What a crashed instance held comes back after this long; a batch commits far sooner (it waits at most LINGER_MS plus one transaction).
const ACK_WAIT_MS = 10_000;
/**
 * A live tree keeps its hashes below level 6 for its last block of 64 leaves only; a proof or a
 * past root that reaches into an earlier block reads that block's 64 leaf hashes back from the log
 * (one indexed range read). A million entries then take ~3 MiB (measured); kept whole, the levels
 * took 65 MiB a million for as long as the tree lived. Blocks of 1,024 leaves (0.8 MiB a million)
 * made every proof read 1,024 rows: a REST proof in a million-entry log took 9.3 ms at p50 against
 * 3.7–6.5 before; with 64, 5.2–6.8 (`npm run bench -- audit`, a slow machine).
 */
export const AUDIT_TREE_BLOCK_BITS = 6;
/** Tree ids are Postgres integers. */
export const MAX_TREE_ID = 2 ** 31 - 1;
/** Rows an export reads at a time: a multiple of the block size. */
const EXPORT_PAGE = 4096;

/**
 * A lone surrogate or a NUL, and a pair `cut` would split: Postgres refuses them in text (the
 * append's JSON rows then fail, and the batch with them, on every redelivery), and RFC 8785 wants
 * I-JSON (no lone surrogates), which other verifiers' parsers would turn into U+FFFD.
 */
const ILL_FORMED = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const wellFormed = (v: string) => v.replace(ILL_FORMED, '\uFFFD');
/** At most n UTF-16 units, never ending in half a pair, well-formed. */
const cut = (v: string | undefined, n: number) => {
  if (v === undefined || v === '') return undefined;
  let s = v.slice(0, n);
  if (v.length > n && /[\uD800-\uDBFF]$/.test(s)) s = s.slice(0, -1);
  return wellFormed(s);
};

/** The allow-list: what of an event becomes an entry. Unknown fields never reach the log; absent ones are never set. */
export function entryFromEvent(p: RecordedPayload): PreparedEntry['entry'] {
  const entry: Record<string, unknown> = {
    id: wellFormed(p.id),
    occurred_at: new Date(p.occurred_at).toISOString(),
    operator_id: cut(p.operator_id, 128) ?? SYSTEM_AUDIT_OPERATOR,
  };
  const set = (k: string, v: unknown) => {
    if (v !== undefined) entry[k] = v;
  };
  set('member_id', cut(p.member_id, 128));
  set('agent_id', cut(p.agent_id, 128));
  set('client_id', cut(p.client_id, 128));
  set('passport_jti', cut(p.passport_jti, 128));
  set('session_id', cut(p.session_id, 128));
  entry.layer = p.layer;
  entry.action = cut(p.action, 128) ?? '';
  entry.outcome = p.outcome;
  const t = p.target;
  if (t) {
    const target: Record<string, string> = {};
    const put = (k: string, v: string | undefined) => {
      if (v !== undefined) target[k] = v;
    };
    put('service', cut(t.service, 128));
    put('connection', cut(t.connection, 128));
    put('method', cut(t.method?.toUpperCase(), 16));
    put('host', cut(t.host?.toLowerCase(), 253));
    // Never a query string or fragment, whatever the sender did.
    put('path', cut(t.path?.split(/[?#]/, 1)[0], 2048));
    if (Object.keys(target).length) entry.target = target;
  }
  set('duration_ms', p.duration_ms === undefined ? undefined : Math.max(0, Math.round(p.duration_ms)));
  set('error_code', cut(p.error_code, 64));
  set('trace_id', cut(p.trace_id, 64));
  return entry as PreparedEntry['entry'];
}

export function finishEntry(entry: PreparedEntry['entry'], leafIndex: number): { canonical: string; leafHash: Buffer } {
  const canonical = canonicalAuditEntry(entry as unknown as Record<string, unknown>, leafIndex);
  return { canonical, leafHash: leafHash(canonical) };
}

/** Entries waiting for one append, and the one promise their messages are acknowledged by. */
interface PendingBatch {
  entries: PreparedEntry[];
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface ReadScope {
  operatorId: string;
  /** Set for a caller that may read only its own actions. */
  memberId?: string;
  agentId?: string;
}

/**
 * Which part of which log a caller may read: admins and the system their whole operator, others
 * their own actions. A member's API key or access token reads only with the stack:audit scope (or
 * stack:admin), as the MCP gateway asks of stack_audit_list and stack_audit_verify: a token granted
 * stack:services alone reads nothing. An agent acting with its passport reads its own actions: a
 * passport carries no stack:* scope for the log (it names connections), and what it did is its own.
 */
export function readScope(caller: CallerContext): ReadScope {
  if (!caller.operator_id) throw new StackError('FORBIDDEN', 'the caller belongs to no operator');
  const admin = caller.kind === 'system' || caller.scopes.includes('stack:admin');
  if (admin) return { operatorId: caller.operator_id };
  // A caller limited to its own actions must say whose they are: without the id there is nothing of its own to read.
  if (caller.kind === 'agent') {
    if (!caller.agent_id) throw new StackError('FORBIDDEN', 'the caller has no agent id');
    return { operatorId: caller.operator_id, agentId: caller.agent_id };
  }
  if (!caller.scopes.includes('stack:audit')) throw new StackError('FORBIDDEN', 'reading the audit log needs the stack:audit scope', { required_scopes: ['stack:audit'] });
  if (!caller.member_id) throw new StackError('FORBIDDEN', 'the caller has no member id');
  return { operatorId: caller.operator_id, memberId: caller.member_id };
}

export class AuditLog {
  readonly repo: AuditLogRepository;
  readonly signer: NoteSigner;
  private readonly keyHost: string;
  /** Oldest first; only the last one takes new entries, up to MAX_BATCH. */
  private batches: PendingBatch[] = [];
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private readonly trees = new Map<string, { levels: MerkleLevels; sync?: Promise<MerkleLevels> }>();
  private consumer?: Handle;
  private checkpointTimer?: NodeJS.Timeout;
  private signing?: Promise<void>;
  /** Called with the ids appended after each commit (benchmarks measure publish-to-commit with it). */
  onCommitted?: (ids: string[]) => void;

  constructor(private readonly kit: ServiceKit) {
    this.repo = new AuditLogRepository(kit.dataSource);
    this.keyHost = new URL(kit.config.publicUrl).host;
    // The checkpoint key is derived from the internal secret, so every replica signs with the same key and nothing more must be stored.
    const seed = Buffer.from(hkdfSync('sha256', Buffer.from(kit.config.internalSecret ?? '', 'base64'), 'stack-audit', 'checkpoint-signing-key-v1', 32));
    this.signer = noteSignerFromSeed(`${this.keyHost}/audit`, seed);
  }

  /** The checkpoint origin of one tree: the log's identity, so a checkpoint of one tree never passes for another's. */
  origin(tree: TreeRef): string {
    return `${this.keyHost}/audit/${tree.operatorId}/${tree.treeId}`;
  }

  // ---- ingest --------------------------------------------------------------------------

  async start(): Promise<void> {
    this.consumer = await this.kit.bus.consume(
      { durable: AUDIT_INGEST_CONSUMER, events: [AuditRecordedEvent], batch: MAX_BATCH, maxInFlight: MAX_IN_FLIGHT, ackWaitMs: ACK_WAIT_MS },
      (_event, payload, ctx) => this.accept(payload as RecordedPayload, ctx),
    );
    const every = this.kit.config.auditCheckpointIntervalMs;
    this.checkpointTimer = setInterval(() => void this.signDue().catch((err: Error) => this.kit.logger.warn({ err: err.message }, 'audit checkpoint signing failed')), every);
    this.checkpointTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.checkpointTimer);
    await this.consumer?.stop();
    await this.flushing.catch(() => undefined);
    await this.signing?.catch(() => undefined);
  }

  /**
   * Holds the message until its batch commits: the bus acknowledges it only then. The messages of
   * a batch share its one promise (not a promise, two closures and a record each: two messages a
   * proxy call).
   */
  private accept(payload: RecordedPayload, _ctx: EventContext): Promise<void> {
    const entry = entryFromEvent(payload);
    let batch = this.batches[this.batches.length - 1];
    if (!batch || batch.entries.length >= MAX_BATCH) batch = this.openBatch();
    batch.entries.push({ entry });
    if (batch.entries.length >= MAX_BATCH) this.scheduleFlush(0);
    else this.scheduleFlush(LINGER_MS);
    return batch.done;
  }

  private openBatch(): PendingBatch {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const batch = { entries: [], done, resolve, reject };
    this.batches.push(batch);
    return batch;
  }

  private scheduleFlush(delay: number): void {
    if (delay === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
    }, delay);
  }

  private async flush(): Promise<void> {
    const batch = this.batches.shift();
    if (!batch) return;
    try {
      const appended = await this.repo.appendBatch(batch.entries, finishEntry);
      for (const a of appended) {
        const t = this.trees.get(treeKey(a));
        // Extend a loaded tree in place when this commit continues it; otherwise the next read syncs.
        if (t && !t.sync && t.levels.size === a.leafIndex) t.levels.append(a.leafHash);
      }
      batch.resolve();
      this.onCommitted?.(appended.map((a) => a.id));
    } catch (err) {
      this.kit.logger.warn({ err: (err as Error).message, entries: batch.entries.length }, 'audit batch not appended; its events will be redelivered');
      batch.reject(err);
    }
    const next = this.batches[0]?.entries.length ?? 0;
    if (next >= MAX_BATCH) this.scheduleFlush(0);
    else if (next) this.scheduleFlush(LINGER_MS);
  }

  // ---- trees and checkpoints ------------------------------------------------------------

  /** A tree as stored, with at least `size` leaves (default: its current size). */
  async tree(ref: TreeRef, size?: number): Promise<MerkleLevels> {
    const key = treeKey(ref);
    const target = size ?? (await this.repo.treeSize(ref));
    let t = this.trees.get(key);
    if (!t) {
      // Nothing is kept for a tree without leaves (or no tree at all): a read adds no entry for it.
      if (target === 0) return new MerkleLevels({ blockBits: AUDIT_TREE_BLOCK_BITS });
      t = { levels: new MerkleLevels({ blockBits: AUDIT_TREE_BLOCK_BITS }) };
      this.trees.set(key, t);
    }
    if (t.levels.size >= target) return t.levels;
    const entry = t;
    const missing = () => new StackError('INTERNAL_ERROR', `audit log integrity failure: leaf ${entry.levels.size} of ${key} is missing`);
    const load = async (): Promise<MerkleLevels> => {
      try {
        const want = await this.repo.treeSize(ref);
        while (entry.levels.size < want) {
          const from = entry.levels.size;
          const rows = await this.repo.leafHashes(ref, from, Math.min(want, from + 50_000));
          if (!rows.length) throw missing();
          for (const r of rows) {
            if (r.leaf_index !== entry.levels.size) {
              this.trees.delete(key);
              throw missing();
            }
            entry.levels.append(r.leaf_hash);
          }
        }
        return entry.levels;
      } catch (err) {
        // Nothing of it loaded (its leaves are gone): no entry kept for it either.
        if (entry.levels.size === 0 && this.trees.get(key) === entry) this.trees.delete(key);
        throw err;
      } finally {
        entry.sync = undefined;
      }
    };
    for (;;) {
      // A load under way may have read the tree's size before the leaves wanted here were appended: then one more.
      const joined = entry.sync !== undefined;
      const levels = await (entry.sync ??= load());
      if (levels.size >= target) return levels;
      if (!joined) throw new StackError('NOT_FOUND', `the tree of ${key} has ${levels.size} leaves, not ${target}`);
    }
  }

  /**
   * `compute` (a root, proof or leaf of a compact tree) given the leaf hashes of the blocks it
   * needs, read from the log. A block that is not whole in storage means the log lost a leaf the
   * tree was built from.
   */
  private async withLeaves<T>(ref: TreeRef, levels: MerkleLevels, compute: (blocks: BlockLeaves) => T): Promise<T> {
    const loaded = new Map<number, Buffer[]>();
    for (;;) {
      // Asked again after every read: an append meanwhile may have completed the block that was the
      // tree's last (its lower levels then left memory).
      const missing = levels.blocksFor(compute).filter((b) => !loaded.has(b));
      if (missing.length === 0) return compute((block) => loaded.get(block));
      for (const block of missing) {
        const from = block * levels.blockSize;
        const rows = await this.repo.leafHashes(ref, from, from + levels.blockSize);
        if (rows.length !== levels.blockSize || rows.some((r, i) => r.leaf_index !== from + i)) {
          throw new StackError('INTERNAL_ERROR', `audit log integrity failure: leaves ${from}–${from + levels.blockSize - 1} of ${treeKey(ref)} are not all stored`);
        }
        loaded.set(block, rows.map((r) => r.leaf_hash));
      }
    }
  }

  /**
   * The interval's work: sign a checkpoint of every live tree that grew; close the trees whose
   * period ended (after signing their last checkpoint); drop closed trees past the retention time.
   * Replicas may race: the database keeps one of each.
   */
  signDue(): Promise<void> {
    this.signing ??= (async () => {
      try {
        for (const h of await this.repo.unsignedHeads()) await this.signAt(h, h.treeSize);
        const period = this.kit.config.auditTreePeriodMs;
        for (const h of await this.repo.heads()) {
          if (h.treeSize > 0 && Date.now() - h.openedAt.getTime() >= period) await this.close(h);
        }
        const retention = this.kit.config.auditRetentionMs;
        if (retention > 0) {
          for (const t of await this.repo.dropClosedTrees(new Date(Date.now() - retention))) this.trees.delete(treeKey(t));
        }
      } finally {
        this.signing = undefined;
      }
    })();
    return this.signing;
  }

  /** Closes a live tree: its last checkpoint signed first, then the head moves to a new, empty tree. */
  async close(head: Head): Promise<boolean> {
    const latest = await this.repo.latestCheckpoint(head.operatorId, head.treeId);
    if (!latest || latest.tree_size < head.treeSize) await this.signAt(head, head.treeSize);
    const closed = await this.repo.closeTree(head);
    if (closed) {
      // A closed tree takes no more leaves: its hashes leave memory, and a later proof in it reloads them.
      this.trees.delete(treeKey(head));
      this.kit.logger.info({ operator_id: head.operatorId, tree_id: head.treeId, tree_size: head.treeSize }, 'audit tree closed');
    }
    return closed;
  }

  private async signAt(ref: TreeRef, treeSize: number): Promise<void> {
    const levels = await this.tree(ref, treeSize);
    const root = await this.withLeaves(ref, levels, (blocks) => levels.root(treeSize, blocks));
    const origin = this.origin(ref);
    const note = signNote(formatCheckpoint({ origin, treeSize, rootHash: root }), this.signer);
    await this.repo.saveCheckpoint({ operator_id: ref.operatorId, tree_id: ref.treeId, tree_size: treeSize, root_hash: root, note }, (m, signedAt) =>
      this.kit.outbox.enqueue(
        m,
        AuditCheckpointSignedEvent,
        { operator_id: ref.operatorId, origin, tree_size: treeSize, root_hash: root.toString('base64'), note, signed_at: new Date(signedAt).toISOString() },
        { id: `ckpt:${ref.operatorId}:${ref.treeId}:${treeSize}` },
      ),
    );
  }

  /** Signs the live tree now if it grew, and returns the operator's latest checkpoint. */
  async signNow(operatorId: string): Promise<AuditCheckpoint> {
    const head = await this.repo.head(operatorId);
    if (head && head.treeSize > 0) {
      const latest = await this.repo.latestCheckpoint(operatorId, head.treeId);
      if (!latest || latest.tree_size < head.treeSize) await this.signAt(head, head.treeSize);
    }
    return this.latestCheckpoint(operatorId);
  }

  async latestCheckpoint(operatorId: string, treeId?: number): Promise<AuditCheckpoint> {
    const cp = await this.repo.latestCheckpoint(operatorId, treeId);
    if (!cp) throw new StackError('NOT_FOUND', 'no checkpoint has been signed for this log yet');
    return this.toCheckpoint(cp);
  }

  private toCheckpoint(cp: CheckpointRow): AuditCheckpoint {
    return {
      origin: this.origin({ operatorId: cp.operator_id, treeId: cp.tree_id }),
      tree_id: cp.tree_id,
      tree_size: cp.tree_size,
      root_hash: cp.root_hash.toString('base64'),
      note: cp.note,
      signed_at: new Date(cp.signed_at).toISOString(),
    };
  }

  publicKey(): { verifier_key: string; key_name: string; key_id: string; algorithm: 'Ed25519' } {
    return { verifier_key: this.signer.verifierKey, key_name: this.signer.name, key_id: this.signer.keyId.toString('hex'), algorithm: 'Ed25519' };
  }

  // ---- reads ---------------------------------------------------------------------------

  async list(
    scope: ReadScope,
    q: { limit?: number; cursor?: string; member_id?: string; agent_id?: string; passport_jti?: string; session_id?: string; action?: string; outcome?: string; since?: string; until?: string; after?: { treeId: number; leafIndex: number } },
  ): Promise<{ items: ListItem[]; next_cursor?: string }> {
    const limit = Math.min(q.limit ?? 50, 500);
    let before: { treeId: number; leafIndex: number } | undefined;
    if (q.cursor) {
      const m = /^(\d{1,9})\.(\d{1,15})$/.exec(Buffer.from(q.cursor, 'base64url').toString());
      if (!m) throw new StackError('INVALID_REQUEST', 'cursor is not valid');
      before = { treeId: Number(m[1]), leafIndex: Number(m[2]) };
    }
    const since = instant(q.since, 'since');
    const until = instant(q.until, 'until');
    if (scope.memberId && q.member_id && q.member_id !== scope.memberId) return { items: [] };
    if (scope.agentId && q.agent_id && q.agent_id !== scope.agentId) return { items: [] };
    const rows = await this.repo.list({
      operatorId: scope.operatorId,
      memberId: scope.memberId ?? q.member_id,
      agentId: scope.agentId ?? q.agent_id,
      passportJti: q.passport_jti,
      sessionId: q.session_id,
      action: q.action,
      outcome: q.outcome,
      since,
      until,
      before,
      after: q.after,
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const items = page.map(toItem);
    const last = page[page.length - 1];
    return rows.length > limit && last ? { items, next_cursor: Buffer.from(`${last.tree_id}.${last.leaf_index}`).toString('base64url') } : { items };
  }

  private async visibleRow(scope: ReadScope, entryId: string): Promise<StoredRow> {
    const row = await this.repo.byId(scope.operatorId, entryId);
    const entry = row && (JSON.parse(row.entry) as AuditEntry);
    if (!row || !entry || (scope.memberId && entry.member_id !== scope.memberId) || (scope.agentId && entry.agent_id !== scope.agentId)) {
      throw new StackError('NOT_FOUND', 'no such audit entry');
    }
    return row;
  }

  /** The tree a request means: the live one, or another (an existing one) an admin names. */
  private async treeOf(scope: ReadScope, treeId?: number): Promise<TreeRef> {
    if (treeId !== undefined && (!Number.isInteger(treeId) || treeId < 1 || treeId > MAX_TREE_ID)) throw new StackError('INVALID_REQUEST', `tree_id must be an integer from 1 to ${MAX_TREE_ID}`);
    const head = await this.repo.head(scope.operatorId);
    if (treeId === undefined || treeId === head?.treeId) {
      if (!head) throw new StackError('NOT_FOUND', 'this log has no entries yet');
      return head;
    }
    if (scope.memberId || scope.agentId) throw new StackError('FORBIDDEN', 'naming a tree other than the live one (tree_id) needs the stack:admin scope');
    const ref = { operatorId: scope.operatorId, treeId };
    if (!(await this.repo.hasTree(ref))) throw new StackError('NOT_FOUND', `this log has no tree ${treeId}`);
    return ref;
  }

  async inclusionProof(scope: ReadScope, q: { entry_id?: string; leaf_index?: number; tree_size?: number; tree_id?: number }) {
    let index: number;
    let ref: TreeRef;
    if (q.entry_id) {
      const row = await this.visibleRow(scope, q.entry_id);
      index = row.leaf_index;
      ref = { operatorId: scope.operatorId, treeId: row.tree_id };
    } else if (q.leaf_index !== undefined && !scope.memberId && !scope.agentId) {
      index = q.leaf_index;
      ref = await this.treeOf(scope, q.tree_id);
    } else {
      throw new StackError('INVALID_REQUEST', 'give entry_id (or leaf_index, as an admin)');
    }
    const size = q.tree_size ?? (await this.repo.latestCheckpoint(ref.operatorId, ref.treeId))?.tree_size ?? (await this.repo.treeSize(ref));
    if (index >= size || size > (await this.repo.treeSize(ref))) throw new StackError('NOT_FOUND', `no leaf ${index} in a tree of size ${size}`);
    const levels = await this.tree(ref, size);
    const proof = await this.withLeaves(ref, levels, (blocks) => ({ hashes: levels.inclusionProof(index, size, blocks), leaf: levels.leaf(index, blocks) }));
    return { leaf_index: index, tree_size: size, tree_id: ref.treeId, hashes: proof.hashes.map(b64), leaf_hash: b64(proof.leaf) };
  }

  async consistencyProof(scope: ReadScope, q: { tree_size_1: number; tree_size_2?: number; tree_id?: number }) {
    const ref = await this.treeOf(scope, q.tree_id);
    const second = q.tree_size_2 ?? (await this.repo.latestCheckpoint(ref.operatorId, ref.treeId))?.tree_size ?? 0;
    const current = await this.repo.treeSize(ref);
    if (q.tree_size_1 > second || second > current) throw new StackError('INVALID_REQUEST', `no consistency proof from ${q.tree_size_1} to ${second} (the tree has ${current} leaves)`);
    const levels = await this.tree(ref, second);
    const hashes = await this.withLeaves(ref, levels, (blocks) => levels.consistencyProof(q.tree_size_1, second, blocks));
    return { tree_size_1: q.tree_size_1, tree_size_2: second, tree_id: ref.treeId, hashes: hashes.map(b64) };
  }

  /**
   * Export lines of one tree (default the live one): a header (origin, verifier key), every signed
   * checkpoint, then every entry the latest checkpoint covers, with its inclusion proof against it.
   * Proofs come from the stored leaf hashes, so an entry changed in place fails its own proof.
   * `proofs: false` leaves them out (the verifier then checks the roots the entries make).
   *
   * What it lists ends exactly at the latest signed size, and for the live tree that size is "now":
   * the tree is signed at export time if it grew. Someone exporting a live log expects everything
   * up to the moment they asked, and every line of it checkable offline; signing first gives the
   * first, stopping at the signed size the second. Entries appended while the export runs (after
   * the signature) belong to the next export: listed here they would be covered by no checkpoint,
   * and the verifier refuses an entry that nothing signed.
   */
  async *exportLines(operatorId: string, treeId?: number, options: { proofs?: boolean } = {}): AsyncGenerator<string> {
    const head = await this.repo.head(operatorId);
    const ref: TreeRef = { operatorId, treeId: treeId ?? head?.treeId ?? 1 };
    if (head && head.treeId === ref.treeId) await this.signNow(operatorId);
    const checkpoints = await this.repo.checkpoints(ref);
    yield JSON.stringify({ type: 'header', format: 'stack-audit-export/v1', origin: this.origin(ref), tree_id: ref.treeId, verifier_key: this.signer.verifierKey });
    for (const cp of checkpoints) yield JSON.stringify({ type: 'checkpoint', ...this.toCheckpoint(cp) });
    const size = checkpoints[checkpoints.length - 1]?.tree_size ?? 0;
    // The tree up to the checkpoint, from the stored leaf hashes page by page, compact like a live
    // one: an export of millions of entries holds ~3 MiB a million leaves, not 65 (nor every row at once).
    const levels = new MerkleLevels({ blockBits: AUDIT_TREE_BLOCK_BITS });
    const proofs = options.proofs ?? true;
    for (let from = 0; proofs && from < size; from += EXPORT_PAGE) {
      const leaves = await this.repo.leafHashes(ref, from, Math.min(size, from + EXPORT_PAGE));
      for (const r of leaves) levels.append(r.leaf_hash);
      if (leaves.length < Math.min(size, from + EXPORT_PAGE) - from) break;
    }
    // With a leaf missing from storage there is no tree to prove against: the verifier names the gap.
    const whole = proofs && levels.size >= size;
    for (let from = 0; from < size; ) {
      // Pages start at multiples of EXPORT_PAGE while no leaf is missing, so each holds whole
      // blocks: a proof's block comes from the rows at hand.
      const rows = (await this.repo.rows(ref, from, EXPORT_PAGE)).filter((r) => r.leaf_index < size);
      if (!rows.length) break;
      const first = rows[0]!.leaf_index;
      const blocks: BlockLeaves = (block) => {
        const at = block * levels.blockSize - first;
        const slice = at >= 0 ? rows.slice(at, at + levels.blockSize) : [];
        return slice.length === levels.blockSize && slice[slice.length - 1]!.leaf_index === first + at + levels.blockSize - 1 ? slice.map((r) => r.leaf_hash) : undefined;
      };
      for (const r of rows) {
        yield JSON.stringify({ type: 'entry', ...toItem(r), ...(whole ? { inclusion: { leaf_index: r.leaf_index, tree_size: size, hashes: levels.inclusionProof(r.leaf_index, size, blocks).map(b64) } } : {}) });
      }
      from = rows[rows.length - 1]!.leaf_index + 1;
    }
  }

  /**
   * A whole tree of an operator checked as `stack audit verify` checks an export, line by line.
   * First without inclusion proofs: the verifier rebuilds the tree from the entries themselves and
   * checks its root against every signed checkpoint, which is what decides. Only when that fails
   * is it checked again with a proof for every entry, which names the entry that changed (the
   * roots only bound it between checkpoints). A valid log of a million entries costs no proofs.
   */
  async verifyAll(operatorId: string, treeId?: number): Promise<VerifyResult> {
    const check = async (proofs: boolean) => {
      const verifier = new ExportVerifier();
      for await (const line of this.exportLines(operatorId, treeId, { proofs })) verifier.push(line);
      return verifier.finish();
    };
    const fast = await check(false);
    return fast.ok ? fast : check(true);
  }

  async verifyEntry(scope: ReadScope, entryId: string) {
    const row = await this.visibleRow(scope, entryId);
    const head = await this.repo.head(scope.operatorId);
    if (head?.treeId === row.tree_id) await this.signNow(scope.operatorId);
    const checkpoint = await this.latestCheckpoint(scope.operatorId, row.tree_id);
    const entry = JSON.parse(row.entry) as AuditEntry;
    const proof = await this.inclusionProof(scope, { entry_id: entryId, tree_size: checkpoint.tree_size });
    let signed = false;
    try {
      const cp = parseCheckpoint(openNote(checkpoint.note, [parseVerifierKey(this.signer.verifierKey)]).text);
      signed = cp.origin === checkpoint.origin && cp.treeSize === checkpoint.tree_size && cp.rootHash.toString('base64') === checkpoint.root_hash;
    } catch {
      signed = false;
    }
    const ok = signed && entry.leaf_index === proof.leaf_index && verifyInclusion(entryLeafHash(entry), proof.leaf_index, proof.tree_size, proof.hashes.map((h) => Buffer.from(h, 'base64')), Buffer.from(checkpoint.root_hash, 'base64'));
    return {
      verdict: ok ? ('valid' as const) : ('invalid' as const),
      ...(ok ? {} : { reason: 'the entry does not match the signed checkpoint' }),
      checkpoint,
      entry,
      inclusion: { leaf_index: proof.leaf_index, tree_size: proof.tree_size, hashes: proof.hashes },
      tree_size: checkpoint.tree_size,
    };
  }
}

// Postgres reads timestamps of years 1 to 9999 as ISO text; a year 0 or a six-digit one is an error of its own.
const EARLIEST = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST = Date.parse('9999-12-31T23:59:59.999Z');

/** A since/until bound, refused as a bad request when Postgres could not read it. */
export function instant(v: string | undefined, name: string): string | undefined {
  if (v === undefined || v === '') return undefined;
  const ms = Date.parse(v);
  if (Number.isNaN(ms) || ms < EARLIEST || ms > LATEST) throw new StackError('INVALID_REQUEST', `${name} must be an ISO 8601 date-time from year 1 to 9999`);
  return new Date(ms).toISOString();
}

function b64(b: Buffer): string {
  return b.toString('base64');
}

export interface ListItem {
  entry: AuditEntry;
  leaf_index: number;
  tree_id: number;
}

function toItem(r: StoredRow): ListItem {
  return { entry: JSON.parse(r.entry) as AuditEntry, leaf_index: r.leaf_index, tree_id: r.tree_id };
}

function treeKey(t: TreeRef): string {
  return `${t.operatorId}#${t.treeId}`;
}
