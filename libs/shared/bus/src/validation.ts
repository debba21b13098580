/**
 * Payload validation at the receiver. Contracts' schemas are JSON Schema (TypeBox), compiled
 * once with ajv. Unknown fields are allowed through untouched (the schemas do not forbid
 * them), so a newer sender adding a field never breaks an older receiver.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { fullFormats } from 'ajv-formats/dist/formats';
import type { TSchema } from '@sinclair/typebox';

import { StackError } from '@stack/contracts';

const ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false });
addFormats(ajv);

const fullDateTime = fullFormats['date-time'] as { validate: (value: string) => boolean; compare: (a: string, b: string) => number | undefined };
const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The digits of `s` from `from` to `to` (exclusive) as a number, or -1 if one is not a digit. */
function digits(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * The `date-time` format (RFC 3339). What Date#toISOString writes — YYYY-MM-DDTHH:MM:SS.sssZ, the
 * shape of every timestamp STACK sends — is judged by its characters; anything else, and anything
 * that fails here, by ajv-formats' own check, so the answer is always the one that check gives
 * (this only spares its split and two regular expressions per timestamp on the hot path).
 */
export function isDateTime(s: string): boolean {
  if (s.length === 24 && s[4] === '-' && s[7] === '-' && s[10] === 'T' && s[13] === ':' && s[16] === ':' && s[19] === '.' && s[23] === 'Z' && digits(s, 20, 23) >= 0) {
    const year = digits(s, 0, 4);
    const month = digits(s, 5, 7);
    const day = digits(s, 8, 10);
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    if (year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= (month === 2 && leap ? 29 : DAYS_IN_MONTH[month]!)) {
      const hour = digits(s, 11, 13);
      const minute = digits(s, 14, 16);
      const second = digits(s, 17, 19);
      if (hour >= 0 && hour <= 23 && minute >= 0 && minute <= 59 && second >= 0 && second <= 59) return true;
    }
  }
  return fullDateTime.validate(s);
}

ajv.addFormat('date-time', { type: 'string', validate: isDateTime, compare: fullDateTime.compare });

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
