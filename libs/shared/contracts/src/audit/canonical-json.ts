/**
 * RFC 8785 (JSON Canonicalization Scheme) for the values an audit entry can hold: objects,
 * arrays, strings, finite numbers, booleans and null. The leaf hash covers these bytes, so any
 * verifier that canonicalises the same object gets the same hash. Audit entries of the known
 * shape take the shortcut below (canonicalAuditEntry); this is the general form, for verifiers
 * and for anything outside that shape.
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

/**
 * A copy of `o` with `keys` (sorted) inserted in order — JSON.stringify writes an object's keys in
 * insertion order, so its text of the copy is the canonical one — or undefined when `o` holds a
 * key outside them or a value other than a string, a number or (for `target`) such an object.
 */
function sortedCopy(o: Readonly<Record<string, unknown>>, keys: readonly string[], extra?: { key: string; value: number }): Record<string, unknown> | undefined {
  const copy: Record<string, unknown> = {};
  let written = 0;
  for (const key of keys) {
    let v: unknown;
    if (extra !== undefined && key === extra.key) v = extra.value;
    else {
      v = o[key];
      if (v === undefined) continue;
      written++;
    }
    if (typeof v === 'string') copy[key] = v;
    else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new Error('canonical JSON cannot hold a non-finite number');
      copy[key] = v;
    } else if (key === 'target' && typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const target = sortedCopy(v as Record<string, unknown>, AUDIT_TARGET_KEYS);
      if (target === undefined) return undefined;
      copy[key] = target;
    } else return undefined;
  }
  return written === definedKeys(o) ? copy : undefined;
}

/**
 * The canonical JSON of `{...entry, leaf_index}` — the bytes an audit leaf hashes — as
 * JSON.stringify (native, one string) writes a copy of the entry built in sorted key order: no key
 * arrays to sort, no string pieces. Exactly canonicalJson's answer (an entry holding anything
 * outside the schema is handed to canonicalJson itself).
 */
export function canonicalAuditEntry(entry: Readonly<Record<string, unknown>>, leafIndex: number): string {
  if (!Number.isFinite(leafIndex)) throw new Error('canonical JSON cannot hold a non-finite number');
  if (entry['leaf_index'] === undefined) {
    const copy = sortedCopy(entry, AUDIT_ENTRY_KEYS, { key: 'leaf_index', value: leafIndex });
    if (copy !== undefined) return JSON.stringify(copy);
  }
  return canonicalJson({ ...entry, leaf_index: leafIndex } as JsonValue);
}
