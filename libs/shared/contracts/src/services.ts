/**
 * The six services of STACK. These names are wire names: they appear in bus subjects,
 * queue groups, Postgres schemas and STACK_SERVICES. Renaming one breaks deployed consumers.
 */
export const SERVICE_NAMES = ['auth', 'mcp-gateway', 'credential-proxy', 'passport', 'skill-runner', 'audit'] as const;

export type ServiceName = (typeof SERVICE_NAMES)[number];

export function isServiceName(value: string): value is ServiceName {
  return (SERVICE_NAMES as readonly string[]).includes(value);
}

/** Each service owns one Postgres schema; no service reads another's. */
export const SERVICE_SCHEMAS: Record<ServiceName, string> = {
  auth: 'auth',
  'mcp-gateway': 'mcp_gateway',
  'credential-proxy': 'credential_proxy',
  passport: 'passport',
  'skill-runner': 'skill_runner',
  audit: 'audit',
};
