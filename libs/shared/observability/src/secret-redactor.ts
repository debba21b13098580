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
 * A set of secret values and the one regular expression that finds any of them.
 * Shared by a logger and all its children, so a secret registered anywhere is scrubbed everywhere.
 */
export class SecretRedactor {
  private readonly forms = new Set<string>();
  private pattern: RegExp | undefined;

  constructor(secrets: Iterable<string> = []) {
    for (const secret of secrets) this.add(secret);
  }

  /**
   * Registers a secret. Besides the value itself, its JSON-escaped and URL-encoded spellings are
   * registered too: a secret with a quote or a newline appears escaped inside a JSON log line, and
   * one inside a logged URL appears percent-encoded. Empty strings are ignored.
   */
  add(secret: string): void {
    if (typeof secret !== 'string' || secret.length === 0) return;
    const before = this.forms.size;
    this.forms.add(secret);
    this.forms.add(JSON.stringify(secret).slice(1, -1));
    this.forms.add(encodeURIComponent(secret));
    if (this.forms.size !== before) this.pattern = undefined;
  }

  /** How many spellings are registered (tests and diagnostics). */
  get size(): number {
    return this.forms.size;
  }

  redact(text: string): string {
    if (this.forms.size === 0) return text;
    if (!this.pattern) {
      // Longest first: a secret that contains another must be replaced whole, not in pieces.
      const alternatives = [...this.forms].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.pattern = new RegExp(alternatives.join('|'), 'g');
    }
    return text.replace(this.pattern, REDACTED);
  }
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
