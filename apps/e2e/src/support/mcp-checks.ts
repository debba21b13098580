/**
 * What the MCP gateway must show in every shape (issue 4): a client signing in as Claude Code
 * does and calling tools, and every refusal at the HTTP level. Run against the six-process
 * topology (with two gateway replicas) and against the one process of `npm start`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Browser } from 'playwright-core';

import type { ConnectedMcpClient } from './mcp-oauth-client';
import { connectWithBrowserSignIn } from './mcp-oauth-client';
import { discover, exchangeCode, obtainCode, register, startCallbackServer, type Member } from './auth-client';
import { sendJson } from './auth-admin';

export interface McpTarget {
  publicUrl: string;
  browser: Browser;
  owner: Member;
}

/** Signs in through the browser with the MCP SDK's client, lists tools and calls real ones. */
export async function expectSignInAndToolCalls(t: McpTarget): Promise<ConnectedMcpClient> {
  const connected = await connectWithBrowserSignIn(`${t.publicUrl}/mcp`, t.browser, t.owner);
  const { client, provider } = connected;
  expect(client.getServerVersion()?.name).toBe('stack');
  // The client asked for what the 401 challenge named: the default scopes, not admin.
  const granted = String(provider.tokens()?.scope ?? '').split(' ');
  expect(granted).toEqual(expect.arrayContaining(['stack:services', 'stack:passports', 'stack:audit']));
  expect(granted).not.toContain('stack:admin');

  const { tools } = await client.listTools();
  const names = tools.map((x) => x.name);
  expect(names).toEqual(expect.arrayContaining(['stack_list_services', 'stack_proxy_request', 'stack_register_agent', 'stack_list_agents', 'stack_issue_passport', 'stack_audit_list']));
  // A caller sees only the tools its scopes allow.
  expect(names).not.toContain('stack_grant_agent_access');
  expect(names).not.toContain('stack_revoke_all_passports');
  for (const tool of tools) {
    expect(tool.inputSchema.type).toBe('object');
    expect(tool.description!.length).toBeGreaterThan(40);
    expect(tool.annotations).toEqual(expect.objectContaining({ readOnlyHint: expect.any(Boolean), destructiveHint: expect.any(Boolean), idempotentHint: expect.any(Boolean) }));
  }

  const name = `mcp-agent-${Date.now().toString(36)}`;
  const registered = await client.callTool({ name: 'stack_register_agent', arguments: { name, description: 'made over MCP' } });
  expect(registered.isError).toBeFalsy();
  expect(registered.structuredContent).toMatchObject({ name, id: expect.stringMatching(/^agt_/) });
  const listed = await client.callTool({ name: 'stack_list_agents', arguments: {} });
  expect(listed.isError).toBeFalsy();
  expect((listed.structuredContent as { agents: { name: string }[] }).agents.map((a) => a.name)).toContain(name);
  const services = await client.callTool({ name: 'stack_list_services', arguments: {} });
  expect(services.isError).toBeFalsy();

  // A refused call comes back as a tool result with the error envelope, not a protocol failure.
  const bad = await client.callTool({ name: 'stack_register_agent', arguments: { name: 'Not A Valid Name' } });
  expect(bad.isError).toBe(true);
  const envelope = JSON.parse((bad.content as { type: string; text: string }[])[0]!.text) as { error: { code: string; message: string } };
  expect(envelope.error.code).toBe('INVALID_REQUEST');

  // Each call is in the audit log, with who and which tool (the log appends asynchronously).
  const deadline = Date.now() + 15_000;
  let seen: string[] = [];
  let entryId = '';
  while (Date.now() < deadline) {
    const log = await client.callTool({ name: 'stack_audit_list', arguments: { action: 'tool.stack_register_agent', limit: 10 } });
    expect(log.isError).toBeFalsy();
    const items = (log.structuredContent as { items: { entry: { id: string; layer: string; outcome: string } }[] }).items;
    seen = items.map((i) => `${i.entry.layer}:${i.entry.outcome}`);
    entryId = items[0]?.entry.id ?? '';
    if (seen.includes('gateway:success') && seen.includes('gateway:failure')) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(seen).toEqual(expect.arrayContaining(['gateway:success', 'gateway:failure']));

  // The member's own entry verifies against a signed checkpoint; the whole log is for admins only.
  const verified = await client.callTool({ name: 'stack_audit_verify', arguments: { entry_id: entryId } });
  expect(verified.isError).toBeFalsy();
  expect(verified.structuredContent).toMatchObject({ verdict: 'valid', entry: { id: entryId }, inclusion: { hashes: expect.any(Array) }, checkpoint: { tree_size: expect.any(Number) } });
  const whole = await client.callTool({ name: 'stack_audit_verify', arguments: {} });
  expect(whole.isError).toBe(true);
  expect(JSON.parse((whole.content as { text: string }[])[0]!.text)).toMatchObject({ error: { code: 'NOT_FOUND' } });
  return connected;
}

/**
 * An admin's whole-log check over MCP: a token for the MCP resource with stack:admin (asked for,
 * approved in the browser), then stack_audit_verify without an entry — the service rehashes every
 * entry against every signed root, on the gateway's long deadline.
 */
export async function expectWholeLogVerify(t: McpTarget): Promise<void> {
  const as = await discover(t.publicUrl);
  const callback = await startCallbackServer();
  let token: string;
  try {
    const oauthClient = await register(as, callback.redirectUri, 'Audit admin client');
    const { start, callbackUrl } = await obtainCode(t.browser, as, oauthClient, callback, t.owner, { scope: 'stack:audit stack:admin', resource: `${t.publicUrl}/mcp` });
    token = (await exchangeCode(as, oauthClient, start, callbackUrl, callback.redirectUri)).access_token;
  } finally {
    await callback.stop();
  }
  const client = new Client({ name: 'stack-e2e-admin', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${t.publicUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  try {
    const whole = await client.callTool({ name: 'stack_audit_verify', arguments: {} });
    expect(whole.isError).toBeFalsy();
    const result = whole.structuredContent as { verdict: string; tree_size: number; checkpoint: { tree_size: number; note: string } };
    expect(result).toMatchObject({ verdict: 'valid', checkpoint: { note: expect.stringContaining('\n\n') } });
    // Every tool call so far is in the log, and the checkpoint signed for this check covers them.
    expect(result.tree_size).toBeGreaterThan(3);
    expect(result.checkpoint.tree_size).toBeLessThanOrEqual(result.tree_size);
  } finally {
    await client.close();
  }
}

async function post(publicUrl: string, body: unknown, headers: Record<string, string>): Promise<Response> {
  return fetch(`${publicUrl}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const PING = { jsonrpc: '2.0', id: 1, method: 'ping' };

/** Every refusal of issue 4, at the HTTP level, with real tokens. */
export async function expectRefusals(t: McpTarget, mcpToken: string): Promise<void> {
  const bearer = { authorization: `Bearer ${mcpToken}` };
  // No token.
  const none = await post(t.publicUrl, PING, {});
  expect(none.status).toBe(401);
  expect(none.headers.get('www-authenticate')).toContain(`resource_metadata="${t.publicUrl}/.well-known/oauth-protected-resource/mcp"`);
  // An expired or forged token (a well-formed JWT no key of STACK signed).
  const forged = `${Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'at+jwt', kid: 'nope' })).toString('base64url')}.${Buffer.from(JSON.stringify({ exp: 1, iss: t.publicUrl })).toString('base64url')}.AAAA`;
  expect((await post(t.publicUrl, PING, { authorization: `Bearer ${forged}` })).status).toBe(401);
  // A token for another audience (the REST API).
  const as = await discover(t.publicUrl);
  const callback = await startCallbackServer();
  try {
    const client = await register(as, callback.redirectUri, 'Audience test client');
    const { start, callbackUrl } = await obtainCode(t.browser, as, client, callback, t.owner, { scope: 'stack:services stack:admin', resource: `${t.publicUrl}/v1` });
    const apiToken = (await exchangeCode(as, client, start, callbackUrl, callback.redirectUri)).access_token;
    const wrongAudience = await post(t.publicUrl, PING, { authorization: `Bearer ${apiToken}` });
    expect(wrongAudience.status).toBe(401);
    // A revoked member: their API key works on /mcp, then is refused once the member is revoked.
    const email = `dev-${Date.now().toString(36)}@mcp.example`;
    const invite = await sendJson('POST', `${t.publicUrl}/v1/team/members/invite`, apiToken, { email, name: 'Dev', role: 'standard' });
    expect(invite.status).toBe(201);
    const dev: Member = { email, password: 'dev-member-password-1' };
    const context = await t.browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(String(invite.body.accept_url));
      await page.getByLabel(/New password/).fill(dev.password);
      await page.getByRole('button', { name: 'Save password' }).click();
      await page.getByText(`You joined as ${email}`).waitFor();
    } finally {
      await context.close();
    }
    const devCode = await obtainCode(t.browser, as, client, callback, dev, { scope: 'stack:services', resource: `${t.publicUrl}/v1` });
    const devToken = (await exchangeCode(as, client, devCode.start, devCode.callbackUrl, callback.redirectUri)).access_token;
    const created = await sendJson('POST', `${t.publicUrl}/v1/api-keys`, devToken, { name: 'mcp-e2e' });
    expect(created.status).toBe(201);
    const devKey = { authorization: `Bearer ${String(created.body.key)}` };
    expect((await post(t.publicUrl, PING, devKey)).status).toBe(200);
    const members = (await (await fetch(`${t.publicUrl}/v1/team/members`, { headers: { authorization: `Bearer ${apiToken}` } })).json()) as { members: { id: string; email: string }[] };
    const devId = members.members.find((m) => m.email === email)!.id;
    expect((await sendJson('DELETE', `${t.publicUrl}/v1/team/members/${devId}`, apiToken)).status).toBe(200);
    const deadline = Date.now() + 5000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      status = (await post(t.publicUrl, PING, devKey)).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(401);
  } finally {
    await callback.stop();
  }
  // A foreign Origin (DNS-rebinding protection).
  expect((await post(t.publicUrl, PING, { ...bearer, origin: 'http://evil.example' })).status).toBe(403);
  // An unsupported protocol version.
  expect((await post(t.publicUrl, PING, { ...bearer, 'mcp-protocol-version': '2019-01-01' })).status).toBe(400);
  // A tool outside the token's scopes: a step-up challenge.
  const stepUp = await post(t.publicUrl, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'stack_revoke_all_passports', arguments: { confirm: true } } }, bearer);
  expect(stepUp.status).toBe(403);
  expect(stepUp.headers.get('www-authenticate')).toMatch(/error="insufficient_scope", scope="stack:admin"/);
  // Malformed JSON-RPC and an oversized body.
  expect((await post(t.publicUrl, '{"jsonrpc": "2.0", "id":', bearer)).status).toBe(400);
  expect((await post(t.publicUrl, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'stack_list_agents', arguments: { pad: 'x'.repeat(1_200_000) } } }, bearer)).status).toBe(413);
}
