/**
 * A call's cancellation, for the proxy's hot path: what of AbortSignal a call's code uses —
 * `aborted`, `reason` and 'abort' listeners — without an EventTarget. Node builds an
 * AbortController and its signal's event machinery for every `new AbortController()`, a
 * noticeable part of a proxy call that almost never aborts; this is a flag and a short list.
 */

/** What a call's code reads of a cancellation: a real AbortSignal fits it too. */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export class CallAbort implements AbortLike {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;

  /** Aborts once with `reason` (default an Error 'aborted'), calling each listener once; later calls do nothing. */
  abort(reason: unknown = new Error('aborted')): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const listener of listeners ?? []) {
      try {
        listener();
      } catch {
        // One listener failing must not keep the others from hearing of the abort.
      }
    }
  }

  /** Every listener is called at most once, `once` given or not; none is added once aborted. */
  addEventListener(type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (type !== 'abort' || this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    if (type !== 'abort' || !this.listeners) return;
    const i = this.listeners.indexOf(listener);
    if (i !== -1) this.listeners.splice(i, 1);
  }
}
