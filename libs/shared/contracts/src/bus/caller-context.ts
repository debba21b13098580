import { Type, type Static } from '@sinclair/typebox';

import { SERVICE_NAMES } from '../services';

/**
 * Who a bus message acts for. The service that authenticated the caller signs it
 * (see the security library); receivers verify before acting.
 */
export const CallerContextSchema = Type.Object({
  /** The service that authenticated the caller and signed this context. */
  issuer: Type.Union(SERVICE_NAMES.map((s) => Type.Literal(s))),
  /** `system` for a service acting on its own behalf (no human or agent behind it). */
  kind: Type.Union([Type.Literal('member'), Type.Literal('agent'), Type.Literal('system')]),
  operator_id: Type.Optional(Type.String()),
  member_id: Type.Optional(Type.String()),
  agent_id: Type.Optional(Type.String()),
  client_id: Type.Optional(Type.String()),
  passport_jti: Type.Optional(Type.String()),
  session_id: Type.Optional(Type.String()),
  scopes: Type.Array(Type.String()),
  /**
   * The connection ids the caller may see and use, when limited: a member's `allowed_connections`,
   * or the connections a passport grants. Absent: no such limit.
   */
  allowed_connections: Type.Optional(Type.Array(Type.String())),
});

export type CallerContext = Static<typeof CallerContextSchema>;
