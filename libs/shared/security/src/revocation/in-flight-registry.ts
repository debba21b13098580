/**
 * Calls in flight on this node (proxy calls, skill runs, streams), indexed by passport,
 * chain, agent, session, member and operator, so a revocation that reaches the node aborts
 * exactly the calls it kills (DESIGN.md §4: "in-flight calls are cut"). The call's code hands
 * `signal` to its upstream request; the caller then gets 401 PASSPORT_REVOKED.
 */
import { StackError } from '@stack/contracts';

import { CallAbort, type AbortLike } from './call-abort';
import { SUBJECT_KINDS, killsIssuedAt, subjectValue, type CredentialSubject, type RevocationEntry } from './revocation-set';

export interface InFlightCall {
  /** Aborted with a StackError PASSPORT_REVOKED as its reason. */
  readonly signal: AbortLike;
  /** Call when the call ends, aborted or not. */
  release(): void;
}

interface Tracked {
  subject: CredentialSubject;
  controller: CallAbort;
  keys: readonly string[];
}

/**
 * The index keys of a subject. A passport's subject is one object for as long as the passport is
 * cached, so its keys are worked out once, not on every call it makes.
 */
const subjectKeys = new WeakMap<CredentialSubject, readonly string[]>();

function keysOf(subject: CredentialSubject): readonly string[] {
  const known = subjectKeys.get(subject);
  if (known) return known;
  const keys: string[] = [];
  if (subject.jti) keys.push(`jti:${subject.jti}`);
  for (const ancestor of subject.chain ?? []) keys.push(`jti:${ancestor}`);
  for (const kind of SUBJECT_KINDS) {
    const value = subjectValue(subject, kind);
    if (value !== undefined) keys.push(`${kind}:${value}`);
  }
  subjectKeys.set(subject, keys);
  return keys;
}

export class InFlightRegistry {
  private readonly byKey = new Map<string, Set<Tracked>>();
  private live = 0;

  get size(): number {
    return this.live;
  }

  track(subject: CredentialSubject): InFlightCall {
    const keys = keysOf(subject);
    const tracked: Tracked = { subject, controller: new CallAbort(), keys };
    for (const k of keys) {
      let set = this.byKey.get(k);
      if (!set) {
        set = new Set();
        this.byKey.set(k, set);
      }
      set.add(tracked);
    }
    this.live++;
    let released = false;
    return {
      signal: tracked.controller,
      release: () => {
        if (released) return;
        released = true;
        this.forget(tracked);
      },
    };
  }

  /** Aborts every tracked call the entry kills; returns how many. */
  abortMatching(entry: RevocationEntry): number {
    const set = this.byKey.get(`${entry.kind}:${entry.value}`);
    if (!set) return 0;
    let aborted = 0;
    for (const t of [...set]) {
      if (!killsIssuedAt(entry, t.subject.issued_at_ms)) continue;
      t.controller.abort(new StackError('PASSPORT_REVOKED', 'the credential was revoked while the call was in flight', { revocation_id: entry.id, kind: entry.kind }));
      this.forget(t);
      aborted++;
    }
    return aborted;
  }

  private forget(t: Tracked): void {
    let removed = false;
    for (const k of t.keys) {
      const set = this.byKey.get(k);
      if (set?.delete(t)) removed = true;
      if (set && set.size === 0) this.byKey.delete(k);
    }
    if (removed) this.live--;
  }
}
