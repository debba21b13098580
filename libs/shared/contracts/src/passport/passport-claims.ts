/**
 * The passport token's shape (DESIGN.md §3): a compact JWS, EdDSA over Ed25519, `typ:
 * passport+jwt`. Every node that checks a passport reads these claims, so they are frozen
 * here; adding an optional field is fine, renaming one breaks every verifier in the field.
 */
import { Type, type Static } from '@sinclair/typebox';

export const PASSPORT_TYP = 'passport+jwt';
export const PASSPORT_ALG = 'EdDSA';
export const PASSPORT_TTL = { defaultSeconds: 900, minSeconds: 60, maxSeconds: 3600 } as const;
/** At most this many ancestors in `chain` (so at most 4 hops of delegation). */
export const MAX_DELEGATION_DEPTH = 4;
export const MAX_INTENT_SUMMARY = 500;
export const MAX_CONSTRAINTS_PER_CONNECTION = 32;
export const MAX_CONSTRAINT_PATTERN = 256;
export const AGENT_NAME_PATTERN = '^[a-z0-9][a-z0-9-]*[a-z0-9]$';
export const AGENT_NAME_MAX = 64;

export const CONSTRAINT_OPS = ['eq', 'not_eq', 'in', 'not_in', 'starts_with', 'matches'] as const;
/** `method`, `url.host`, `url.pathname`, `url.origin`, `headers.<name>`, `query.<key>`, `body.<dotted.path>`. */
export const CONSTRAINT_PATH_PATTERN = '^(method|url\\.host|url\\.pathname|url\\.origin|headers\\.[A-Za-z0-9!#$%&\'*+.^_`|~-]+|query\\.[^\\s]+|body\\.[^\\s]+)$';

export const ConstraintSchema = Type.Object({
  path: Type.String({ pattern: CONSTRAINT_PATH_PATTERN, maxLength: 256 }),
  op: Type.Union(CONSTRAINT_OPS.map((o) => Type.Literal(o))),
  value: Type.Union([Type.String({ maxLength: 2048 }), Type.Array(Type.String({ maxLength: 2048 }), { maxItems: 256 })]),
});
export type Constraint = Static<typeof ConstraintSchema>;

/** `scon_…` connection ids belong to the credential proxy; a passport only names them. */
export const CONNECTION_ID_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$';
export const SERVICE_ID_PATTERN = '^[a-z0-9][a-z0-9_.-]{0,63}$';
export const SCOPE_PATTERN = '^[A-Za-z0-9_.:/*-]{1,128}$';

export const PassportServiceSchema = Type.Object({
  connection_id: Type.String(),
  service_id: Type.String(),
  service_name: Type.String(),
  scopes: Type.Array(Type.String()),
  constraints: Type.Array(ConstraintSchema),
});
export type PassportService = Static<typeof PassportServiceSchema>;

export const PassportStkSchema = Type.Object({
  operator_id: Type.String(),
  agent_id: Type.String(),
  agent_name: Type.String(),
  member_id: Type.String(),
  session_id: Type.String(),
  issued_at_ms: Type.Integer(),
  chain: Type.Array(Type.String(), { maxItems: MAX_DELEGATION_DEPTH }),
  delegation_depth: Type.Integer({ minimum: 0, maximum: MAX_DELEGATION_DEPTH }),
  intent_summary: Type.String({ maxLength: MAX_INTENT_SUMMARY }),
  intent_services: Type.Array(Type.String()),
  services: Type.Array(PassportServiceSchema),
});

export const PassportClaimsSchema = Type.Object({
  jti: Type.String({ pattern: '^ppt_' }),
  sub: Type.String(),
  iss: Type.String(),
  aud: Type.String(),
  iat: Type.Integer(),
  exp: Type.Integer(),
  stk: PassportStkSchema,
});
export type PassportClaims = Static<typeof PassportClaimsSchema>;

/** One public key of the JWKS (`GET /v1/.well-known/jwks.json`). */
export const PassportJwkSchema = Type.Object({
  kty: Type.Literal('OKP'),
  crv: Type.Literal('Ed25519'),
  x: Type.String(),
  kid: Type.String(),
  alg: Type.Literal('EdDSA'),
  use: Type.Literal('sig'),
});
export type PassportJwk = Static<typeof PassportJwkSchema>;

/** What a revocation names (DESIGN.md §4, and `api_key`: a key id): a passport's jti, or a subject whose credentials die. */
export const REVOCATION_KINDS = ['jti', 'agent', 'session', 'member', 'operator', 'grant', 'client', 'api_key'] as const;
export const RevocationKindSchema = Type.Union(REVOCATION_KINDS.map((k) => Type.Literal(k)));
