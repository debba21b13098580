/**
 * The built-in catalog (issue 6): GitHub, GitLab, Slack, Stripe, Linear, Notion, Jira, OpenAI and
 * Anthropic, with their documented scopes and, where the provider documents them, which method +
 * path needs which scope. Base URLs can be overridden per deployment with STACK_SERVICE_BASE_URLS
 * (that is how tests point them at fakes). Every call also accepts STACK's generic scopes:
 * `read` for GET/HEAD and `write` for the rest, so a read-only passport can never write. On a
 * GraphQL endpoint (`graphql` rules) the documents decide: `read` for queries only, `write` for a
 * mutation, a subscription or anything that cannot be read.
 */
import type { CatalogEntry } from './catalog.types';

const R = ['GET', 'HEAD'] as const;
const W = ['POST', 'PUT', 'PATCH', 'DELETE'] as const;

export const BUILTIN_CATALOG: readonly CatalogEntry[] = [
  {
    service_id: 'github',
    name: 'GitHub',
    base_url: 'https://api.github.com',
    auth: { type: 'bearer' },
    allowed_hosts: ['api.github.com', 'uploads.github.com'],
    scopes: ['read', 'write', 'repo', 'public_repo', 'read:org', 'write:org', 'read:user', 'user:email', 'gist', 'workflow', 'delete_repo'],
    scope_rules: [
      { methods: '*', path: '/graphql', scopes: ['read'], graphql: { write_scopes: ['write'] } },
      { methods: ['DELETE'], path: '/repos/*/*', scopes: ['delete_repo'] },
      { methods: R, path: '/repos/**', scopes: ['repo', 'public_repo'] },
      { methods: W, path: '/repos/*/*/actions/**', scopes: ['workflow'] },
      { methods: W, path: '/repos/**', scopes: ['repo', 'public_repo'] },
      { methods: R, path: '/orgs/**', scopes: ['read:org', 'write:org'] },
      { methods: W, path: '/orgs/**', scopes: ['write:org'] },
      { methods: R, path: '/user/emails', scopes: ['user:email'] },
      { methods: R, path: '/user/**', scopes: ['read:user'] },
      { methods: '*', path: '/gists/**', scopes: ['gist'] },
    ],
    default_headers: { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' },
    oauth: { authorize_url: 'https://github.com/login/oauth/authorize', token_url: 'https://github.com/login/oauth/access_token', default_scopes: ['repo', 'read:org'] },
    credential_kinds: ['token', 'oauth2'],
    verify: { method: 'GET', path: '/user' },
    builtin: true,
  },
  {
    service_id: 'gitlab',
    name: 'GitLab',
    base_url: 'https://gitlab.com/api/v4',
    auth: { type: 'bearer' },
    allowed_hosts: ['gitlab.com'],
    scopes: ['read', 'write', 'api', 'read_api', 'read_user', 'read_repository', 'write_repository'],
    scope_rules: [
      { methods: R, path: '/**', scopes: ['read_api', 'api'] },
      { methods: W, path: '/**', scopes: ['api'] },
    ],
    oauth: { authorize_url: 'https://gitlab.com/oauth/authorize', token_url: 'https://gitlab.com/oauth/token', default_scopes: ['api'] },
    credential_kinds: ['token', 'oauth2'],
    verify: { method: 'GET', path: '/user' },
    builtin: true,
  },
  {
    service_id: 'slack',
    name: 'Slack',
    base_url: 'https://slack.com/api',
    auth: { type: 'bearer' },
    allowed_hosts: ['slack.com'],
    scopes: ['read', 'write', 'channels:read', 'channels:history', 'chat:write', 'users:read', 'files:write', 'reactions:write'],
    scope_rules: [
      { methods: '*', path: '/chat.postMessage', scopes: ['chat:write'] },
      { methods: '*', path: '/chat.update', scopes: ['chat:write'] },
      { methods: '*', path: '/conversations.list', scopes: ['channels:read'] },
      { methods: '*', path: '/conversations.history', scopes: ['channels:history'] },
      { methods: '*', path: '/users.list', scopes: ['users:read'] },
      { methods: '*', path: '/files.upload', scopes: ['files:write'] },
      { methods: '*', path: '/reactions.add', scopes: ['reactions:write'] },
    ],
    oauth: { authorize_url: 'https://slack.com/oauth/v2/authorize', token_url: 'https://slack.com/api/oauth.v2.access', default_scopes: ['channels:read', 'chat:write'], scope_separator: ',' },
    credential_kinds: ['token', 'oauth2'],
    verify: { method: 'POST', path: '/auth.test' },
    builtin: true,
  },
  {
    service_id: 'stripe',
    name: 'Stripe',
    base_url: 'https://api.stripe.com',
    auth: { type: 'bearer' },
    allowed_hosts: ['api.stripe.com', 'files.stripe.com'],
    // Stripe restricted keys grant read or write per resource; STACK's generic pair mirrors that.
    scopes: ['read', 'write'],
    scope_rules: [],
    credential_kinds: ['token'],
    verify: { method: 'GET', path: '/v1/balance' },
    builtin: true,
  },
  {
    service_id: 'linear',
    name: 'Linear',
    base_url: 'https://api.linear.app',
    // Linear personal API keys go in Authorization without a scheme.
    auth: { type: 'header', name: 'authorization' },
    allowed_hosts: ['api.linear.app'],
    scopes: ['read', 'write', 'issues:create', 'comments:create', 'admin'],
    // One GraphQL endpoint: a query is a POST too, so the documents decide (graphql-operations.ts).
    scope_rules: [{ methods: '*', path: '/graphql', scopes: ['read'], graphql: { write_scopes: ['write'], mutation_fields: { issueCreate: ['issues:create'], commentCreate: ['comments:create'] } } }],
    oauth: { authorize_url: 'https://linear.app/oauth/authorize', token_url: 'https://api.linear.app/oauth/token', default_scopes: ['read', 'write'], scope_separator: ',' },
    credential_kinds: ['value', 'oauth2'],
    builtin: true,
  },
  {
    service_id: 'notion',
    name: 'Notion',
    base_url: 'https://api.notion.com/v1',
    auth: { type: 'bearer' },
    allowed_hosts: ['api.notion.com'],
    scopes: ['read', 'write', 'read_content', 'update_content', 'insert_content'],
    scope_rules: [
      { methods: ['POST'], path: '/search', scopes: ['read_content'] },
      { methods: ['POST'], path: '/databases/*/query', scopes: ['read_content'] },
      { methods: R, path: '/**', scopes: ['read_content'] },
      { methods: ['PATCH'], path: '/**', scopes: ['update_content'] },
      { methods: ['POST'], path: '/**', scopes: ['insert_content'] },
    ],
    default_headers: { 'notion-version': '2022-06-28' },
    oauth: { authorize_url: 'https://api.notion.com/v1/oauth/authorize', token_url: 'https://api.notion.com/v1/oauth/token', default_scopes: [] },
    credential_kinds: ['token', 'oauth2'],
    verify: { method: 'GET', path: '/users/me' },
    builtin: true,
  },
  {
    service_id: 'jira',
    name: 'Jira',
    // Each Jira Cloud site has its own host: a connection gives its site URL (any *.atlassian.net).
    base_url: 'https://your-site.atlassian.net',
    auth: { type: 'basic' },
    allowed_hosts: ['*.atlassian.net'],
    scopes: ['read', 'write', 'read:jira-work', 'write:jira-work', 'read:jira-user', 'manage:jira-project'],
    scope_rules: [
      { methods: R, path: '/rest/api/3/user/**', scopes: ['read:jira-user'] },
      { methods: R, path: '/rest/api/3/**', scopes: ['read:jira-work'] },
      { methods: W, path: '/rest/api/3/project/**', scopes: ['manage:jira-project'] },
      { methods: W, path: '/rest/api/3/**', scopes: ['write:jira-work'] },
    ],
    credential_kinds: ['basic'],
    verify: { method: 'GET', path: '/rest/api/3/myself' },
    builtin: true,
  },
  {
    service_id: 'openai',
    name: 'OpenAI',
    base_url: 'https://api.openai.com/v1',
    auth: { type: 'bearer' },
    allowed_hosts: ['api.openai.com'],
    scopes: ['read', 'write', 'model.request', 'api.model.read', 'api.files.write'],
    scope_rules: [
      { methods: ['POST'], path: '/chat/completions', scopes: ['model.request'] },
      { methods: ['POST'], path: '/responses', scopes: ['model.request'] },
      { methods: ['POST'], path: '/embeddings', scopes: ['model.request'] },
      { methods: R, path: '/models/**', scopes: ['api.model.read'] },
      { methods: W, path: '/files/**', scopes: ['api.files.write'] },
    ],
    credential_kinds: ['token'],
    verify: { method: 'GET', path: '/models' },
    builtin: true,
  },
  {
    service_id: 'anthropic',
    name: 'Anthropic',
    base_url: 'https://api.anthropic.com',
    auth: { type: 'header', name: 'x-api-key' },
    allowed_hosts: ['api.anthropic.com'],
    scopes: ['read', 'write', 'messages', 'models:read'],
    scope_rules: [
      { methods: ['POST'], path: '/v1/messages', scopes: ['messages'] },
      { methods: ['POST'], path: '/v1/messages/count_tokens', scopes: ['messages'] },
      { methods: R, path: '/v1/models/**', scopes: ['models:read'] },
    ],
    default_headers: { 'anthropic-version': '2023-06-01' },
    credential_kinds: ['value'],
    verify: { method: 'GET', path: '/v1/models' },
    builtin: true,
  },
];
