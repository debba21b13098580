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
 *   of scalar types (Ajv then compares in linear time; otherwise every pair);
 * - code that would take too long to generate and compile (MAX_COMPILE_UNITS), subschemas nested
 *   more than MAX_DEPTH deep, or more than MAX_RUN blocks of code nested one in another: compiling
 *   blocks the event loop whatever the payload (an `allOf` of 1,400 `{items}`, under 64 KB, took
 *   3–4 s). Ajv writes a schema out where it is referenced when it holds no reference, and once
 *   per reference otherwise, as a function of its own; it nests every keyword, property and allOf
 *   entry inside the block of the one before, so a unit of code costs more the further down such
 *   a run it comes.
 */
import { StackError } from '@stack/contracts';

export const MAX_EXPANDED = 10_000;
export const MAX_UNIQUE_ITEMS = 1000;
/**
 * Units of code a schema may compile to (see compileUnits). Measured on a 2-core machine (CPU
 * time of Ajv's compile plus the first call, when V8 compiles the generated function), 9–34 µs
 * a unit over 40 shapes. At this bound the slowest shapes take 100–130 ms (an allOf of 367
 * `{items}` or `{additionalProperties}`, a oneOf of 570 constants, 800 dependentSchemas, 860
 * properties), most 60–100 ms. A GitHub issue (526 subschemas written out, 12 KB) is 2,900 units
 * (45–60 ms), 300 properties with arrays of objects 2,500 (50 ms), 300 flat ones 1,600. An allOf
 * of 1,400 `{items}` is 37,000 units: 3–4 s.
 */
export const MAX_COMPILE_UNITS = 4000;
/** Subschemas within subschemas, in one generated function: each level lengthens every error's path expression below it. */
export const MAX_DEPTH = 32;
/**
 * Blocks nested one in the other, in one generated function (a run of properties, allOf entries,
 * keywords): V8's parser recurses into each and overflowed the stack from about 1,500.
 */
export const MAX_RUN = 1000;
/** A unit weighs one more per NESTING_PER_UNIT positions down a run of nested blocks, per LOOPS_PER_UNIT loops around it (calibrated as above). */
const NESTING_PER_UNIT = 330;
const LOOPS_PER_UNIT = 10;
/** Pattern size (see patternSize) per unit: RE2 compiles and first runs up to about 2 µs per instruction (Unicode classes; ASCII ones far less). */
const PATTERN_SIZE_PER_UNIT = 16;
/** Units for a pattern however short: RE2 compiles even `^a$` in about 0.1 ms. */
const PATTERN_UNITS = 4;
const PATTERN_SIZE_CAP = 1e9;
/** Values of `enum` or `required` per unit; from 200 on Ajv loops over them instead of writing each out. */
const LIST_VALUES_PER_UNIT = 4;
const INLINE_LIST = 200;
/** Recursive references leaving one unit, compared pairwise. */
const MAX_RECURSIVE_REFS = 256;

export interface SchemaShape {
  /** Subschemas applied to a payload value, expanded (a recursion counted once). */
  expanded: number;
  /** A `uniqueItems` compares every pair of items (up to its maxItems). */
  pairwise: boolean;
  /** Units of code Ajv generates and compiles for it (see compileUnits). */
  compile: number;
}

/** One step into the payload: a named or any property, one index or any from one on, a property name. */
type Step = { kind: 'key'; name?: string; except?: ReadonlySet<string> } | { kind: 'idx'; at?: number; from?: number } | { kind: 'name' };

/**
 * Code Ajv writes for a unit where it is written: units (`plain` of them outside anyOf, oneOf,
 * not, if and contains), units × their position down the run of nested blocks, units × the loops
 * over items or keys around them, deepest subschema, longest run.
 */
interface Code {
  units: number;
  plain: number;
  nested: number;
  looped: number;
  depth: number;
  run: number;
}

interface Unit {
  node: unknown;
  local: number;
  code: Code;
  /** `chain`, `run`, `loops`, `depth` and `collect`: where the reference sits in its unit's code. */
  edges: { to: Unit; path: Step[]; ref: string; chain: number; run: number; loops: number; depth: number; collect: boolean }[];
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
  if (!isObj(schema)) return { expanded: 1, pairwise: false, compile: 1 };
  const anchors = indexResource(schema);
  const units = new Map<unknown, Unit>();
  const order: Unit[] = [];
  const pending: Unit[] = [];
  const unitOf = (node: unknown): Unit => {
    let u = units.get(node);
    if (!u) {
      u = { node, local: 0, code: { units: 0, plain: 0, nested: 0, looped: 0, depth: 0, run: 0 }, edges: [] };
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

  const shape: SchemaShape = { expanded: 0, pairwise: false, compile: 0 };
  let total = 0;
  unitOf(schema);
  while (pending.length) {
    const unit = pending.pop()!;
    // `chain` weighs each block by what it costs V8 (see same()), `run` counts them.
    const stack: { node: unknown; path: Step[]; chain: number; run: number; loops: number; depth: number; collect: boolean }[] = [{ node: unit.node, path: [], chain: 0, run: 0, loops: 0, depth: 0, collect: false }];
    while (stack.length) {
      const { node, path, chain, run, loops, depth, collect } = stack.pop()!;
      unit.local++;
      // Every unit is applied at least once: their sum bounds the expanded size from below.
      if (++total > MAX_EXPANDED) throw tooLarge();
      const code = weigh(node, chain);
      // Where errors are collected rather than returned, each one is built and pushed: twice the code.
      const times = collect ? 2 : 1;
      unit.code.units += code.units * times;
      unit.code.plain += collect ? 0 : code.units;
      unit.code.nested += code.nested * times;
      unit.code.looped += code.units * loops * times;
      unit.code.depth = Math.max(unit.code.depth, depth);
      let runSlot = run + code.next - chain;
      unit.code.run = Math.max(unit.code.run, runSlot);
      if (!isObj(node)) continue;
      for (const kw of REF_KEYWORDS) {
        const ref = node[kw];
        if (typeof ref === 'string') unit.edges.push({ to: unitOf(resolve(ref)), path, ref, chain: code.next, run: runSlot, loops, depth, collect });
      }
      if (node.uniqueItems === true && checkUniqueItems(node)) shape.pairwise = true;
      // Each subschema's code goes inside the block of the keyword or subschema before it.
      let slot = code.next;
      const same = (v: unknown, width = 1, collecting = collect) => {
        stack.push({ node: v, path, chain: slot, run: runSlot, loops, depth: depth + 1, collect: collecting });
        slot += width;
        runSlot += Math.min(width, 1);
      };
      // Under a loop every error's path is built from the loop's index or key: code grows with the loops around it.
      const down = (v: unknown, step: Step, collecting = collect) => {
        const loop = (step.kind === 'key' && step.name === undefined) || (step.kind === 'idx' && step.at === undefined) || step.kind === 'name';
        stack.push({ node: v, path: [...path, step], chain: slot++, run: runSlot++, loops: loops + (loop ? 1 : 0), depth: depth + 1, collect: collecting });
      };
      for (const kw of ['not', 'if', 'then', 'else']) if (has(node, kw)) same(node[kw], 1, collect || kw === 'not' || kw === 'if');
      // An allOf entry goes inside the block of the one before and declares in it (V8 then looks names up through every such block); anyOf and oneOf entries follow one another.
      for (const kw of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(node[kw])) for (const v of node[kw] as unknown[]) same(v, kw === 'allOf' ? 2 : 0, collect || kw !== 'allOf');
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
      if (has(node, 'contains')) down(node.contains, { kind: 'idx', from: 0 }, true);
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
  shape.compile = compileUnits(units.get(schema)!, order);
  return shape;
}

/**
 * Units of code Ajv generates and V8 compiles for the schema: every subschema and keyword one, a
 * pattern by its size, `enum` and `required` values written out by their number. A unit weighs
 * more the further down a run of nested blocks it comes (V8 resolves names through every block
 * around it) and the more loops over items or keys surround it. A schema without references is
 * counted wherever it is referenced; any other once per reference string (Ajv compiles it once
 * for each string, as a function of its own).
 */
function compileUnits(top: Unit, order: readonly Unit[]): number {
  let units = 0;
  let nested = 0;
  let looped = 0;
  let depth = 0;
  let run = 0;
  const compile = (u: Unit) => {
    units += u.code.units;
    nested += u.code.nested;
    looped += u.code.looped;
    depth = Math.max(depth, u.code.depth);
    run = Math.max(run, u.code.run);
    for (const e of u.edges) {
      if (e.to.edges.length > 0) continue;
      const { code } = e.to;
      const times = e.collect ? 2 : 1;
      units += code.units + (e.collect ? code.plain : 0);
      nested += (code.nested + e.chain * code.units) * times;
      looped += (code.looped + e.loops * code.units) * times;
      depth = Math.max(depth, e.depth + code.depth);
      run = Math.max(run, e.run + code.run);
    }
  };
  compile(top);
  const compiled = new Set<string>();
  for (const u of order) {
    for (const e of u.edges) {
      if (e.to === top || e.to.edges.length === 0 || compiled.has(e.ref)) continue;
      compiled.add(e.ref);
      compile(e.to);
    }
  }
  const total = Math.round(units + nested / NESTING_PER_UNIT + looped / LOOPS_PER_UNIT);
  if (total > MAX_COMPILE_UNITS) {
    throw invalid(
      `the schema is too large to compile: about ${total} units of code, at most ${MAX_COMPILE_UNITS} (a unit per subschema and keyword, more down long runs of properties, allOf entries or keywords and inside anyOf, oneOf or loops over items; patterns by their size, enum and required values by their number); use fewer or smaller subschemas`,
      { limit_compile_units: MAX_COMPILE_UNITS, compile_units: total },
    );
  }
  if (depth > MAX_DEPTH) {
    throw invalid(`the schema nests subschemas more than ${MAX_DEPTH} deep (properties, items, allOf… within one another); at most ${MAX_DEPTH} levels are accepted`, { limit_depth: MAX_DEPTH });
  }
  if (run > MAX_RUN) {
    throw invalid(`the schema's validator would nest more than ${MAX_RUN} blocks one in another (each property, allOf entry and keyword of a subschema goes inside the one before); use fewer properties or allOf entries in one subschema`, { limit_run: MAX_RUN });
  }
  return total;
}

/** Keywords Ajv writes no code for. */
const ANNOTATIONS = new Set(['$schema', '$id', '$anchor', '$dynamicAnchor', '$defs', 'definitions', '$comment', 'title', 'description', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly', 'contentEncoding', 'contentMediaType', 'contentSchema']);

/** The code of one subschema, itself: its units and their nesting; `next` is the position its first subschema comes at. */
function weigh(node: unknown, chain: number): { units: number; nested: number; next: number } {
  if (!isObj(node)) return { units: 1, nested: chain, next: chain };
  let units = 1;
  let nested = chain;
  let at = chain;
  const add = (n: number) => {
    units += n;
    nested += n * at++;
  };
  for (const [kw, value] of Object.entries(node)) {
    if (ANNOTATIONS.has(kw)) continue;
    if ((kw === 'dependentRequired' || kw === 'dependencies') && isObj(value)) {
      // A block per property named, its names written out.
      for (const v of Object.values(value)) add(2 + (Array.isArray(v) ? listUnits(v) : 0));
      continue;
    }
    let n = 1;
    if ((kw === 'enum' || kw === 'required') && Array.isArray(value)) n += listUnits(value);
    if (kw === 'pattern' && typeof value === 'string') n += patternUnits(value);
    if (kw === 'patternProperties' && isObj(value)) for (const p of Object.keys(value)) n += patternUnits(p);
    // A oneOf tracks which branches passed, after each; contains counts its matches; a format or
    // an enum is called or compared, and its error carries the format or the values.
    if (kw === 'oneOf' && Array.isArray(value)) n += 3 * value.length;
    if (kw === 'contains' || kw === 'format' || kw === 'enum') n += 1;
    add(n);
  }
  return { units, nested, next: at };
}

const listUnits = (values: readonly unknown[]): number => (values.length < INLINE_LIST ? values.length / LIST_VALUES_PER_UNIT : 1);
/** A pattern is compiled, RE2 first, wherever it is used. */
const patternUnits = (pattern: string): number => PATTERN_UNITS + patternSize(pattern) / PATTERN_SIZE_PER_UNIT;

/**
 * What RE2 compiles a pattern to, roughly: every atom (a character, an escape, a class) by its
 * length in the pattern, times the counts of the repetitions around it (`{1000}` is a thousand
 * copies). RE2 refuses more than a thousand nested copies, not many patterns of a thousand each.
 */
export function patternSize(pattern: string): number {
  const groups: { size: number; last: number }[] = [{ size: 0, last: 0 }];
  let i = 0;
  while (i < pattern.length) {
    const group = groups[groups.length - 1]!;
    const c = pattern[i]!;
    let atom: number;
    if (c === '(') {
      groups.push({ size: 0, last: 0 });
      i++;
      continue;
    }
    if (c === ')' && groups.length > 1) {
      atom = groups.pop()!.size + 2;
      i++;
      const outer = groups[groups.length - 1]!;
      outer.size += atom;
      outer.last = atom;
      continue;
    }
    const repeat = c === '{' ? /^\{(\d+)(?:,(\d*))?\}/.exec(pattern.slice(i, i + 24)) : null;
    if (repeat) {
      const copies = Math.max(Number(repeat[1]), Number(repeat[2] || 0), 1);
      // Bounded, so that nested repetitions stay a finite number (far past any limit).
      group.size = Math.min(group.size + group.last * (copies - 1), PATTERN_SIZE_CAP);
      group.last = Math.min(group.last * copies, PATTERN_SIZE_CAP);
      i += repeat[0].length;
      continue;
    }
    const end = atomEnd(pattern, i);
    atom = end - i;
    i = end;
    group.size += atom;
    group.last = atom;
  }
  return Math.min(groups.reduce((sum, g) => sum + g.size, 0), PATTERN_SIZE_CAP);
}

/** Where the atom starting at `i` ends: an escape (`\p{Greek}` whole), a class (`[...]`), or one character. Each scan moves `i` past what it read. */
function atomEnd(pattern: string, i: number): number {
  if (pattern[i] === '\\') {
    const kind = pattern[i + 1];
    const named = kind === 'p' || kind === 'P' || kind === 'x';
    if (named && pattern[i + 2] === '{') {
      const close = pattern.indexOf('}', i);
      return close < 0 ? pattern.length : close + 1;
    }
    return Math.min(pattern.length, i + (kind === 'p' || kind === 'P' ? 3 : 2));
  }
  if (pattern[i] !== '[') return i + 1;
  let j = i + 1;
  if (pattern[j] === '^') j++;
  if (pattern[j] === ']') j++;
  while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
  return Math.min(pattern.length, j + 1);
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
