/**
 * The credential proxy through the MCP gateway (issue 6's MCP path), on the distributed
 * topology with a GitHub-like fake on loopback: an MCP client calls stack_proxy_request, the
 * fake receives the injected credential, neither the tool results nor any log line of any
 * process holds the secret; with a real passport, a read-only one cannot POST and a constraint
 * violation is CONSTRAINT_VIOLATION.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { STACK_ENTRY, repoRoot, startDistributedStack, type DistributedStack } from '@stack/testing';

import { expectNoSecretInLogs, startProxyFixture, type ProxyFixture } from './support/proxy-checks';

const owner = { email: 'owner@proxy-mcp.example', password: 'owner-password-proxy-mcp-1' };

type ToolAnswer = { isError?: boolean; structuredContent?: Record<string, unknown>; content?: { type: string; text: string }[] };

function errorCode(r: ToolAnswer): string | undefined {
  if (!r.isError) return undefined;
  return (JSON.parse(r.content![0]!.text) as { error: { code: string } }).error.code;
}

describe('stack_proxy_request through /mcp (distributed)', () => {
  let fx: ProxyFixture;
  let stack: DistributedStack;
  let client: Client;
  let apiKey: string;
  const answers: string[] = [];

  const call = async (name: string, args: Record<string, unknown>): Promise<ToolAnswer> => {
    const r = (await client.callTool({ name, arguments: args })) as ToolAnswer;
    answers.push(JSON.stringify(r));
    return r;
  };

  beforeAll(async () => {
    fx = await startProxyFixture();
    stack = await startDistributedStack({ env: { ...fx.env, STACK_MCP_RATE_LIMIT: '100000:100000' }, serviceEnv: { auth: { STACK_BOOTSTRAP_OWNER_EMAIL: owner.email, STACK_BOOTSTRAP_OWNER_PASSWORD: owner.password } } });
    const env = { PATH: process.env.PATH ?? '', DATABASE_URL: stack.database.url, STACK_INTERNAL_SECRET: stack.internalSecret, STACK_MASTER_KEYS: stack.masterKeys, STACK_PUBLIC_URL: stack.publicUrl };
    apiKey = (await promisify(execFile)(process.execPath, [join(repoRoot(), STACK_ENTRY), 'admin', 'create-api-key', '--email', owner.email, '--name', 'mcp'], { cwd: repoRoot(), env, timeout: 120_000 })).stdout.trim();
    client = new Client({ name: 'proxy-mcp-e2e', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${stack.publicUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${apiKey}` } } }));
  });

  afterAll(async () => {
    await client?.close();
    await stack?.stop();
    await fx?.close();
  });

  it('injects the credential upstream and keeps it out of results and logs; passports bound what an agent may do', async () => {
    const created = await fetch(`${stack.publicUrl}/v1/connections`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ service_id: 'github', name: 'team-github', credential: { token: fx.token } }),
    });
    const connection = (await created.json()) as { id: string };
    expect(created.status).toBe(201);
    expect(JSON.stringify(connection)).not.toContain(fx.token);

    const listed = await call('stack_list_services', {});
    expect(JSON.stringify(listed.structuredContent)).toContain(connection.id);

    const before = fx.github.requests.length;
    const user = await call('stack_proxy_request', { service: connection.id, method: 'GET', path: '/user' });
    expect(user.isError).toBeFalsy();
    expect(user.structuredContent).toMatchObject({ status: 200 });
    expect(fx.github.requests[before]?.headers.authorization).toBe(`Bearer ${fx.token}`);

    // An agent with a read-only passport, one constraint on the path.
    const agent = (await call('stack_register_agent', { name: 'reader-bot' })).structuredContent as { id: string };
    const granted = await call('stack_grant_agent_access', { agent_id: agent.id, connection_id: connection.id, service_id: 'github', scopes: ['read'] });
    expect(granted.isError).toBeFalsy();
    const passport = (
      await call('stack_issue_passport', { agent_id: agent.id, intent_summary: 'read the profile', services: [{ connection_id: connection.id, scopes: ['read'], constraints: [{ path: 'url.pathname', op: 'eq', value: '/user' }] }] })
    ).structuredContent as { token: string };

    const allowed = await call('stack_proxy_request', { service: connection.id, method: 'GET', path: '/user', passport_token: passport.token });
    expect(allowed.structuredContent).toMatchObject({ status: 200 });
    const post = await call('stack_proxy_request', { service: connection.id, method: 'POST', path: '/user', body: { name: 'x' }, passport_token: passport.token });
    expect(errorCode(post)).toBe('OUT_OF_SCOPE');
    const elsewhere = await call('stack_proxy_request', { service: connection.id, method: 'GET', path: '/repos', passport_token: passport.token });
    expect(errorCode(elsewhere)).toBe('CONSTRAINT_VIOLATION');

    // No secret in any tool result or any line any process logged.
    for (const a of answers) for (const secret of fx.secrets()) expect(a.includes(secret)).toBe(false);
    expectNoSecretInLogs(stack.logs(), fx.secrets());
  });
});
