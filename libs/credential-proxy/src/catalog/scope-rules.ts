/**
 * Which scopes a call needs: the first catalog rule whose method and path match decides the
 * provider scopes; STACK's generic `read` (GET, HEAD) or `write` (everything else) is always
 * accepted as well. A caller holding none of them gets OUT_OF_SCOPE.
 */
import { StackError } from '@stack/contracts';

import { GENERIC_READ, GENERIC_WRITE, type CatalogEntry, type ScopeRule } from './catalog.types';

export function pathMatches(pattern: string, path: string): boolean {
  const want = pattern.split('/').filter(Boolean);
  const have = path.split('/').filter(Boolean);
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '**') return true;
    if (i >= have.length) return false;
    if (want[i] !== '*' && want[i] !== have[i]) return false;
  }
  return want.length === have.length;
}

function ruleMatches(rule: ScopeRule, method: string, path: string): boolean {
  return (rule.methods === '*' || rule.methods.includes(method)) && pathMatches(rule.path, path);
}

export function requiredScopes(entry: Pick<CatalogEntry, 'scope_rules'>, method: string, relativePath: string): string[] {
  const generic = method === 'GET' || method === 'HEAD' ? GENERIC_READ : GENERIC_WRITE;
  const rule = entry.scope_rules.find((r) => ruleMatches(r, method, relativePath));
  return rule ? [...new Set([...rule.scopes, generic])] : [generic];
}

/** `granted` undefined: the caller is not limited by scopes (a member acting for themselves). */
export function enforceScopes(granted: readonly string[] | undefined, required: readonly string[], method: string, relativePath: string): void {
  if (granted === undefined) return;
  if (required.some((s) => granted.includes(s))) return;
  throw new StackError('OUT_OF_SCOPE', `${method} ${relativePath} needs one of the scopes ${required.join(', ')}`, { required_scopes: [...required] });
}
