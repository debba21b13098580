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
