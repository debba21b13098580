/**
 * The contract of a drop-off: a JSON Schema (draft 2020-12) checked and compiled once, then
 * used for every deposit. Schemas come from callers, so they are treated as hostile input:
 * at most 64 KB, checked against the 2020-12 meta-schema, compiled in a validator that never
 * fetches a remote `$ref`, never keeps a caller's `$id` beyond this compile (another operator
 * may use the same one), and runs `pattern` / `patternProperties` on RE2 (linear time, so a
 * catastrophic regular expression cannot stall the service). Compiled validators are kept by
 * the schema's hash.
 */
import { createHash } from 'node:crypto';

import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { RE2JS } from 're2js';

import { DROPOFF_LIMITS, StackError } from '@stack/contracts';

/** One validation failure: where in the payload (JSON pointer), which rule, in words. */
export interface SchemaViolation {
  pointer: string;
  keyword: string;
  message: string;
  schema_pointer: string;
}

const MAX_VIOLATIONS = 50;
const MAX_CACHED = 500;

/** RE2 in place of JavaScript regular expressions, in the shape Ajv's `code.regExp` expects. */
function re2Engine(pattern: string): { test: (s: string) => boolean; toString: () => string } {
  const re = RE2JS.compile(pattern);
  // Ajv keys compiled patterns by toString(): it must name the pattern, or every pattern would share the first one's slot.
  return { test: (s: string) => re.test(s), toString: () => `re2:${pattern}` };
}
re2Engine.code = 're2js';

function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: true,
    // Unknown keywords are ignored, as the specification says, rather than refused.
    strict: false,
    validateSchema: true,
    addUsedSchema: false,
    $data: false,
    code: { regExp: re2Engine as never },
    // No loadSchema: a `$ref` that is not inside the schema fails to compile.
  });
  addFormats(ajv);
  return ajv;
}

export class DropoffSchemas {
  private readonly ajv = newAjv();
  private readonly compiled = new Map<string, ValidateFunction>();

  /** The schema's stable hash (what the cache and the row keep). */
  static hash(json: string): string {
    return createHash('sha256').update(json).digest('hex');
  }

  /** Checks and compiles a caller's schema; StackError INVALID_SCHEMA with the reason otherwise. */
  prepare(schema: unknown): { json: string; hash: string; validate: ValidateFunction } {
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
  validatorFor(json: string, hash = DropoffSchemas.hash(json)): ValidateFunction {
    const hit = this.compiled.get(hash);
    if (hit) {
      this.compiled.delete(hash);
      this.compiled.set(hash, hit);
      return hit;
    }
    const schema = JSON.parse(json) as object | boolean;
    if (typeof schema === 'object') {
      const declared = (schema as { $schema?: unknown }).$schema;
      if (declared !== undefined && declared !== 'https://json-schema.org/draft/2020-12/schema') {
        throw new StackError('INVALID_SCHEMA', 'drop-off schemas are JSON Schema draft 2020-12 ($schema https://json-schema.org/draft/2020-12/schema, or none)', { $schema: String(declared).slice(0, 200) });
      }
      if (!this.ajv.validateSchema(schema)) {
        throw new StackError('INVALID_SCHEMA', 'the schema is not a valid JSON Schema (draft 2020-12)', { errors: violations(this.ajv.errors ?? []) });
      }
    }
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(schema);
    } catch (err) {
      const message = (err as Error).message ?? '';
      const reason = /can't resolve reference|resolve reference/i.test(message)
        ? 'it refers ($ref) to a schema that is not inside it; remote references are not fetched'
        : /regular expression|re2|syntax|pattern/i.test(message)
          ? 'a pattern is not valid RE2 syntax (no look-around or back-references)'
          : 'it could not be compiled';
      throw new StackError('INVALID_SCHEMA', `the schema is not usable: ${reason}`);
    }
    this.compiled.set(hash, validate);
    if (this.compiled.size > MAX_CACHED) this.compiled.delete(this.compiled.keys().next().value as string);
    return validate;
  }

  /** The payload's violations of the schema; empty when it matches. */
  check(validate: ValidateFunction, payload: unknown): SchemaViolation[] {
    return validate(payload) ? [] : violations(validate.errors ?? []);
  }
}

function violations(errors: readonly ErrorObject[]): SchemaViolation[] {
  return errors.slice(0, MAX_VIOLATIONS).map((e) => ({
    pointer: e.instancePath,
    keyword: e.keyword,
    message: e.message ?? 'does not match',
    schema_pointer: e.schemaPath.replace(/^#/, ''),
  }));
}
