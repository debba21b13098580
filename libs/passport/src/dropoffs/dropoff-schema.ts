/**
 * The contract of a drop-off: a JSON Schema (draft 2020-12) checked and compiled once, then
 * used for every deposit. Schemas come from callers, so they are treated as hostile input:
 * at most 64 KB, checked against the 2020-12 meta-schema, measured (dropoff-schema-shape: its
 * size with every `$ref` expanded, its recursion, its `uniqueItems`, the code it compiles to),
 * compiled in a validator that never fetches a remote `$ref`, never keeps a caller's `$id`
 * beyond this compile (another operator may use the same one), and runs `pattern` /
 * `patternProperties` on RE2 (linear time, so a catastrophic regular expression cannot stall
 * the service). Compiled validators are kept by the schema's hash. A deposit is decided at the
 * first violation; every violation (up to 50) is reported only when the schema's expanded size
 * times the payload's values is small, since Ajv makes an error object for each.
 */
import { createHash } from 'node:crypto';

import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { RE2JS } from 're2js';

import { DROPOFF_LIMITS, StackError } from '@stack/contracts';

import { checkCost, planSchema, type CostPlan } from './dropoff-schema-cost';
import { MAX_UNIQUE_ITEMS, measureSchema, type SchemaShape } from './dropoff-schema-shape';

/** One validation failure: where in the payload (JSON pointer), which rule, in words. */
export interface SchemaViolation {
  pointer: string;
  keyword: string;
  message: string;
  schema_pointer: string;
}

const MAX_VIOLATIONS = 50;
/** Validators kept: GENERATIONS Ajv instances of GENERATION_SIZE schemas each. */
const GENERATION_SIZE = 64;
const GENERATIONS = 8;
/** Subschemas expanded × payload values up to which a failing payload gets every violation reported. */
const FULL_REPORT_WORK = 1_000_000;
/**
 * Units of work (dropoff-schema-cost) a payload may cost. Cold, on a 2-core machine, the slowest
 * shapes measured at this budget take at most 0.25 s (14 propertyNames over 24k keys: 0.24 s; an
 * allOf of 100 `{items}` over 30k items: 0.1 s); a 512 KB payload under a schema of tens of
 * subschemas costs about 0.15–0.3 M.
 */
export const CHECK_BUDGET = 3_000_000;

/** RE2 in place of JavaScript regular expressions, in the shape Ajv's `code.regExp` expects. */
function re2Engine(pattern: string): { test: (s: string) => boolean; toString: () => string } {
  const re = RE2JS.compile(pattern);
  // Ajv keys compiled patterns by toString(): it must name the pattern, or every pattern would share the first one's slot.
  return { test: (s: string) => re.test(s), toString: () => `re2:${pattern}` };
}
re2Engine.code = 're2js';

/** The checker holds the meta-schemas and checks every schema; compilers only compile what it passed. */
function newAjv(options: { allErrors: boolean; checker?: boolean }): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: options.allErrors,
    // Unknown keywords are ignored, as the specification says, rather than refused.
    strict: false,
    validateSchema: options.checker === true,
    meta: options.checker === true,
    addUsedSchema: false,
    $data: false,
    // Ajv's optimizer walks every block's names again for each block around it: quadratic in how
    // deep the generated code nests, half of a large schema's compile time, for no measurable
    // gain in validation (dropoff-schema-shape bounds what is left).
    code: { regExp: re2Engine as never, optimize: false },
    // No loadSchema: a `$ref` that is not inside the schema fails to compile.
  });
  addFormats(ajv);
  return ajv;
}

/**
 * Ajv keeps every schema it compiles (its cache and its generated code's scope) for its own life;
 * removeSchema frees neither. So validators are compiled GENERATION_SIZE to an instance, and the
 * oldest instance goes, with every validator it made, when there are more than GENERATIONS.
 */
class Generation {
  readonly fast = newAjv({ allErrors: false });
  private fullAjv?: Ajv2020;
  readonly hashes: string[] = [];

  /** The instance that goes on after the first violation, made on first use. */
  get full(): Ajv2020 {
    return (this.fullAjv ??= newAjv({ allErrors: true }));
  }
}

/** A compiled drop-off schema. */
export interface CompiledSchema {
  /** Stops at the first violation. */
  readonly validate: ValidateFunction;
  readonly shape: SchemaShape;
  /** What a payload costs to check, counted before checking it. */
  readonly plan: CostPlan;
  readonly generation: Generation;
  /** Reports every violation; compiled on the first failure that can afford it. */
  full?: ValidateFunction;
}

export class DropoffSchemas {
  private readonly checker = newAjv({ allErrors: true, checker: true });
  private readonly generations: Generation[] = [new Generation()];
  private readonly compiled = new Map<string, CompiledSchema>();

  /** The schema's stable hash (what the cache and the row keep). */
  static hash(json: string): string {
    return createHash('sha256').update(json).digest('hex');
  }

  /** Checks and compiles a caller's schema; StackError INVALID_SCHEMA with the reason otherwise. */
  prepare(schema: unknown): { json: string; hash: string; validate: CompiledSchema } {
    if (schema === undefined || schema === null || (typeof schema !== 'object' && typeof schema !== 'boolean') || Array.isArray(schema)) {
      throw new StackError('INVALID_SCHEMA', 'schema must be a JSON Schema (an object, or true/false)');
    }
    const json = JSON.stringify(schema);
    const bytes = Buffer.byteLength(json);
    if (bytes > DROPOFF_LIMITS.schemaBytes) throw new StackError('INVALID_SCHEMA', `the schema is ${bytes} bytes; at most ${DROPOFF_LIMITS.schemaBytes} are accepted`, { limit_bytes: DROPOFF_LIMITS.schemaBytes });
    const hash = DropoffSchemas.hash(json);
    return { json, hash, validate: this.validatorFor(json, hash) };
  }

  /** The validator of a schema stored earlier (compiled again after a restart). */
  validatorFor(json: string, hash = DropoffSchemas.hash(json)): CompiledSchema {
    const hit = this.compiled.get(hash);
    if (hit) return hit;
    const schema = JSON.parse(json) as object | boolean;
    if (typeof schema === 'object') {
      const declared = (schema as { $schema?: unknown }).$schema;
      if (declared !== undefined && declared !== 'https://json-schema.org/draft/2020-12/schema') {
        throw new StackError('INVALID_SCHEMA', 'drop-off schemas are JSON Schema draft 2020-12 ($schema https://json-schema.org/draft/2020-12/schema, or none)', { $schema: String(declared).slice(0, 200) });
      }
      if (!this.checker.validateSchema(schema)) {
        throw new StackError('INVALID_SCHEMA', 'the schema is not a valid JSON Schema (draft 2020-12)', { errors: violations(this.checker.errors ?? []) });
      }
    }
    const shape = measureSchema(schema);
    const generation = this.generation();
    // Counted whether or not it compiles: a failed compile stays in the instance too.
    generation.hashes.push(hash);
    let validate: ValidateFunction;
    try {
      validate = generation.fast.compile(schema);
    } catch (err) {
      const message = (err as Error).message ?? '';
      const reason = /can't resolve reference|resolve reference/i.test(message)
        ? 'it refers ($ref) to a schema that is not inside it; remote references are not fetched'
        : /regular expression|re2|syntax|pattern/i.test(message)
          ? 'a pattern is not valid RE2 syntax (no look-around or back-references)'
          : 'it could not be compiled';
      throw new StackError('INVALID_SCHEMA', `the schema is not usable: ${reason}`);
    }
    const compiled: CompiledSchema = { validate, shape, plan: planSchema(schema), generation };
    this.compiled.set(hash, compiled);
    return compiled;
  }

  /** The payload's violations of the schema; empty when it matches. PAYLOAD_TOO_LARGE when checking it would cost too much. */
  check(compiled: CompiledSchema, payload: unknown): SchemaViolation[] {
    if (checkCost(compiled.plan, payload, CHECK_BUDGET) > CHECK_BUDGET) {
      throw new StackError(
        'PAYLOAD_TOO_LARGE',
        `the payload is too costly to check against this schema: it would take more than ${CHECK_BUDGET} units of work (a subschema applied to a value, an enum entry compared, a key looped over); send fewer values, or use a smaller schema that applies fewer subschemas to each value`,
        { limit_work: CHECK_BUDGET },
      );
    }
    if (compiled.validate(payload)) return [];
    const first = compiled.validate.errors ?? [];
    if (!fullReportAffordable(compiled.shape, payload)) return violations(first);
    try {
      compiled.full ??= compiled.generation.full.compile(compiled.validate.schema);
    } catch {
      return violations(first);
    }
    compiled.full(payload);
    return violations(compiled.full.errors?.length ? compiled.full.errors : first);
  }

  /** The instance to compile in; a new one when it is full, and the oldest dropped with its validators. */
  private generation(): Generation {
    const current = this.generations[this.generations.length - 1]!;
    if (current.hashes.length < GENERATION_SIZE) return current;
    const next = new Generation();
    this.generations.push(next);
    if (this.generations.length > GENERATIONS) {
      const oldest = this.generations.shift()!;
      for (const h of oldest.hashes) if (this.compiled.get(h)?.generation === oldest) this.compiled.delete(h);
    }
    return next;
  }
}

/**
 * Whether reporting every violation is cheap: Ajv then makes an error object for each, up to
 * the schema's expanded size per payload value, and compares every pair under `uniqueItems`
 * even past `maxItems`.
 */
function fullReportAffordable(shape: SchemaShape, payload: unknown): boolean {
  const limit = Math.floor(FULL_REPORT_WORK / Math.max(1, shape.expanded));
  const values = countValues(payload, shape.pairwise ? Math.min(limit, MAX_UNIQUE_ITEMS) : limit);
  return values <= limit && !(shape.pairwise && values > MAX_UNIQUE_ITEMS);
}

/** The payload's values (properties, items and the payload itself), counted up to just past `limit`. */
function countValues(payload: unknown, limit: number): number {
  let n = 0;
  const stack: unknown[] = [payload];
  while (stack.length && n <= limit) {
    const v = stack.pop();
    n++;
    if (typeof v === 'object' && v !== null) for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push(child);
  }
  return n;
}

function violations(errors: readonly ErrorObject[]): SchemaViolation[] {
  return errors.slice(0, MAX_VIOLATIONS).map((e) => ({
    pointer: e.instancePath,
    keyword: e.keyword,
    message: e.message ?? 'does not match',
    schema_pointer: e.schemaPath.replace(/^#/, ''),
  }));
}
