/**
 * How much a drop-off schema can cost per payload value, measured before it is compiled. A
 * validator applies the schema as expanded, every reference replaced by what it points to: a
 * 1.5 KB schema of 23 levels, each referring twice to the next, is 8 million subschemas (9 s and
 * 1.2 GB for one deposit). The schema is cut into units (the top and every reference's target);
 * a reference into the units it is already inside (recursion) consumes the payload, so it counts
 * once. Refused with INVALID_SCHEMA:
 * - an `$id` below the top: a second resource, which Ajv would keep for the process's life;
 * - a reference (`$ref`, `$dynamicRef`, `$recursiveRef`) that does not resolve inside the schema;
 * - more than MAX_EXPANDED subschemas expanded;
 * - a recursion that does not descend into the payload (it never ends), or two recursive
 *   references of one unit that can reach the same part of the payload (each level of the
 *   payload then doubles the work);
 * - `uniqueItems` without `maxItems` ≤ MAX_UNIQUE_ITEMS beside it, unless its items are declared
 *   of scalar types (Ajv then compares in linear time; otherwise every pair).
 */
import { StackError } from '@stack/contracts';

export const MAX_EXPANDED = 10_000;
export const MAX_UNIQUE_ITEMS = 1000;
/** Recursive references leaving one unit, compared pairwise. */
const MAX_RECURSIVE_REFS = 256;

export interface SchemaShape {
  /** Subschemas applied to a payload value, expanded (a recursion counted once). */
  expanded: number;
  /** A `uniqueItems` compares every pair of items (up to its maxItems). */
  pairwise: boolean;
}

/** One step into the payload: a named or any property, one index or any from one on, a property name. */
type Step = { kind: 'key'; name?: string; except?: ReadonlySet<string> } | { kind: 'idx'; at?: number; from?: number } | { kind: 'name' };

interface Unit {
  node: unknown;
  local: number;
  edges: { to: Unit; path: Step[] }[];
  index?: number;
  low?: number;
  onStack?: boolean;
  component?: Unit[];
}

type Obj = Record<string, unknown>;

const REF_KEYWORDS = ['$ref', '$dynamicRef', '$recursiveRef'] as const;
/** Where Ajv looks for `$id` and anchors (json-schema-traverse with allKeys). */
const ARRAY_KEYWORDS = new Set(['items', 'allOf', 'anyOf', 'oneOf']);
const MAP_KEYWORDS = new Set(['$defs', 'definitions', 'properties', 'patternProperties', 'dependencies']);
const SKIP_KEYWORDS = new Set([
  'default',
  'enum',
  'const',
  'required',
  'maximum',
  'minimum',
  'exclusiveMaximum',
  'exclusiveMinimum',
  'multipleOf',
  'maxLength',
  'minLength',
  'pattern',
  'format',
  'maxItems',
  'minItems',
  'uniqueItems',
  'maxProperties',
  'minProperties',
]);

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const invalid = (message: string, details?: Record<string, unknown>) => new StackError('INVALID_SCHEMA', message, details);

/** Measures a schema (already checked against the meta-schema); StackError INVALID_SCHEMA when it is refused. */
export function measureSchema(schema: unknown): SchemaShape {
  if (!isObj(schema)) return { expanded: 1, pairwise: false };
  const anchors = indexResource(schema);
  const units = new Map<unknown, Unit>();
  const order: Unit[] = [];
  const pending: Unit[] = [];
  const unitOf = (node: unknown): Unit => {
    let u = units.get(node);
    if (!u) {
      u = { node, local: 0, edges: [] };
      units.set(node, u);
      order.push(u);
      pending.push(u);
    }
    return u;
  };
  const resolve = (ref: string): unknown => {
    const target = resolveRef(schema, anchors, ref);
    if (target === undefined) throw invalid('the schema is not usable: it refers ($ref) to a schema that is not inside it; remote references are not fetched', { ref: ref.slice(0, 200) });
    return target;
  };

  const shape: SchemaShape = { expanded: 0, pairwise: false };
  let total = 0;
  unitOf(schema);
  while (pending.length) {
    const unit = pending.pop()!;
    const stack: { node: unknown; path: Step[] }[] = [{ node: unit.node, path: [] }];
    while (stack.length) {
      const { node, path } = stack.pop()!;
      unit.local++;
      // Every unit is applied at least once: their sum bounds the expanded size from below.
      if (++total > MAX_EXPANDED) throw tooLarge();
      if (!isObj(node)) continue;
      for (const kw of REF_KEYWORDS) {
        const ref = node[kw];
        if (typeof ref === 'string') unit.edges.push({ to: unitOf(resolve(ref)), path });
      }
      if (node.uniqueItems === true && checkUniqueItems(node)) shape.pairwise = true;
      const same = (v: unknown) => stack.push({ node: v, path });
      const down = (v: unknown, step: Step) => stack.push({ node: v, path: [...path, step] });
      for (const kw of ['not', 'if', 'then', 'else']) if (has(node, kw)) same(node[kw]);
      for (const kw of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(node[kw])) for (const v of node[kw] as unknown[]) same(v);
      for (const kw of ['dependentSchemas', 'dependencies']) {
        const map = node[kw];
        if (isObj(map)) for (const v of Object.values(map)) if (isObj(v) || typeof v === 'boolean') same(v);
      }
      const properties = isObj(node.properties) ? node.properties : {};
      for (const [name, v] of Object.entries(properties)) down(v, { kind: 'key', name });
      if (isObj(node.patternProperties)) for (const v of Object.values(node.patternProperties)) down(v, { kind: 'key' });
      if (has(node, 'additionalProperties')) down(node.additionalProperties, { kind: 'key', except: new Set(Object.keys(properties)) });
      if (has(node, 'unevaluatedProperties')) down(node.unevaluatedProperties, { kind: 'key' });
      if (has(node, 'propertyNames')) down(node.propertyNames, { kind: 'name' });
      const prefix = Array.isArray(node.prefixItems) ? (node.prefixItems as unknown[]) : [];
      prefix.forEach((v, at) => down(v, { kind: 'idx', at }));
      if (has(node, 'items')) down(node.items, { kind: 'idx', from: prefix.length });
      if (has(node, 'contains')) down(node.contains, { kind: 'idx', from: 0 });
      if (has(node, 'unevaluatedItems')) down(node.unevaluatedItems, { kind: 'idx', from: 0 });
    }
  }

  // Components come out dependencies first, so each one's size adds up what it refers to outside itself.
  const expanded = new Map<Unit[], number>();
  for (const component of components(order)) {
    const inside = new Set(component);
    let size = 0;
    for (const u of component) {
      size += u.local;
      for (const e of u.edges) if (!inside.has(e.to)) size += expanded.get(e.to.component!)!;
      size = Math.min(size, MAX_EXPANDED + 1);
    }
    expanded.set(component, size);
    if (component.length > 1 || component[0]!.edges.some((e) => e.to === component[0])) checkRecursion(component, inside);
  }
  shape.expanded = expanded.get(units.get(schema)!.component!)!;
  if (shape.expanded > MAX_EXPANDED) throw tooLarge();
  return shape;
}

function tooLarge(): StackError {
  return invalid(`the schema expands to more than ${MAX_EXPANDED} subschemas (every $ref counts what it points to); refer to fewer or smaller schemas`, { limit_subschemas: MAX_EXPANDED });
}

/** True when the comparison is pairwise (bounded by maxItems); throws when it is not bounded. */
function checkUniqueItems(node: Obj): boolean {
  const items = node.items;
  const declared = isObj(items) ? items.type : undefined;
  const types = Array.isArray(declared) ? declared : typeof declared === 'string' ? [declared] : [];
  // Ajv compares scalar items through a map (linear), anything else pair by pair.
  if (types.length > 0 && types.every((t) => t !== 'object' && t !== 'array')) return false;
  if (typeof node.maxItems === 'number' && node.maxItems <= MAX_UNIQUE_ITEMS) return true;
  throw invalid(`uniqueItems compares every pair of items: give it maxItems of at most ${MAX_UNIQUE_ITEMS} in the same schema, or items of a scalar type`, { limit_items: MAX_UNIQUE_ITEMS });
}

/** Recursion must descend into the payload, and one unit's recursive references must never reach the same part of it. */
function checkRecursion(component: Unit[], inside: ReadonlySet<Unit>): void {
  const next = new Map<Unit, Unit>();
  for (const u of component) {
    const recursive = u.edges.filter((e) => inside.has(e.to));
    if (recursive.length > MAX_RECURSIVE_REFS) throw invalid(`a recursive subschema refers back more than ${MAX_RECURSIVE_REFS} times`);
    for (let i = 0; i < recursive.length; i++) {
      for (let j = i + 1; j < recursive.length; j++) {
        if (overlap(recursive[i]!.path, recursive[j]!.path)) {
          throw invalid('a recursive schema applies itself twice to the same part of the payload (each level would double the work); make its recursive references reach different properties or items');
        }
      }
    }
    // An edge that consumes nothing is then its unit's only recursive one: a cycle of those never ends.
    if (recursive.length === 1 && recursive[0]!.path.length === 0) next.set(u, recursive[0]!.to);
  }
  const state = new Map<Unit, 'open' | 'done'>();
  for (const start of next.keys()) {
    const walked: Unit[] = [];
    let u: Unit | undefined = start;
    while (u && !state.has(u)) {
      state.set(u, 'open');
      walked.push(u);
      u = next.get(u);
    }
    if (u && state.get(u) === 'open') throw invalid('a recursive schema refers back to itself without descending into the payload; it would never end');
    for (const w of walked) state.set(w, 'done');
  }
}

/** Whether two paths can both lead into the same payload value (one being a prefix of the other, step by step). */
function overlap(a: readonly Step[], b: readonly Step[]): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (!sameValue(a[i]!, b[i]!)) return false;
  return true;
}

function sameValue(a: Step, b: Step): boolean {
  if (a.kind === 'name' || b.kind === 'name') return a.kind === b.kind;
  if (a.kind === 'key' && b.kind === 'key') {
    if (a.name !== undefined && b.name !== undefined) return a.name === b.name;
    if (a.name !== undefined) return !b.except?.has(a.name);
    if (b.name !== undefined) return !a.except?.has(b.name);
    return true;
  }
  if (a.kind === 'idx' && b.kind === 'idx') {
    if (a.at !== undefined && b.at !== undefined) return a.at === b.at;
    if (a.at !== undefined) return a.at >= (b.from ?? 0);
    if (b.at !== undefined) return b.at >= (a.from ?? 0);
    return true;
  }
  return false;
}

/** The schema's anchors; refuses an `$id` below the top (everything Ajv indexes is one resource, or it is refused). */
export function indexResource(root: Obj): Map<string, Obj> {
  const anchors = new Map<string, Obj>();
  const stack: unknown[] = [root];
  while (stack.length) {
    const node = stack.pop();
    if (!isObj(node)) continue;
    if (node !== root) {
      if (typeof node.$id === 'string') throw invalid('an $id is accepted only at the top of a drop-off schema (one resource per schema)', { $id: node.$id.slice(0, 200) });
      // As Ajv indexes them: not the top's own.
      for (const kw of ['$anchor', '$dynamicAnchor']) {
        const name = node[kw];
        if (typeof name === 'string' && !anchors.has(name)) anchors.set(name, node);
      }
    }
    for (const [key, value] of Object.entries(node)) {
      if (Array.isArray(value)) {
        if (ARRAY_KEYWORDS.has(key)) for (const v of value) stack.push(v);
      } else if (MAP_KEYWORDS.has(key)) {
        if (isObj(value)) for (const v of Object.values(value)) stack.push(v);
      } else if (!SKIP_KEYWORDS.has(key)) {
        stack.push(value);
      }
    }
  }
  return anchors;
}

/** The node a reference points to inside the schema, or undefined. */
export function resolveRef(root: Obj, anchors: ReadonlyMap<string, Obj>, ref: string): unknown {
  const hash = ref.indexOf('#');
  const base = hash < 0 ? ref : ref.slice(0, hash);
  if (base !== '' && !isOwnUri(root, base)) return undefined;
  let fragment: string;
  try {
    fragment = decodeURIComponent(hash < 0 ? '' : ref.slice(hash + 1));
  } catch {
    return undefined;
  }
  if (fragment === '') return root;
  if (!fragment.startsWith('/')) return anchors.get(fragment);
  let node: unknown = root;
  for (const raw of fragment.slice(1).split('/')) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) node = /^(0|[1-9]\d*)$/.test(part) ? node[Number(part)] : undefined;
    else if (isObj(node) && has(node, part)) node = node[part];
    else return undefined;
    if (node === undefined) return undefined;
  }
  return node;
}

function isOwnUri(root: Obj, base: string): boolean {
  if (typeof root.$id !== 'string') return false;
  const own = root.$id.split('#')[0]!;
  if (base === own) return true;
  try {
    return new URL(base, own).href === new URL(own).href;
  } catch {
    return false;
  }
}

/** Strongly connected components (Tarjan, without recursion), each after every component it refers to. */
function components(units: readonly Unit[]): Unit[][] {
  const out: Unit[][] = [];
  const stack: Unit[] = [];
  let index = 0;
  const open = (u: Unit) => {
    u.index = u.low = index++;
    u.onStack = true;
    stack.push(u);
  };
  for (const start of units) {
    if (start.index !== undefined) continue;
    open(start);
    const work: { u: Unit; next: number }[] = [{ u: start, next: 0 }];
    while (work.length) {
      const top = work[work.length - 1]!;
      const { u } = top;
      if (top.next < u.edges.length) {
        const v = u.edges[top.next++]!.to;
        if (v.index === undefined) {
          open(v);
          work.push({ u: v, next: 0 });
        } else if (v.onStack) {
          u.low = Math.min(u.low!, v.index);
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1]?.u;
      if (parent) parent.low = Math.min(parent.low!, u.low!);
      if (u.low === u.index) {
        const component: Unit[] = [];
        let w: Unit;
        do {
          w = stack.pop()!;
          w.onStack = false;
          w.component = component;
          component.push(w);
        } while (w !== u);
        out.push(component);
      }
    }
  }
  return out;
}
