/**
 * The live revocation set every node holds in memory (DESIGN.md §4), with its precise
 * predicates: a passport is dead if its own `jti` or any `jti` of its `chain` is revoked, and
 * any credential is dead if a subject it belongs to (agent, session, member, operator, grant,
 * client) was revoked at or after the moment the credential was issued. An API key (`api_key`,
 * its id) is dead once revoked, whenever it was made: a key is never reinstated, and nodes do not
 * know when it was created. Entries leave the set once no credential they could match is alive
 * (`expires_at_ms`) — for an API key, once no node can still hold it in its cache.
 */
import { REVOCATION_KINDS } from '@stack/contracts';

export { REVOCATION_KINDS };
export type RevocationKind = (typeof REVOCATION_KINDS)[number];
export type SubjectKind = Exclude<RevocationKind, 'jti'>;
export const SUBJECT_KINDS: readonly SubjectKind[] = REVOCATION_KINDS.filter((k): k is SubjectKind => k !== 'jti');
/** Kinds that kill their subject outright, not only what was issued up to `revoked_at_ms`. */
const TIMELESS_KINDS: ReadonlySet<RevocationKind> = new Set(['jti', 'api_key']);

/** Whether the entry kills a credential of its subject issued at `issuedAtMs`. */
export function killsIssuedAt(entry: Pick<RevocationEntry, 'kind' | 'revoked_at_ms'>, issuedAtMs: number): boolean {
  // ≤, not <: a credential issued in the very millisecond of the revocation is dead too.
  return TIMELESS_KINDS.has(entry.kind) || issuedAtMs <= entry.revoked_at_ms;
}

export interface RevocationEntry {
  id: string;
  kind: RevocationKind;
  value: string;
  operator_id: string;
  revoked_at_ms: number;
  expires_at_ms: number;
  reason?: string;
}

/** What a credential is, for the predicates: its ids and the moment it was issued. */
export interface CredentialSubject {
  jti?: string;
  /** Ancestor jtis of a delegated passport, root first. */
  chain?: readonly string[];
  operator_id?: string;
  agent_id?: string;
  session_id?: string;
  member_id?: string;
  grant_id?: string;
  client_id?: string;
  /** An API key's id (`key_…`): an `api_key` revocation kills it whatever `issued_at_ms` says. */
  api_key_id?: string;
  issued_at_ms: number;
}

const SUBJECT_FIELD: Record<SubjectKind, keyof CredentialSubject> = {
  agent: 'agent_id',
  session: 'session_id',
  member: 'member_id',
  operator: 'operator_id',
  grant: 'grant_id',
  client: 'client_id',
  api_key: 'api_key_id',
};

export function subjectValue(subject: CredentialSubject, kind: SubjectKind): string | undefined {
  return subject[SUBJECT_FIELD[kind]] as string | undefined;
}

export class RevocationSet {
  private readonly jtis = new Map<string, RevocationEntry>();
  /** One map per subject kind; per subject the entry with the latest revoked_at_ms wins. */
  private readonly subjects = new Map<SubjectKind, Map<string, RevocationEntry>>(SUBJECT_KINDS.map((k) => [k, new Map()]));
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds an entry; false when it changes nothing (a replayed or older event), so consumers stay idempotent. */
  add(entry: RevocationEntry): boolean {
    if (entry.kind === 'jti') {
      const had = this.jtis.get(entry.value);
      if (had && had.expires_at_ms >= entry.expires_at_ms) return false;
      if (!had) this.count++;
      this.jtis.set(entry.value, entry);
      return true;
    }
    const byValue = this.subjects.get(entry.kind)!;
    const had = byValue.get(entry.value);
    if (had && had.revoked_at_ms >= entry.revoked_at_ms && had.expires_at_ms >= entry.expires_at_ms) return false;
    if (!had) this.count++;
    byValue.set(entry.value, had ? { ...entry, revoked_at_ms: Math.max(had.revoked_at_ms, entry.revoked_at_ms), expires_at_ms: Math.max(had.expires_at_ms, entry.expires_at_ms) } : entry);
    return true;
  }

  /** The entry that kills this credential, if any. */
  match(subject: CredentialSubject): RevocationEntry | undefined {
    if (this.count === 0) return undefined;
    if (this.jtis.size) {
      if (subject.jti !== undefined) {
        const hit = this.jtis.get(subject.jti);
        if (hit) return hit;
      }
      if (subject.chain) {
        for (const ancestor of subject.chain) {
          const hit = this.jtis.get(ancestor);
          if (hit) return hit;
        }
      }
    }
    for (const kind of SUBJECT_KINDS) {
      const byValue = this.subjects.get(kind)!;
      if (byValue.size === 0) continue;
      const value = subjectValue(subject, kind);
      if (value === undefined) continue;
      const hit = byValue.get(value);
      if (hit && killsIssuedAt(hit, subject.issued_at_ms)) return hit;
    }
    return undefined;
  }

  /** Drops entries no live credential can match any more; returns how many. */
  prune(nowMs: number): number {
    let dropped = 0;
    for (const [k, e] of this.jtis) {
      if (e.expires_at_ms < nowMs) {
        this.jtis.delete(k);
        dropped++;
      }
    }
    for (const byValue of this.subjects.values()) {
      for (const [k, e] of byValue) {
        if (e.expires_at_ms < nowMs) {
          byValue.delete(k);
          dropped++;
        }
      }
    }
    this.count -= dropped;
    return dropped;
  }

  entries(): RevocationEntry[] {
    return [...this.jtis.values(), ...[...this.subjects.values()].flatMap((m) => [...m.values()])];
  }
}
