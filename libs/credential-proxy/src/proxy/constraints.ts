/**
 * Passport constraints `{path, op, value}` evaluated on the canonical request (DESIGN.md §3).
 * All must hold. `matches` uses RE2 (re2js: linear time, no catastrophic backtracking) and the
 * whole value must match the pattern. A value the request does not have fails every positive
 * op (`eq`, `in`, `starts_with`, `matches`) and passes the negative ones (`not_eq`, `not_in`).
 * Body constraints apply to JSON bodies only: on a body that was not read as JSON every `body.*`
 * constraint fails, negative ones included, since the upstream may read that body another way.
 */
import { RE2JS } from 're2js';

import { MAX_CONSTRAINT_PATTERN, StackError, type Constraint } from '@stack/contracts';
import { re2CharCost } from '@stack/security';

import type { CanonicalRequest } from './canonical-request';

const patterns = new Map<string, RE2JS>();

/**
 * What one request's `matches` constraints may cost to check, in re2CharCost units (~80 ns each:
 * ~80 ms). A passport's holder chooses both the request and, by delegating, constraints of its
 * own: a pattern whose DFA blows up (`(?:\p{L}|a)*a\p{L}{120}`, 12 µs a character) against a
 * megabytes-long body value would hold the event loop for minutes. A 10 MB value against a cheap
 * pattern stays well inside.
 */
export const MAX_MATCH_UNITS = 1_000_000;

function compile(pattern: string): RE2JS {
  let re = patterns.get(pattern);
  if (!re) {
    if (pattern.length > MAX_CONSTRAINT_PATTERN) throw new StackError('INVALID_REQUEST', `a matches pattern is longer than ${MAX_CONSTRAINT_PATTERN} characters`);
    try {
      re = RE2JS.compile(pattern);
    } catch {
      throw new StackError('INVALID_REQUEST', 'a matches pattern is not valid RE2 syntax');
    }
    if (patterns.size > 1000) patterns.clear();
    patterns.set(pattern, re);
  }
  return re;
}

/** The value at a constraint path; `undefined` when the request has none. */
export function valueAt(req: CanonicalRequest, path: string): unknown {
  if (path === 'method') return req.method;
  if (path === 'url.host') return req.host;
  if (path === 'url.pathname') return req.pathname;
  if (path === 'url.origin') return req.origin;
  if (path.startsWith('headers.')) return req.headers[path.slice(8).toLowerCase()];
  if (path.startsWith('query.')) return req.query.find(([k]) => k === path.slice(6))?.[1];
  if (path.startsWith('body.')) {
    let node: unknown = req.json;
    for (const key of path.slice(5).split('.')) {
      if (node === null || typeof node !== 'object') return undefined;
      if (!Object.prototype.hasOwnProperty.call(node, key)) return undefined;
      node = (node as Record<string, unknown>)[key];
    }
    return node;
  }
  throw new StackError('INVALID_REQUEST', `unknown constraint path '${path}'`);
}

/** Constraint values are strings; a JSON number or boolean in the body compares by its JSON text. */
function same(a: unknown, b: string): boolean {
  if (typeof a === 'string') return a === b;
  if (typeof a === 'number' || typeof a === 'boolean') return String(a) === b;
  return false;
}

/** A body was sent but not read as JSON: nothing at a `body.*` path can be known. */
function unreadBody(constraint: Constraint, req: CanonicalRequest): boolean {
  return constraint.path.startsWith('body.') && req.json === undefined && req.body !== undefined && req.body.length > 0;
}

export function holds(constraint: Constraint, req: CanonicalRequest): boolean {
  if (unreadBody(constraint, req)) return false;
  const actual = valueAt(req, constraint.path);
  const expected = constraint.value;
  const list: string[] = Array.isArray(expected) ? expected : [expected];
  switch (constraint.op) {
    case 'eq':
      return actual !== undefined && list.length === 1 && same(actual, list[0]!);
    case 'not_eq':
      return actual === undefined || !same(actual, list[0]!);
    case 'in':
      return actual !== undefined && list.some((v) => same(actual, v));
    case 'not_in':
      return actual === undefined || !list.some((v) => same(actual, v));
    case 'starts_with':
      return typeof actual === 'string' && typeof expected === 'string' && actual.startsWith(expected);
    case 'matches': {
      if (typeof expected !== 'string') return false;
      // Compiled first, so a bad pattern is refused whether or not the value is present.
      const re = compile(expected);
      return (typeof actual === 'string' || typeof actual === 'number' || typeof actual === 'boolean') && re.matches(String(actual));
    }
    default: {
      const unknownOp: never = constraint.op;
      throw new StackError('INVALID_REQUEST', `unknown constraint op '${String(unknownOp)}'`);
    }
  }
}

/** Throws CONSTRAINT_VIOLATION naming the first constraint that does not hold (its path and op, never the value seen). */
export function enforceConstraints(constraints: readonly Constraint[], req: CanonicalRequest): void {
  let units = 0;
  for (const c of constraints) {
    if (unreadBody(c, req)) throw new StackError('CONSTRAINT_VIOLATION', `the request breaks a constraint on ${c.path} (${c.op}): body constraints apply to JSON bodies only`, { path: c.path, op: c.op, reason: 'body_not_json' });
    if (c.op === 'matches' && typeof c.value === 'string') {
      const actual = valueAt(req, c.path);
      if (typeof actual === 'string' || typeof actual === 'number' || typeof actual === 'boolean') units += String(actual).length * re2CharCost(c.value);
      // Refused unchecked, as a value the pattern would refuse: the constraint cannot be shown to hold.
      if (units > MAX_MATCH_UNITS) throw new StackError('CONSTRAINT_VIOLATION', `the request breaks a constraint on ${c.path} (${c.op}): the value is too long to check against its pattern`, { path: c.path, op: c.op, reason: 'too_costly_to_check' });
    }
    if (!holds(c, req)) throw new StackError('CONSTRAINT_VIOLATION', `the request breaks a constraint on ${c.path} (${c.op})`, { path: c.path, op: c.op });
  }
}
