/**
 * RFC 8785 (JSON Canonicalization Scheme) for the values an audit entry can hold: objects,
 * arrays, strings, finite numbers, booleans and null. The leaf hash covers these bytes, so any
 * verifier that canonicalises the same object gets the same hash.
 */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    // ECMAScript's Number serialisation is the one RFC 8785 prescribes; only finiteness is ours to check.
    if (!Number.isFinite(value)) throw new Error('canonical JSON cannot hold a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  // RFC 8785 sorts keys by their UTF-16 code units, which is what the default sort compares.
  const keys = Object.keys(value)
    .filter((k) => value[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k]!)}`).join(',')}}`;
}
