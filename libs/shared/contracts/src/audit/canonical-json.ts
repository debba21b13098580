/**
 * RFC 8785 (JSON Canonicalization Scheme) for the values an audit entry can hold: objects,
 * arrays, strings, finite numbers, booleans and null. The leaf hash covers these bytes, so any
 * verifier that canonicalises the same object gets the same hash. Written as loops appending to
 * one string: every audit entry goes through it twice a proxy call, and the map/filter/join form
 * built several arrays per object.
 */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export function canonicalJson(value: JsonValue): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      // ECMAScript's Number serialisation is the one RFC 8785 prescribes; only finiteness is ours to check.
      if (!Number.isFinite(value)) throw new Error('canonical JSON cannot hold a non-finite number');
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]!);
        return `${out}]`;
      }
      // RFC 8785 sorts keys by their UTF-16 code units, which is what the default sort compares.
      const keys = Object.keys(value).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const v = value[key];
        if (v === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      throw new Error(`canonical JSON cannot hold a ${typeof value}`);
  }
}

/** An audit entry's keys (AuditEntrySchema, with `leaf_index`) in RFC 8785 order, and its target's. */
export const AUDIT_ENTRY_KEYS = ['action', 'agent_id', 'client_id', 'duration_ms', 'error_code', 'id', 'layer', 'leaf_index', 'member_id', 'occurred_at', 'operator_id', 'outcome', 'passport_jti', 'session_id', 'target', 'trace_id'] as const;
export const AUDIT_TARGET_KEYS = ['connection', 'host', 'method', 'path', 'service'] as const;

/** How many own keys of `o` hold a value (undefined ones are left out of canonical JSON). */
function definedKeys(o: Readonly<Record<string, unknown>>): number {
  let n = 0;
  for (const k in o) if (o[k] !== undefined) n++;
  return n;
}

function member(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  return canonicalJson(v as JsonValue);
}

/** Writes `keys` of `o` in their (sorted) order; undefined when `o` holds a key outside them. */
function knownShape(o: Readonly<Record<string, unknown>>, keys: readonly string[], extra?: { key: string; value: number }): string | undefined {
  let out = '{';
  let written = 0;
  for (const key of keys) {
    let v: unknown;
    if (extra !== undefined && key === extra.key) v = extra.value;
    else {
      v = o[key];
      if (v === undefined) continue;
      written++;
    }
    let text: string;
    if (key === 'target' && typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const t = knownShape(v as Record<string, unknown>, AUDIT_TARGET_KEYS);
      if (t === undefined) return undefined;
      text = t;
    } else text = member(v);
    out += `${out.length === 1 ? '' : ','}"${key}":${text}`;
  }
  return written === definedKeys(o) ? `${out}}` : undefined;
}

/**
 * The canonical JSON of `{...entry, leaf_index}` — the bytes an audit leaf hashes — written
 * straight from the entry's known keys in their sorted order: no copy of the entry, no key
 * arrays to sort. Exactly canonicalJson's answer (an entry with a key outside the schema is
 * handed to canonicalJson itself).
 */
export function canonicalAuditEntry(entry: Readonly<Record<string, unknown>>, leafIndex: number): string {
  if (!Number.isFinite(leafIndex)) throw new Error('canonical JSON cannot hold a non-finite number');
  if (entry['leaf_index'] === undefined) {
    const text = knownShape(entry, AUDIT_ENTRY_KEYS, { key: 'leaf_index', value: leafIndex });
    if (text !== undefined) return text;
  }
  return canonicalJson({ ...entry, leaf_index: leafIndex } as JsonValue);
}
