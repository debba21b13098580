/**
 * OAuth scopes a member grants an MCP client on the consent screen (DESIGN.md §2). Wire names:
 * tokens carry them, clients ask for them; never rename one.
 */
export const STACK_SCOPES = ['stack:services', 'stack:passports', 'stack:audit', 'stack:skills', 'stack:dropoffs', 'stack:admin'] as const;

export type StackScope = (typeof STACK_SCOPES)[number];

export function isStackScope(value: string): value is StackScope {
  return (STACK_SCOPES as readonly string[]).includes(value);
}

/** Plain words for the consent screen. */
export const SCOPE_DESCRIPTIONS: Record<StackScope, string> = {
  'stack:services': 'See the services your team has connected and call them through STACK (your credentials stay in STACK).',
  'stack:passports': 'Register agents and issue, delegate and revoke their short-lived passports.',
  'stack:audit': 'Read the audit log of what you and your agents did.',
  'stack:skills': 'Publish and run skills in STACK’s sealed sandbox.',
  'stack:dropoffs': 'Hand payloads to other agents and collect what is handed to you.',
  'stack:admin': 'Administer your team: members, agent grants, and revoking everything.',
};

/** Granted when a client asks for no scope at all (some MCP clients do not send one). */
export const DEFAULT_SCOPES: readonly StackScope[] = ['stack:services', 'stack:passports', 'stack:audit', 'stack:skills', 'stack:dropoffs'];
