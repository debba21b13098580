/**
 * The auth service on the bus: resolving API keys for other services (the gateway), and the
 * domain events it writes through its outbox.
 */
import { Type } from '@sinclair/typebox';

import { defineCommand, defineEvent } from '../bus/definitions';
import { MEMBER_ROLES } from './auth-scopes';

const RoleSchema = Type.Union(MEMBER_ROLES.map((r) => Type.Literal(r)));

/** `sk_live_…` → who it acts as. Unknown or revoked keys fail with UNAUTHORIZED. */
export const ResolveApiKeyCommand = defineCommand({
  service: 'auth',
  name: 'resolve_api_key',
  description: 'Resolve an API key (sk_live_…) to the member and operator it acts as, with their scopes. Fails with UNAUTHORIZED when unknown or revoked.',
  request: Type.Object({ api_key: Type.String({ minLength: 1, maxLength: 200 }) }),
  response: Type.Object({
    api_key_id: Type.String(),
    operator_id: Type.String(),
    member_id: Type.String(),
    role: RoleSchema,
    scopes: Type.Array(Type.String()),
    allowed_connections: Type.Optional(Type.Array(Type.String())),
  }),
});

/**
 * What a member may reach beyond their scopes: their `allowed_connections` (absent when not
 * limited). Used for OAuth access tokens, which do not carry it. An unknown or inactive member,
 * or one of another operator, is NOT_FOUND.
 */
export const ResolveMemberAccessCommand = defineCommand({
  service: 'auth',
  name: 'resolve_member_access',
  description: "A member's allowed_connections (absent when not limited). NOT_FOUND for an unknown or inactive member of the operator.",
  request: Type.Object({ operator_id: Type.String({ minLength: 1, maxLength: 200 }), member_id: Type.String({ minLength: 1, maxLength: 200 }) }),
  response: Type.Object({
    member_id: Type.String(),
    allowed_connections: Type.Optional(Type.Array(Type.String())),
  }),
});

/**
 * A member approved an OAuth client on the consent page. The passport service records it as an
 * agent of the operator, attributed to the member (auth keeps its own `connected_apps` row).
 */
export const ClientApprovedEvent = defineEvent({
  entity: 'oauth_client',
  verb: 'approved',
  stream: 'EVENTS',
  description: 'A member approved an OAuth client; it acts for the member within the listed scopes.',
  payload: Type.Object({
    operator_id: Type.String(),
    member_id: Type.String(),
    client_id: Type.String(),
    client_name: Type.Optional(Type.String()),
    redirect_host: Type.Optional(Type.String()),
    grant_id: Type.String(),
    scopes: Type.Array(Type.String()),
    approved_at: Type.String({ format: 'date-time' }),
  }),
});

/** A member was revoked: their API keys, OAuth grants and tokens are dead. */
export const MemberRevokedEvent = defineEvent({
  entity: 'member',
  verb: 'revoked',
  stream: 'EVENTS',
  description: 'A member was revoked; every credential of theirs is dead.',
  payload: Type.Object({
    operator_id: Type.String(),
    member_id: Type.String(),
    revoked_by: Type.Optional(Type.String()),
    revoked_at: Type.String({ format: 'date-time' }),
  }),
});

export const AUTH_COMMANDS = [ResolveApiKeyCommand, ResolveMemberAccessCommand] as const;
export const AUTH_EVENTS = [ClientApprovedEvent, MemberRevokedEvent] as const;
