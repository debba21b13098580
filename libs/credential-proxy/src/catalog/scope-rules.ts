/**
 * Which scopes a call needs: the first catalog rule whose method and path match decides the
 * provider scopes; STACK's generic `read` (GET, HEAD) or `write` (everything else) is always
 * accepted as well. On a GraphQL endpoint the documents decide instead of the method: queries
 * read, a mutation or subscription (or a document that cannot be read) writes. A caller holding
 * none of them gets OUT_OF_SCOPE.
 */
import { StackError } from '@stack/contracts';

import { GENERIC_READ, GENERIC_WRITE, type CatalogEntry, type ScopeRule } from './catalog.types';
import { graphqlAccess, type GraphQLAccess, type GraphQLRequest } from './graphql-operations';

export function pathMatches(pattern: string, path: string): boolean {
  return segmentsMatch(segmentsOf(pattern), segmentsOf(path));
}

function segmentsOf(path: string): string[] {
  return path.split('/').filter(Boolean);
}

function segmentsMatch(want: readonly string[], have: readonly string[]): boolean {
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '**') return true;
    if (i >= have.length) return false;
    if (want[i] !== '*' && want[i] !== have[i]) return false;
  }
  return want.length === have.length;
}

/** A rule's path pattern in segments, split once per rule object (a catalog's rules are read on every call). */
const patterns = new WeakMap<ScopeRule, readonly string[]>();

function patternOf(rule: ScopeRule): readonly string[] {
  let segments = patterns.get(rule);
  if (!segments) {
    segments = segmentsOf(rule.path);
    patterns.set(rule, segments);
  }
  return segments;
}

/** `req`: where a GraphQL rule reads the documents; without it a GraphQL call counts as a write. */
export function requiredScopes(entry: Pick<CatalogEntry, 'scope_rules'>, method: string, relativePath: string, req?: GraphQLRequest): string[] {
  const generic = method === 'GET' || method === 'HEAD' ? GENERIC_READ : GENERIC_WRITE;
  const have = segmentsOf(relativePath);
  const rule = entry.scope_rules.find((r) => (r.methods === '*' || r.methods.includes(method)) && segmentsMatch(patternOf(r), have));
  if (rule?.graphql) return graphqlScopes(rule, req);
  return rule ? [...new Set([...rule.scopes, generic])] : [generic];
}

function graphqlScopes(rule: ScopeRule, req: GraphQLRequest | undefined): string[] {
  const access: GraphQLAccess = req ? graphqlAccess(req) : { kind: 'write' };
  if (access.kind === 'read') return [...new Set([...rule.scopes, GENERIC_READ])];
  const byField = rule.graphql!.mutation_fields;
  let narrow: readonly string[] = [];
  if (access.kind === 'write' && access.mutationFields && byField) {
    // Scopes every root field allows: `issueCreate` and `commentCreate` together need `write`.
    const allowed = access.mutationFields.map((f) => (Object.prototype.hasOwnProperty.call(byField, f) ? byField[f]! : []));
    narrow = allowed.reduce((acc, scopes) => acc.filter((s) => scopes.includes(s)));
  }
  return [...new Set([...rule.graphql!.write_scopes, ...narrow, GENERIC_WRITE])];
}

/** `granted` undefined: the caller is not limited by scopes (a member acting for themselves). */
export function enforceScopes(granted: readonly string[] | undefined, required: readonly string[], method: string, relativePath: string): void {
  if (granted === undefined) return;
  if (required.some((s) => granted.includes(s))) return;
  throw new StackError('OUT_OF_SCOPE', `${method} ${relativePath} needs one of the scopes ${required.join(', ')}`, { required_scopes: [...required] });
}
