/**
 * What checking one payload against one drop-off schema costs, counted before Ajv runs. Without
 * any `$ref`, a 13 KB schema (an `allOf` of 300 `{items: …}`) against a 256k-item array is 77
 * million subschema applications (seconds of a blocked event loop). The schema is turned once into a
 * plan (a node per subschema: its weight, and which subschemas it applies to the same value, to
 * a property, to an item); the payload is then walked, without recursion, with the multiset of
 * subschemas that apply to each value (every `$ref`, `allOf`, `anyOf`, … expanded). Cost is the
 * sum over values of those subschemas' weights: one per subschema, plus the values of its
 * `enum` / `const` (compared one by one), its `required` and `properties` names, and for a string
 * (or a key, under `patternProperties`) its length under `format`, `minLength`, `maxLength`, and
 * under `pattern` its length times what a character may cost that pattern's program (patternRate). It over-counts (every branch of
 * `anyOf` / `if`, every `patternProperties` on every key), never under-counts. Subtrees no
 * subschema reaches cost nothing. Sets of subschemas are shared between values reached the same
 * way (every item past `prefixItems`, every property outside `properties`), so counting is linear
 * in the payload; it stops as soon as the budget is passed.
 */
import { re2CharCost } from '@stack/security';

import { indexResource, MAX_UNIQUE_ITEMS, patternSize, resolveRef } from './dropoff-schema-shape';

/** Characters of a string that cost one unit under a length-dependent keyword. */
const CHARS_PER_UNIT = 16;
/** What matching one character against `pattern` may cost, in this file's units (~80 ns): see re2CharCost. */
export function patternRate(pattern: string): number {
  return re2CharCost(pattern, () => patternSize(pattern));
}

/**
 * Units per key for each subschema looping over an object's keys (additionalProperties,
 * patternProperties, propertyNames, unevaluatedProperties), and per item under a scalar
 * uniqueItems: measured at 250–450 ns each, against 15–70 for a unit of a small schema elsewhere.
 */
const LOOP_WEIGHT = 8;

interface PlanNode {
  weight: number;
  /** Units per character of a string, for the keywords whose work grows with its length (`pattern` by its program). */
  text: number;
  /** Units per character of every key, for the patterns of `patternProperties`. */
  keyText: number;
  /** `uniqueItems`: 1 compares through a map (scalar items), 2 pair by pair (past maxItems ≤ 1000, maxItems fails first). */
  unique: 0 | 1 | 2;
  same: PlanNode[];
  props: Map<string, PlanNode>;
  /** additionalProperties: keys outside `props`. */
  other?: PlanNode;
  /** patternProperties and unevaluatedProperties: counted for every key. */
  anyKey: PlanNode[];
  names: PlanNode[];
  prefix: PlanNode[];
  items?: PlanNode;
  /** contains and unevaluatedItems: every item. */
  allItems: PlanNode[];
}

/** A schema, ready to count what a payload would cost. */
export interface CostPlan {
  root: PlanNode;
}

interface State {
  weight: number;
  text: number;
  keyText: number;
  uniqueLinear: number;
  uniquePairs: number;
  nodes: PlanNode[];
  maxPrefix: number;
  named: Set<string>;
  /** What `propertyNames` applies to each key, when any node has one. */
  names?: State;
  hasNames: boolean;
  /** Subschemas that loop over an object's keys. */
  keyLoops: number;
  byKey: Map<string, State>;
  byIndex: Map<number, State>;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
/** Keywords whose work grows with a string's length at a flat rate (`pattern` is charged by its program: patternRate). */
const TEXT_KEYWORDS = ['format', 'minLength', 'maxLength', 'contentEncoding', 'contentMediaType'];

const leaf = (): PlanNode => ({ weight: 1, text: 0, keyText: 0, unique: 0, same: [], props: new Map(), anyKey: [], names: [], prefix: [], allItems: [] });

/** JSON values in `v` (itself included); a schema is at most 64 KB, so no bound is needed. */
function size(v: unknown): number {
  let n = 0;
  const stack: unknown[] = [v];
  while (stack.length) {
    const x = stack.pop();
    n++;
    if (typeof x === 'object' && x !== null) for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push(c);
  }
  return n;
}

/** The plan of a schema already measured (references resolve, recursion descends). */
export function planSchema(schema: unknown): CostPlan {
  const nodes = new Map<unknown, PlanNode>();
  const pending: [Obj, PlanNode][] = [];
  const anchors = isObj(schema) ? indexResource(schema) : new Map<string, Obj>();
  const plan = (s: unknown): PlanNode => {
    if (!isObj(s)) return leaf();
    let n = nodes.get(s);
    if (!n) {
      n = leaf();
      nodes.set(s, n);
      pending.push([s, n]);
    }
    return n;
  };
  const root = plan(schema);
  while (pending.length) {
    const [s, n] = pending.pop()!;
    for (const kw of ['$ref', '$dynamicRef', '$recursiveRef']) {
      const ref = s[kw];
      const target = typeof ref === 'string' && isObj(schema) ? resolveRef(schema, anchors, ref) : undefined;
      if (target !== undefined) n.same.push(plan(target));
    }
    for (const kw of ['not', 'if', 'then', 'else']) if (has(s, kw)) n.same.push(plan(s[kw]));
    for (const kw of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(s[kw])) for (const v of s[kw] as unknown[]) n.same.push(plan(v));
    for (const kw of ['dependentSchemas', 'dependencies', 'dependentRequired']) {
      const map = s[kw];
      if (!isObj(map)) continue;
      for (const v of Object.values(map)) {
        if (Array.isArray(v)) n.weight += v.length;
        else n.same.push(plan(v));
      }
    }
    if (Array.isArray(s.enum)) n.weight += size(s.enum);
    if (has(s, 'const')) n.weight += size(s.const);
    if (Array.isArray(s.required)) n.weight += s.required.length;
    if (isObj(s.properties)) {
      for (const [name, v] of Object.entries(s.properties)) n.props.set(name, plan(v));
      n.weight += n.props.size;
    }
    if (has(s, 'additionalProperties')) n.other = plan(s.additionalProperties);
    if (isObj(s.patternProperties)) {
      for (const v of Object.values(s.patternProperties)) n.anyKey.push(plan(v));
      for (const p of Object.keys(s.patternProperties)) n.keyText += patternRate(p);
    }
    if (has(s, 'unevaluatedProperties')) n.anyKey.push(plan(s.unevaluatedProperties));
    if (has(s, 'propertyNames')) n.names.push(plan(s.propertyNames));
    if (Array.isArray(s.prefixItems)) n.prefix = (s.prefixItems as unknown[]).map(plan);
    if (has(s, 'items')) n.items = plan(s.items);
    if (has(s, 'contains')) n.allItems.push(plan(s.contains));
    if (has(s, 'unevaluatedItems')) n.allItems.push(plan(s.unevaluatedItems));
    n.text = TEXT_KEYWORDS.filter((kw) => has(s, kw)).length / CHARS_PER_UNIT + (typeof s.pattern === 'string' ? patternRate(s.pattern) : 0);
    if (s.uniqueItems === true) n.unique = typeof s.maxItems === 'number' && s.maxItems <= MAX_UNIQUE_ITEMS && !scalarItems(s) ? 2 : 1;
  }
  return { root };
}

function scalarItems(s: Obj): boolean {
  const declared = isObj(s.items) ? s.items.type : undefined;
  const types = Array.isArray(declared) ? declared : typeof declared === 'string' ? [declared] : [];
  return types.length > 0 && types.every((t) => t !== 'object' && t !== 'array');
}

/**
 * What checking `payload` costs, counted up to just past `budget` (then the count returned is
 * over the budget, and no more is walked).
 */
export function checkCost(plan: CostPlan, payload: unknown, budget: number): number {
  let cost = 0;
  // Building a set of subschemas costs its size; it is charged like an application.
  const state = (seeds: readonly PlanNode[]): State => {
    const s: State = { weight: 0, text: 0, keyText: 0, uniqueLinear: 0, uniquePairs: 0, nodes: [], maxPrefix: 0, named: new Set(), hasNames: false, keyLoops: 0, byKey: new Map(), byIndex: new Map() };
    const stack = [...seeds];
    while (stack.length && cost <= budget) {
      const n = stack.pop()!;
      cost++;
      s.nodes.push(n);
      s.weight += n.weight;
      s.text += n.text;
      s.keyText += n.keyText;
      if (n.unique === 1) s.uniqueLinear++;
      if (n.unique === 2) s.uniquePairs++;
      s.maxPrefix = Math.max(s.maxPrefix, n.prefix.length);
      for (const name of n.props.keys()) s.named.add(name);
      if (n.names.length) s.hasNames = true;
      s.keyLoops += (n.other ? 1 : 0) + n.anyKey.length + n.names.length;
      for (const m of n.same) stack.push(m);
    }
    return s;
  };
  const forIndex = (s: State, i: number): State => {
    const at = Math.min(i, s.maxPrefix);
    let child = s.byIndex.get(at);
    if (!child) {
      const seeds: PlanNode[] = [];
      for (const n of s.nodes) {
        if (at < n.prefix.length) seeds.push(n.prefix[at]!);
        else if (n.items) seeds.push(n.items);
        seeds.push(...n.allItems);
      }
      child = state(seeds);
      s.byIndex.set(at, child);
    }
    return child;
  };
  const forKey = (s: State, key: string): State => {
    const named = s.named.has(key);
    // Every key outside the named ones reaches the same subschemas.
    const slot = named ? `=${key}` : '*';
    let child = s.byKey.get(slot);
    if (!child) {
      const seeds: PlanNode[] = [];
      for (const n of s.nodes) {
        const p = named ? n.props.get(key) : undefined;
        if (p) seeds.push(p);
        else if (n.other) seeds.push(n.other);
        seeds.push(...n.anyKey);
      }
      child = state(seeds);
      s.byKey.set(slot, child);
    }
    return child;
  };
  const textCost = (s: State, text: string) => s.weight + Math.ceil(s.text * text.length);

  const work: [unknown, State][] = [[payload, state([plan.root])]];
  while (work.length && cost <= budget) {
    const [v, s] = work.pop()!;
    if (s.nodes.length === 0) continue;
    if (typeof v === 'string') {
      cost += textCost(s, v);
      continue;
    }
    cost += s.weight;
    if (Array.isArray(v)) {
      cost += s.uniqueLinear * LOOP_WEIGHT * v.length + s.uniquePairs * Math.min(v.length, MAX_UNIQUE_ITEMS) ** 2 / 2;
      for (let i = 0; i < v.length && cost <= budget; i++) work.push([v[i], forIndex(s, i)]);
    } else if (isObj(v)) {
      const keys = Object.keys(v);
      cost += s.keyLoops * LOOP_WEIGHT * keys.length;
      for (const key of keys) {
        if (cost > budget) break;
        if (s.keyText) cost += Math.ceil(s.keyText * key.length);
        if (s.hasNames) {
          s.names ??= state(s.nodes.flatMap((n) => n.names));
          cost += textCost(s.names, key);
        }
        work.push([v[key], forKey(s, key)]);
      }
    }
  }
  return cost;
}
