/**
 * What a catalog entry says about an upstream service: where it lives, how its credential is
 * injected, which scopes it knows, which method + path needs which scope, and (for upstream
 * OAuth) its authorization server.
 */
export type InjectionType = 'bearer' | 'header' | 'query' | 'basic';

export interface CredentialInjection {
  type: InjectionType;
  /** Header name (`header`) or query parameter name (`query`). */
  name?: string;
  /** Text put before the secret in a `header` injection (`Bearer `, `token `). */
  prefix?: string;
}

export interface ScopeRule {
  /** Upper-case methods, or `*` for any. */
  methods: readonly string[] | '*';
  /** Path below the base path; `*` matches one segment, `**` the rest. */
  path: string;
  /** Any one of these scopes allows the call (on a GraphQL endpoint: a query-only document). */
  scopes: readonly string[];
  /** A GraphQL endpoint: what the call needs depends on its documents, not its method. */
  graphql?: GraphQLScopes;
}

export interface GraphQLScopes {
  /** Any one of these allows a document with a mutation or subscription, or one that cannot be read. */
  write_scopes: readonly string[];
  /** Narrower scopes by mutation root field: a mutation whose root fields all share one is allowed by it. */
  mutation_fields?: Readonly<Record<string, readonly string[]>>;
}

export interface UpstreamOAuth {
  authorize_url: string;
  token_url: string;
  default_scopes: readonly string[];
  /** Separator of the `scope` parameter (Slack and GitHub use `,` in places; RFC 6749 uses a space). */
  scope_separator?: string;
}

export interface CatalogEntry {
  service_id: string;
  name: string;
  base_url: string;
  auth: CredentialInjection;
  /** Host names (or `*.suffix`, or `*` for any) a call may reach; defaults to the base URL's host. */
  allowed_hosts: readonly string[];
  /** Scopes the provider defines, plus STACK's generic `read` and `write`. */
  scopes: readonly string[];
  scope_rules: readonly ScopeRule[];
  /** Headers every call carries (API versions); a caller cannot override them. */
  default_headers?: Readonly<Record<string, string>>;
  oauth?: UpstreamOAuth;
  /** A cheap call that proves a credential works (`POST /v1/connections/:id/verify`). */
  verify?: { method: 'GET' | 'POST'; path: string };
  /** What the credential form asks for. */
  credential_kinds: ReadonlyArray<'token' | 'value' | 'basic' | 'oauth2'>;
  builtin: boolean;
}

/** Generic scopes every service has: `read` allows GET and HEAD, `write` every other method. */
export const GENERIC_READ = 'read';
export const GENERIC_WRITE = 'write';
