/**
 * Keeps secrets out of log output. Two layers, because either alone leaks:
 * - `SecretRedactor` replaces every occurrence of a registered secret *value* in the final text
 *   of a log line — wherever it hides (a message, a nested field, an error's message or stack);
 * - `redactSensitiveKeys` replaces the values of fields whose *name* says they hold a credential
 *   (authorization, cookie, password, token, …), catching secrets nobody registered.
 */
import { stdSerializers } from 'pino';

export const REDACTED = '[REDACTED]';

/**
 * Secrets shorter than this are not registered: replacing every "e" or every quote would corrupt
 * every log line of the process (and break its JSON) while hiding nothing worth hiding.
 */
export const MIN_SECRET_LENGTH = 4;

/**
 * A set of secret values and the one regular expression that finds any of them.
 * Shared by a logger and all its children, so a secret registered anywhere is scrubbed everywhere.
 *
 * Secrets are either permanent (`add`: configuration) or held by an owner (`hold`: a connection's
 * credential). An owner's secrets are replaced when it holds new ones; the previous generation is
 * kept (a replaced token may stay valid upstream until it expires), older ones are forgotten, so
 * refreshing a token forever does not grow the set.
 */
export class SecretRedactor {
  private readonly permanent = new Set<string>();
  private readonly owned = new Map<string, { current: readonly string[]; previous: readonly string[] }>();
  private forms: Set<string> | undefined;
  private pattern: RegExp | null | undefined;

  constructor(secrets: Iterable<string> = []) {
    for (const secret of secrets) this.add(secret);
  }

  /**
   * Registers a secret for the life of the process. Besides the value itself, its JSON-escaped and
   * URL-encoded spellings are registered too: a secret with a quote or a newline appears escaped
   * inside a JSON log line, and one inside a logged URL appears percent-encoded. Non-strings and
   * strings shorter than MIN_SECRET_LENGTH are ignored.
   */
  add(secret: string): void {
    if (!registrable(secret) || this.permanent.has(secret)) return;
    this.permanent.add(secret);
    this.changed();
  }

  /** The secrets `owner` holds now, in place of those it held before (kept one more generation). */
  hold(owner: string, secrets: readonly string[]): void {
    const next = [...new Set(secrets.filter(registrable))].sort();
    const held = this.owned.get(owner);
    if (held && sameList(held.current, next)) return;
    // The same owner re-registering a secret it already held keeps both generations as they are.
    if (held && sameList(held.previous, next)) return;
    this.owned.set(owner, { current: next, previous: held?.current ?? [] });
    this.changed();
  }

  /** Forgets everything `owner` held (its credential is gone). */
  release(owner: string): void {
    if (this.owned.delete(owner)) this.changed();
  }

  /** How many spellings are registered (tests and diagnostics). */
  get size(): number {
    return this.spellings().size;
  }

  redact(text: string): string {
    if (this.pattern === undefined) {
      const forms = this.spellings();
      // Longest first: a secret that contains another must be replaced whole, not in pieces.
      const alternatives = [...forms].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.pattern = alternatives.length ? new RegExp(alternatives.join('|'), 'g') : null;
    }
    return this.pattern ? text.replace(this.pattern, REDACTED) : text;
  }

  private changed(): void {
    this.forms = undefined;
    this.pattern = undefined;
  }

  private spellings(): Set<string> {
    if (!this.forms) {
      const forms = new Set<string>();
      const secrets = [...this.permanent, ...[...this.owned.values()].flatMap((h) => [...h.current, ...h.previous])];
      for (const secret of secrets) {
        const escaped = JSON.stringify(secret).slice(1, -1);
        // Log lines are JSON: a secret that needs escaping only ever appears escaped. Its raw
        // form would match quotes and backslashes of the line's own syntax.
        if (escaped === secret) forms.add(secret);
        forms.add(escaped);
        forms.add(encodeURIComponent(secret));
      }
      this.forms = forms;
    }
    return this.forms;
  }
}

function registrable(secret: unknown): secret is string {
  return typeof secret === 'string' && secret.length >= MIN_SECRET_LENGTH;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

// Field names compared after lower-casing and dropping '-' and '_', so `Set-Cookie`,
// `client_secret` and `apiKey` all match.
const SENSITIVE_NAMES = new Set([
  'authorization',
  'proxyauthorization',
  'cookie',
  'setcookie',
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'credential',
  'credentials',
  'apikey',
  'xapikey',
  'privatekey',
  'masterkeys',
  'stackcaller',
]);
const SENSITIVE_SUFFIXES = ['token', 'secret', 'password', 'apikey', 'privatekey', 'credential', 'credentials'];

/** Whether a field of this name holds a credential and must never be logged. */
export function isSensitiveKey(key: string): boolean {
  const normalised = key.toLowerCase().replace(/[-_]/g, '');
  if (SENSITIVE_NAMES.has(normalised)) return true;
  return SENSITIVE_SUFFIXES.some((suffix) => normalised.endsWith(suffix));
}

const MAX_DEPTH = 10;

/**
 * Returns a copy of `value` in which every field with a sensitive name is `[REDACTED]` at any depth,
 * and every `Error` (wherever it sits) is serialised the way pino serialises `err`, so its message,
 * stack and own fields reach the output — where the value redactor can see them — instead of `{}`.
 */
export function redactSensitiveKeys(value: unknown): unknown {
  return walk(value, 0, new WeakSet());
}

function walk(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Truncated]';
  seen.add(value);
  try {
    if (value instanceof Error) return walk(stdSerializers.err(value), depth + 1, seen);
    if (Array.isArray(value)) return value.map((item) => walk(item, depth + 1, seen));
    // Dates, Buffers, URLs and the like serialise themselves; their contents are not fields.
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value)) {
      out[key] = isSensitiveKey(key) ? REDACTED : walk(field, depth + 1, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}
