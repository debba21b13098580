/**
 * The passport service's bus commands: what the MCP gateway calls for the passport tools
 * (DESIGN.md §7), and what every node asks for its revocation state and the signing keys.
 * Each acts for `ctx.caller` (the signed caller context), never for a field of the payload.
 */
import { Type, type Static } from '@sinclair/typebox';

import { defineCommand } from '../bus/definitions';
import {
  AGENT_NAME_MAX,
  AGENT_NAME_PATTERN,
  CONNECTION_ID_PATTERN,
  ConstraintSchema,
  MAX_CONSTRAINTS_PER_CONNECTION,
  MAX_INTENT_SUMMARY,
  PASSPORT_TTL,
  PassportClaimsSchema,
  PassportJwkSchema,
  SCOPE_PATTERN,
  SERVICE_ID_PATTERN,
  RevocationKindSchema,
} from './passport-claims';

const Reason = Type.Optional(Type.String({ maxLength: 500 }));

export const AgentSchema = Type.Object({
  id: Type.String(),
  operator_id: Type.String(),
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});
export type AgentView = Static<typeof AgentSchema>;

export const GrantSchema = Type.Object({
  id: Type.String(),
  agent_id: Type.String(),
  connection_id: Type.String(),
  service_id: Type.String(),
  service_name: Type.String(),
  scopes: Type.Array(Type.String()),
  constraints: Type.Array(ConstraintSchema),
  created_at: Type.String({ format: 'date-time' }),
});
export type GrantView = Static<typeof GrantSchema>;

export const AgentNameSchema = Type.String({ pattern: AGENT_NAME_PATTERN, minLength: 2, maxLength: AGENT_NAME_MAX });

export const RegisterAgentRequest = Type.Object({ name: AgentNameSchema, description: Type.Optional(Type.String({ maxLength: 1000 })) });
export const UpdateAgentRequest = Type.Object({ agent_id: Type.String(), name: Type.Optional(AgentNameSchema), description: Type.Optional(Type.String({ maxLength: 1000 })) });
export const AgentIdRequest = Type.Object({ agent_id: Type.String() });

export const GrantAgentAccessRequest = Type.Object({
  agent_id: Type.String(),
  connection_id: Type.String({ pattern: CONNECTION_ID_PATTERN }),
  service_id: Type.Optional(Type.String({ pattern: SERVICE_ID_PATTERN })),
  service_name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  scopes: Type.Array(Type.String({ pattern: SCOPE_PATTERN }), { maxItems: 64 }),
  constraints: Type.Optional(Type.Array(ConstraintSchema, { maxItems: MAX_CONSTRAINTS_PER_CONNECTION })),
});

/** What a caller asks a passport (or a child) to carry for one connection. */
export const RequestedServiceSchema = Type.Object({
  connection_id: Type.String({ pattern: CONNECTION_ID_PATTERN }),
  scopes: Type.Array(Type.String({ pattern: SCOPE_PATTERN }), { maxItems: 64 }),
  constraints: Type.Optional(Type.Array(ConstraintSchema, { maxItems: MAX_CONSTRAINTS_PER_CONNECTION })),
});
export type RequestedService = Static<typeof RequestedServiceSchema>;

export const IssuePassportRequest = Type.Object({
  agent_id: Type.String(),
  ttl_seconds: Type.Optional(Type.Integer({ minimum: PASSPORT_TTL.minSeconds, maximum: PASSPORT_TTL.maxSeconds, description: `Lifetime in seconds, ${PASSPORT_TTL.minSeconds} to ${PASSPORT_TTL.maxSeconds} (default ${PASSPORT_TTL.defaultSeconds}).` })),
  intent_summary: Type.Optional(Type.String({ maxLength: MAX_INTENT_SUMMARY })),
  intent_services: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 })),
  services: Type.Optional(Type.Array(RequestedServiceSchema, { maxItems: 64 })),
});
export type IssuePassportInput = Static<typeof IssuePassportRequest>;

export const IssuedPassportSchema = Type.Object({ token: Type.String(), jti: Type.String(), expires_at: Type.String({ format: 'date-time' }) });
export type IssuedPassport = Static<typeof IssuedPassportSchema>;

export const VerifyPassportRequest = Type.Object({ token: Type.String({ maxLength: 16_384 }) });
export const VerifyPassportResponse = Type.Object({
  valid: Type.Boolean(),
  revoked: Type.Boolean(),
  claims: Type.Optional(PassportClaimsSchema),
  reason: Type.Optional(Type.String()),
  /** The stable error code behind `reason` (PASSPORT_EXPIRED, PASSPORT_REVOKED, UNAUTHORIZED). */
  code: Type.Optional(Type.String()),
});
export type VerifyPassportResult = Static<typeof VerifyPassportResponse>;

export const RefreshPassportRequest = Type.Object({ token: Type.String({ maxLength: 16_384 }), ttl_seconds: Type.Optional(Type.Integer()) });

export const DelegatePassportRequest = Type.Object({
  parent_token: Type.String({ maxLength: 16_384 }),
  child_agent_id: Type.String(),
  services: Type.Array(RequestedServiceSchema, { maxItems: 64 }),
  ttl_seconds: Type.Optional(Type.Integer({ minimum: 1, description: 'Lifetime in seconds, at most what the parent has left (default: all of it).' })),
  intent_summary: Type.Optional(Type.String({ maxLength: MAX_INTENT_SUMMARY })),
});
export type DelegatePassportInput = Static<typeof DelegatePassportRequest>;

export const PassportSummarySchema = Type.Object({
  jti: Type.String(),
  agent_id: Type.String(),
  member_id: Type.String(),
  session_id: Type.String(),
  parent_jti: Type.Union([Type.String(), Type.Null()]),
  delegation_depth: Type.Integer(),
  issued_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  intent_summary: Type.String(),
  connection_ids: Type.Array(Type.String()),
});
export type PassportSummary = Static<typeof PassportSummarySchema>;

export const ListActivePassportsRequest = Type.Object({ agent_id: Type.Optional(Type.String()), session_id: Type.Optional(Type.String()) });

export const RevocationEntrySchema = Type.Object({
  id: Type.String(),
  kind: RevocationKindSchema,
  value: Type.String(),
  operator_id: Type.String(),
  revoked_at_ms: Type.Integer(),
  expires_at_ms: Type.Integer(),
  reason: Type.Optional(Type.String()),
});

export const RevokeResponse = Type.Object({ revoked: RevocationEntrySchema });

export const RevocationSnapshotResponse = Type.Object({
  /** Stream sequence of STACK_REVOCATIONS up to which `entries` is complete: replay after it. */
  seq: Type.Integer({ minimum: 0 }),
  taken_at_ms: Type.Integer(),
  entries: Type.Array(RevocationEntrySchema),
});
export type RevocationSnapshot = Static<typeof RevocationSnapshotResponse>;

const passportCommand = <Req extends Parameters<typeof defineCommand>[0]['request'], Res extends Parameters<typeof defineCommand>[0]['response']>(name: string, description: string, request: Req, response: Res) =>
  defineCommand({ service: 'passport', name, description, request, response });

export const PASSPORT_COMMANDS = {
  registerAgent: passportCommand('register_agent', "Registers a named agent in the caller's operator.", RegisterAgentRequest, AgentSchema),
  listAgents: passportCommand('list_agents', "Lists the caller's operator's agents.", Type.Object({}), Type.Object({ agents: Type.Array(AgentSchema) })),
  getAgent: passportCommand('get_agent', 'Reads one agent.', AgentIdRequest, AgentSchema),
  updateAgent: passportCommand('update_agent', "Renames an agent or changes its description.", UpdateAgentRequest, AgentSchema),
  deleteAgent: passportCommand('delete_agent', 'Deletes an agent, its grants, and revokes its passports.', AgentIdRequest, Type.Object({ deleted: Type.Boolean() })),
  grantAgentAccess: passportCommand('grant_agent_access', 'Grants an agent a connection with scopes and baseline constraints (replaces an earlier grant of it).', GrantAgentAccessRequest, GrantSchema),
  listAgentGrants: passportCommand('list_agent_grants', "Lists an agent's grants.", AgentIdRequest, Type.Object({ grants: Type.Array(GrantSchema) })),
  removeAgentGrant: passportCommand('remove_agent_grant', "Removes an agent's grant of one connection.", Type.Object({ agent_id: Type.String(), connection_id: Type.String() }), Type.Object({ removed: Type.Boolean() })),
  issuePassport: passportCommand('issue_passport', 'Issues a passport for an agent, never more than its grants.', IssuePassportRequest, IssuedPassportSchema),
  verifyPassport: passportCommand('verify_passport', 'Checks a passport: signature, typ, audience, expiry and live revocation state.', VerifyPassportRequest, VerifyPassportResponse),
  refreshPassport: passportCommand('refresh_passport', 'Issues a fresh passport with the same grants in place of a live one.', RefreshPassportRequest, IssuedPassportSchema),
  delegatePassport: passportCommand('delegate_passport', 'Mints a child passport for another agent: a subset of the parent, every parent constraint kept.', DelegatePassportRequest, IssuedPassportSchema),
  listActivePassports: passportCommand('list_active_passports', "Lists the operator's passports that are neither expired nor revoked.", ListActivePassportsRequest, Type.Object({ passports: Type.Array(PassportSummarySchema) })),
  revokePassport: passportCommand('revoke_passport', 'Revokes one passport and everything delegated from it.', Type.Object({ jti: Type.String(), reason: Reason }), RevokeResponse),
  revokeAgentPassports: passportCommand('revoke_agent_passports', 'Revokes every passport of an agent issued until now.', Type.Object({ agent_id: Type.String(), reason: Reason }), RevokeResponse),
  revokeSession: passportCommand('revoke_session', 'Revokes every passport of a session issued until now.', Type.Object({ session_id: Type.String(), reason: Reason }), RevokeResponse),
  revokeAllPassports: passportCommand('revoke_all_passports', "Revokes every passport of the caller's operator issued until now.", Type.Object({ confirm: Type.Literal(true), reason: Reason }), RevokeResponse),
  revocationSnapshot: passportCommand('revocation_snapshot', 'The live revocation entries and the STACK_REVOCATIONS sequence they are complete up to.', Type.Object({}), RevocationSnapshotResponse),
  getJwks: passportCommand('get_jwks', 'The public keys that verify passports (current and retired-but-unexpired).', Type.Object({}), Type.Object({ keys: Type.Array(PassportJwkSchema) })),
  rotateSigningKey: passportCommand('rotate_signing_key', 'Retires the current passport signing key and makes a new one.', Type.Object({}), Type.Object({ kid: Type.String() })),
} as const;

export const PASSPORT_COMMAND_LIST = Object.values(PASSPORT_COMMANDS);
