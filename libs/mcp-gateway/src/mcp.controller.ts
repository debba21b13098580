/**
 * `/mcp`: POST carries one JSON-RPC message and gets its answer as JSON (stateless: any
 * replica serves any request, no session); GET and DELETE answer 405, as the spec allows a
 * server without a standalone stream or sessions to.
 */
import { Controller, Delete, Get, Inject, Post, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';

import { StackError } from '@stack/contracts';
import { bearerOf, serviceKitToken, type ServiceKit } from '@stack/runtime';

import { InFlightBudget, MAX_MCP_JSON_DEPTH, checkOriginAndHost, checkProtocolVersion, insufficientScope, nestsDeeperThan, readBody, requestWeight, tooMuchInFlight, unauthorized, type HttpRefusal } from './mcp-http';
import { JSONRPCMessageSchema, RpcErrorCode, rpcError } from './mcp-protocol';
import { McpService } from './mcp.service';
import { TOKEN_VERIFIERS, type Principal, type TokenVerifier } from './principal';

function send(res: Response, r: HttpRefusal): void {
  for (const [k, v] of Object.entries(r.headers ?? {})) res.setHeader(k, v);
  res.status(r.status).json(r.body);
}

@ApiExcludeController()
@Controller('mcp')
export class McpController {
  private readonly inFlight = new InFlightBudget();

  constructor(
    private readonly mcp: McpService,
    @Inject(serviceKitToken('mcp-gateway')) private readonly kit: ServiceKit,
    @Inject(TOKEN_VERIFIERS) private readonly verifiers: TokenVerifier[],
  ) {}

  @Post()
  async post(@Req() req: Request, @Res() res: Response): Promise<void> {
    const config = this.kit.config;
    const refusal = checkOriginAndHost(req, config);
    if (refusal) return send(res, refusal);
    const version = checkProtocolVersion(req);
    if (typeof version !== 'string') return send(res, version);

    // Authentication comes before reading what the message asks for.
    const token = bearerOf(req.headers.authorization);
    if (!token) return send(res, unauthorized(config));
    let principal: Principal;
    try {
      principal = await this.authenticate(token);
    } catch (err) {
      if (err instanceof StackError) return send(res, unauthorized(config, err));
      // Not a verdict on the token (auth's keys unreachable, say): a 503 without a challenge, so the client does not discard a good token.
      // fetch keeps the real reason (ECONNREFUSED, a TLS failure…) in its cause.
      const cause = (err as Error).cause as { code?: string; message?: string } | undefined;
      this.kit.logger.warn({ err: (err as Error).message, cause: cause?.code ?? cause?.message }, 'the bearer token could not be checked');
      return send(res, unauthorized(config, new StackError('SERVICE_UNAVAILABLE', 'cannot check the access token right now')));
    }

    // Counted before the body is read: a refused step-up writes an audit entry, and an upload
    // still arriving holds memory too.
    const limited = await this.rateLimit(principal);
    if (limited) return send(res, limited);
    const release = this.inFlight.take(principal.rateKeys, requestWeight(req));
    if (!release) return send(res, tooMuchInFlight());
    try {
      await this.answer(req, res, principal);
    } finally {
      release();
    }
  }

  private async answer(req: Request, res: Response, principal: Principal): Promise<void> {
    const config = this.kit.config;
    const body = await readBody(req);
    if (!body) return send(res, { status: 413, body: rpcError(null, RpcErrorCode.InvalidRequest, 'request body is larger than 1 MB') });
    const contentType = String(req.headers['content-type'] ?? '');
    if (!contentType.includes('application/json')) return send(res, { status: 415, body: rpcError(null, RpcErrorCode.InvalidRequest, 'Content-Type must be application/json') });
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch {
      return send(res, { status: 400, body: rpcError(null, RpcErrorCode.ParseError, 'Parse error: invalid JSON') });
    }
    // 1 MB of brackets nests ~500,000 deep: validating or re-encoding that recursively overflows the stack.
    if (nestsDeeperThan(raw, MAX_MCP_JSON_DEPTH)) return send(res, { status: 400, body: rpcError(null, RpcErrorCode.InvalidRequest, `Invalid Request: JSON nested deeper than ${MAX_MCP_JSON_DEPTH} levels`) });
    const parsed = JSONRPCMessageSchema.safeParse(raw);
    if (!parsed.success) return send(res, { status: 400, body: rpcError(null, RpcErrorCode.InvalidRequest, 'Invalid Request: not a JSON-RPC 2.0 message (batches are not accepted)') });
    const message = parsed.data;

    // A tool outside the token's scopes: step-up challenge at the HTTP level.
    if ('method' in message && message.method === 'tools/call') {
      const name = (message.params as { name?: unknown } | undefined)?.name;
      const tool = typeof name === 'string' ? this.mcp.tool(name) : undefined;
      if (tool && !principal.caller.scopes.includes(tool.scope)) {
        await this.mcp.audit(principal, { tool: tool.name, outcome: 'denied', errorCode: 'OUT_OF_SCOPE', durationMs: 0 });
        return send(res, insufficientScope(config, tool.scope, tool.name));
      }
    }

    // The client is gone when the connection closes before the answer is written.
    let gone = false;
    const onClose = () => {
      if (!res.writableFinished) gone = true;
    };
    res.once('close', onClose);
    const answer = await this.mcp.handle(message, principal, { clientGone: () => gone || res.destroyed });
    res.off('close', onClose);
    if (answer === null) {
      res.status(202).end();
      return;
    }
    res.status(200).json(answer);
  }

  @Get()
  get(@Res() res: Response): void {
    res.setHeader('Allow', 'POST');
    res.status(405).json({ error: { code: 'INVALID_REQUEST', message: 'this server offers no standalone SSE stream; POST JSON-RPC messages' } });
  }

  @Delete()
  delete(@Res() res: Response): void {
    res.setHeader('Allow', 'POST');
    res.status(405).json({ error: { code: 'INVALID_REQUEST', message: 'this server keeps no sessions' } });
  }

  private async authenticate(token: string): Promise<Principal> {
    const verifier = this.verifiers.find((v) => v.accepts(token));
    if (!verifier) throw new StackError('UNAUTHORIZED', 'unrecognised bearer token');
    return verifier.verify(token);
  }

  private async rateLimit(principal: Principal): Promise<HttpRefusal | undefined> {
    const { capacity, refillPerSecond } = this.kit.config.mcpRateLimit;
    for (const key of principal.rateKeys) {
      const r = await this.kit.cache.takeToken(`mcp-rate:${key}`, { capacity, refillPerSecond });
      if (!r.allowed) {
        const retry = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
        return { status: 429, headers: { 'Retry-After': String(retry) }, body: { error: { code: 'RATE_LIMITED', message: `too many requests; retry in ${retry} s`, details: { retry_after_s: retry } } } };
      }
    }
    return undefined;
  }
}
