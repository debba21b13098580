/**
 * Payload validation at the receiver. Contracts' schemas are JSON Schema (TypeBox), compiled
 * once with ajv. Unknown fields are allowed through untouched (the schemas do not forbid
 * them), so a newer sender adding a field never breaks an older receiver.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { TSchema } from '@sinclair/typebox';

import { StackError } from '@stack/contracts';

const ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false });
addFormats(ajv);

const compiled = new WeakMap<TSchema, ValidateFunction>();

export function validatorFor(schema: TSchema): ValidateFunction {
  let fn = compiled.get(schema);
  if (!fn) {
    fn = ajv.compile(schema);
    compiled.set(schema, fn);
  }
  return fn;
}

/** Throws StackError INVALID_REQUEST naming each failing JSON pointer. */
export function assertValid(schema: TSchema, value: unknown, what: string): void {
  const validate = validatorFor(schema);
  if (!validate(value)) {
    throw new StackError('INVALID_REQUEST', `${what} does not match its schema`, { errors: describeErrors(validate.errors ?? []) });
  }
}

export function describeErrors(errors: ErrorObject[]): { pointer: string; message: string }[] {
  return errors.slice(0, 20).map((e) => ({ pointer: e.instancePath || '/', message: e.message ?? 'invalid' }));
}
