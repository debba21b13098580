/**
 * A small REST client of the passport endpoints for the end-to-end suites. Until auth (issue
 * 3) resolves API keys, the REST credential is a caller context signed with the deployment's
 * STACK_INTERNAL_SECRET (see libs/passport CallerResolver).
 */
import { randomBytes } from 'node:crypto';

import type { CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';

export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T & { error?: { code: string; message: string; details?: Record<string, unknown> } };
}

export class PassportClient {
  private readonly signer: CallerContextSigner;
  readonly operatorId: string;
  readonly memberId: string;

  constructor(
    readonly baseUrl: string,
    internalSecret: string,
    options: { operatorId?: string; memberId?: string } = {},
  ) {
    this.signer = new CallerContextSigner(Buffer.from(internalSecret, 'base64'));
    this.operatorId = options.operatorId ?? `op_${randomBytes(6).toString('hex')}`;
    this.memberId = options.memberId ?? `mem_${randomBytes(6).toString('hex')}`;
  }

  /** The same member, talking to another node (a replica's own URL). */
  at(baseUrl: string, internalSecret: string): PassportClient {
    return new PassportClient(baseUrl, internalSecret, { operatorId: this.operatorId, memberId: this.memberId });
  }

  caller(extra: Partial<CallerContext> = {}): CallerContext {
    return { issuer: 'auth', kind: 'member', operator_id: this.operatorId, member_id: this.memberId, scopes: ['stack:services', 'stack:passports', 'stack:dropoffs', 'stack:admin'], ...extra };
  }

  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown, options: { auth?: boolean | CallerContext } = {}): Promise<ApiAnswer<T>> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const auth = options.auth ?? true;
    if (auth) headers.authorization = `Bearer ${this.signer.sign(auth === true ? this.caller() : auth)}`;
    const res = await fetch(`${this.baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as ApiAnswer<T>['body'] };
  }

  async ok<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.call<T>(method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  verify(token: string) {
    return this.call<{ valid: boolean; revoked: boolean; code?: string; claims?: { jti: string; stk: Record<string, unknown> } }>('POST', '/v1/passports/verify', { token }, { auth: false });
  }

  /** An agent with one connection granted (scopes read/write, a baseline constraint). */
  async agentWithGrant(name: string, connectionId = 'scon_github1'): Promise<string> {
    const agent = await this.ok<{ id: string }>('POST', '/v1/agents/register', { name: `${name}-${randomBytes(3).toString('hex')}` });
    await this.ok('POST', `/v1/agents/${agent.id}/grants`, { connection_id: connectionId, service_id: 'github', service_name: 'GitHub', scopes: ['repo:read', 'repo:write'], constraints: [{ path: 'url.host', op: 'eq', value: 'api.github.com' }] });
    return agent.id;
  }

  async issue(agentId: string, extra: Record<string, unknown> = {}): Promise<{ token: string; jti: string; expires_at: string }> {
    return this.ok('POST', '/v1/passports/issue', { agent_id: agentId, intent_summary: 'e2e', ...extra });
  }
}
