import { CallAbort, type AbortLike } from './call-abort';

describe('CallAbort (a call cancellation without an EventTarget)', () => {
  it('aborts once, with its reason, calling each listener once', () => {
    const abort = new CallAbort();
    const heard: string[] = [];
    abort.addEventListener('abort', () => heard.push('a'));
    abort.addEventListener('abort', () => heard.push('b'), { once: true });
    expect(abort.aborted).toBe(false);
    expect(abort.reason).toBeUndefined();
    const why = new Error('revoked');
    abort.abort(why);
    abort.abort(new Error('second'));
    expect(abort.aborted).toBe(true);
    expect(abort.reason).toBe(why);
    expect(heard).toEqual(['a', 'b']);
  });

  it('gives an Error as the default reason, as AbortController does', () => {
    const abort = new CallAbort();
    abort.abort();
    expect(abort.reason).toBeInstanceOf(Error);
  });

  it('does not call a removed listener, nor keep one added after the abort', () => {
    const abort = new CallAbort();
    const removed = jest.fn();
    const kept = jest.fn();
    abort.addEventListener('abort', removed);
    abort.addEventListener('abort', kept);
    abort.removeEventListener('abort', removed);
    abort.removeEventListener('abort', () => undefined);
    abort.abort();
    const late = jest.fn();
    abort.addEventListener('abort', late);
    expect(removed).not.toHaveBeenCalled();
    expect(kept).toHaveBeenCalledTimes(1);
    expect(late).not.toHaveBeenCalled();
  });

  it('tells every listener even when one throws', () => {
    const abort = new CallAbort();
    const after = jest.fn();
    abort.addEventListener('abort', () => {
      throw new Error('listener bug');
    });
    abort.addEventListener('abort', after);
    expect(() => abort.abort()).not.toThrow();
    expect(after).toHaveBeenCalledTimes(1);
  });

  it('takes the place of an AbortSignal where a call reads one (and an AbortSignal fits where it is read)', () => {
    const controller = new AbortController();
    const signals: AbortLike[] = [controller.signal, new CallAbort()];
    const heard = jest.fn();
    for (const s of signals) s.addEventListener('abort', heard, { once: true });
    controller.abort('gone');
    (signals[1] as CallAbort).abort('also gone');
    expect(heard).toHaveBeenCalledTimes(2);
    expect(signals.map((s) => [s.aborted, s.reason])).toEqual([
      [true, 'gone'],
      [true, 'also gone'],
    ]);
  });
});
