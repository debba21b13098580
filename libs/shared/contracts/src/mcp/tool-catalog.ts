/**
 * The tools the MCP gateway offers (DESIGN.md §7). Only tools that work end to end are
 * listed: each capability adds its tools here when its service answers their commands.
 * Descriptions are written for a model: what the tool does, when to use it, what comes back.
 */
import { AuditListCommand, AuditVerifyCommand } from '../audit/audit.commands';
import { CredentialProxyCommands } from '../credential-proxy/credential-proxy.contracts';
import { DROPOFF_COMMANDS } from '../dropoff/dropoff.contracts';
import { PASSPORT_COMMANDS } from '../passport/passport-commands';
import { defineTool, type ToolAnnotations, type ToolDef } from './tool-definition';

const READ: ToolAnnotations = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const WRITE: ToolAnnotations = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false };
const REVOKE: ToolAnnotations = { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false };

export const PASSPORT_TOOLS: ToolDef[] = [
  defineTool({
    name: 'stack_register_agent',
    title: 'Register an agent',
    description:
      'Registers a named software agent in your team (name: lowercase letters, digits and dashes). Agents receive grants of connected services and carry passports instead of credentials. Returns the agent with its id (agt_…).',
    scope: 'stack:passports',
    annotations: WRITE,
    command: PASSPORT_COMMANDS.registerAgent,
  }),
  defineTool({
    name: 'stack_list_agents',
    title: 'List agents',
    description: 'Lists the agents registered in your team, with their ids, names and descriptions. Use it to find the agent_id other passport tools need.',
    scope: 'stack:passports',
    annotations: READ,
    command: PASSPORT_COMMANDS.listAgents,
  }),
  defineTool({
    name: 'stack_grant_agent_access',
    title: 'Grant an agent access to a connection',
    description:
      'Admin only. Grants an agent the use of one connected service (connection_id) with the given scopes and optional baseline constraints. A passport can never hold more than its agent was granted. Replaces an earlier grant of the same connection: live passports of the agent that hold more than the new grant are revoked.',
    scope: 'stack:admin',
    // Replacing a grant can narrow it, and revokes the agent's passports that hold more than the new one.
    annotations: { ...WRITE, destructiveHint: true, idempotentHint: true },
    command: PASSPORT_COMMANDS.grantAgentAccess,
  }),
  defineTool({
    name: 'stack_issue_passport',
    title: 'Issue a passport',
    description:
      'Mints a short-lived passport (a signed token, default 15 minutes, 60–3600 s) for an agent, limited to the connections, scopes and constraints you ask for and never beyond its grants. State the intent in intent_summary. Returns {token, jti, expires_at}; hand the token to the agent, it is shown once.',
    scope: 'stack:passports',
    annotations: WRITE,
    command: PASSPORT_COMMANDS.issuePassport,
  }),
  defineTool({
    name: 'stack_verify_passport',
    title: 'Verify a passport',
    description: 'Checks a passport token: signature, audience, expiry and whether it (or any ancestor it was delegated from) was revoked. Returns {valid, revoked, claims?, reason?}.',
    scope: 'stack:passports',
    annotations: READ,
    command: PASSPORT_COMMANDS.verifyPassport,
  }),
  defineTool({
    name: 'stack_delegate_passport',
    title: 'Delegate a passport',
    description:
      'From a passport you hold (parent_token), mints a child passport for another agent of your team: a subset of the parent’s connections and scopes, keeping every parent constraint, expiring no later than the parent, at most 4 hops deep. Asking for more than the parent holds fails with SCOPE_ESCALATION.',
    scope: 'stack:passports',
    annotations: WRITE,
    command: PASSPORT_COMMANDS.delegatePassport,
  }),
  defineTool({
    name: 'stack_list_active_passports',
    title: 'List active passports',
    description: 'Lists the passports of your team that are neither expired nor revoked, optionally for one agent_id or session_id.',
    scope: 'stack:passports',
    annotations: READ,
    command: PASSPORT_COMMANDS.listActivePassports,
  }),
  defineTool({
    name: 'stack_revoke_passport',
    title: 'Revoke a passport',
    description: 'Revokes one passport by its jti, and with it every passport delegated from it, on every STACK node within a second. Calls in flight with it are cut.',
    scope: 'stack:passports',
    annotations: REVOKE,
    command: PASSPORT_COMMANDS.revokePassport,
  }),
  defineTool({
    name: 'stack_revoke_agent_passports',
    title: 'Revoke an agent’s passports',
    description: 'Revokes every passport issued so far to one agent (agent_id). New passports can still be issued afterwards.',
    scope: 'stack:passports',
    annotations: REVOKE,
    command: PASSPORT_COMMANDS.revokeAgentPassports,
  }),
  defineTool({
    name: 'stack_revoke_session',
    title: 'Revoke a session',
    description: 'Revokes every passport of one session (session_id): a root passport and all its delegations.',
    scope: 'stack:passports',
    annotations: REVOKE,
    command: PASSPORT_COMMANDS.revokeSession,
  }),
  defineTool({
    name: 'stack_revoke_all_passports',
    title: 'Revoke all passports',
    description: 'Admin only, and only with confirm: true. Revokes every passport of your team issued so far, everywhere, at once.',
    scope: 'stack:admin',
    annotations: REVOKE,
    command: PASSPORT_COMMANDS.revokeAllPassports,
  }),
];

export const AUDIT_TOOLS: ToolDef[] = [
  defineTool({
    name: 'stack_audit_list',
    title: 'Read the audit log',
    description:
      'Reads the tamper-evident audit log of your team, newest first: who (member, agent, passport) did what (action, outcome, error code) to which target, when. Admins see the whole team’s log, others their own actions. Filter by member_id, agent_id, passport_jti, action, outcome, since, until; page with limit and cursor.',
    scope: 'stack:audit',
    annotations: READ,
    command: AuditListCommand,
  }),
  defineTool({
    name: 'stack_audit_verify',
    title: 'Verify the audit log',
    description: 'Checks the audit log against its signed checkpoints. With entry_id: that entry’s inclusion proof and the verdict; without: the whole tree. Anyone can re-check the proofs offline with the public key.',
    scope: 'stack:audit',
    annotations: READ,
    command: AuditVerifyCommand,
    // The whole tree is read back and rehashed: ~30,000 entries a second, past the usual deadline
    // from ~150,000 entries on.
    longRunning: true,
  }),
];

export const SERVICE_TOOLS: ToolDef[] = [
  defineTool({
    name: 'stack_list_services',
    title: 'List connected services',
    description:
      'Lists the services your team can use through STACK — the catalog (GitHub, Slack, Stripe, … and custom APIs) and the connections made to them, with connection ids and what you may use. Credentials are never shown. Start here before stack_proxy_request.',
    scope: 'stack:services',
    annotations: READ,
    command: CredentialProxyCommands.listServices,
  }),
  defineTool({
    name: 'stack_connect_service',
    title: 'Connect a service',
    description:
      'Creates a link for the human to open in a browser to connect a service (service_id from stack_list_services, optional connection name; base_url for a service on the team\'s own site, such as Jira Cloud). The secret is entered on that page and never passes through you. Returns the link and when it expires.',
    scope: 'stack:services',
    annotations: WRITE,
    command: CredentialProxyCommands.connectService,
  }),
  defineTool({
    name: 'stack_proxy_request',
    title: 'Call a connected service',
    description:
      'Makes an HTTP request to a connected service with its credential injected by STACK: service is a connection id (or a catalog id when you can use exactly one connection of it), then method, path (or a full url on an allowed host), query, headers, body. Pass passport_token when acting as an agent, idempotency_key for retried writes. Returns status, headers and body (capped at 1 MB, marked truncated). Redirects are returned, not followed.',
    scope: 'stack:services',
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    command: CredentialProxyCommands.proxyRequest,
    longRunning: true,
  }),
];

export const DROPOFF_TOOLS: ToolDef[] = [
  defineTool({
    name: 'stack_create_dropoff',
    title: 'Hand a payload to another agent',
    description:
      'Creates a drop-off: a one-time hand-off of a JSON payload to another agent (to_agent, or to_agents where the first to collect wins; agent ids or names from stack_list_agents) under a JSON Schema (draft 2020-12) both sides agreed on. Pass payload to deposit at once, or deposit later with stack_deposit. It expires after ttl_seconds (default 1800, at most 86400). A payload that does not match the schema is refused with the validator errors as JSON pointers. Returns the drop-off id (drp_…) to give the recipient.',
    scope: 'stack:dropoffs',
    annotations: WRITE,
    command: DROPOFF_COMMANDS.create,
  }),
  defineTool({
    name: 'stack_deposit',
    title: 'Deposit a drop-off payload',
    description:
      'Deposits the payload of a drop-off you created (dropoff_id). It must match the drop-off’s JSON Schema: otherwise SCHEMA_VALIDATION_FAILED lists what is wrong (JSON pointers) and the drop-off stays open for a correct deposit. At most 512 KB; once deposited it cannot be changed.',
    scope: 'stack:dropoffs',
    annotations: WRITE,
    command: DROPOFF_COMMANDS.deposit,
  }),
  defineTool({
    name: 'stack_collect',
    title: 'Collect a drop-off',
    description:
      'Collects the payload of a drop-off addressed to you (dropoff_id). Custody passes exactly once: the payload is returned and destroyed; anyone collecting after that gets DROPOFF_ALREADY_COLLECTED naming who took it. wait_seconds (up to 60) waits for the deposit if it has not arrived yet.',
    scope: 'stack:dropoffs',
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    command: DROPOFF_COMMANDS.collect,
    waitFirst: { command: DROPOFF_COMMANDS.get, arg: 'wait_seconds' },
    longRunning: true,
  }),
];

export const MCP_TOOLS: readonly ToolDef[] = [...SERVICE_TOOLS, ...PASSPORT_TOOLS, ...AUDIT_TOOLS, ...DROPOFF_TOOLS];
