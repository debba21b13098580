/**
 * REST of services and connections (DESIGN.md §5, §7): the catalog with the operator's custom
 * services, connections (never with their secret), verify, disconnect, connect links, upstream
 * OAuth start and callback. Thin: authenticate through the seam, then ConnectionsService.
 */
import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';

import { StackError } from '@stack/contracts';

import { CredentialProxyCore } from '../credential-proxy.core';
import { CONNECTION_NAME, operatorOf, requireScope } from '../connections/connections.service';

type Json = Record<string, unknown>;

@Controller('v1')
export class ConnectionsController {
  constructor(@Inject(CredentialProxyCore) private readonly core: CredentialProxyCore) {}

  private caller(req: Request) {
    return this.core.rest.authenticate(req.headers.authorization);
  }

  @Get('services')
  async services(@Req() req: Request) {
    return { items: await this.core.connections.listServices(await this.caller(req)) };
  }

  @Post('services')
  @HttpCode(201)
  async createService(@Req() req: Request, @Body() body: Json) {
    return this.core.connections.createService(await this.caller(req), body ?? {});
  }

  @Get('connections')
  async list(@Req() req: Request, @Query('service_id') serviceId?: string) {
    return { items: await this.core.connections.list(await this.caller(req), serviceId) };
  }

  @Post('connections')
  @HttpCode(201)
  async create(@Req() req: Request, @Body() body: Json) {
    return this.core.connections.create(await this.caller(req), body ?? {});
  }

  @Post('connections/connect-links')
  @HttpCode(201)
  async connectLink(@Req() req: Request, @Body() body: Json) {
    return this.core.connections.connectLink(await this.caller(req), body ?? {});
  }

  @Post('connections/oauth/start')
  @HttpCode(201)
  async oauthStart(@Req() req: Request, @Body() body: Json) {
    const caller = await this.caller(req);
    const operatorId = operatorOf(caller);
    // The same grant as creating a connection by API key or asking for a connect link.
    requireScope(caller, 'stack:services');
    const entry = typeof body?.service_id === 'string' ? await this.core.catalog.find(operatorId, body.service_id) : undefined;
    if (!entry) throw new StackError('NOT_FOUND', 'no such service in the catalog');
    const name = body.name === undefined ? 'default' : body.name;
    if (typeof name !== 'string' || !CONNECTION_NAME.test(name)) throw new StackError('INVALID_REQUEST', 'name must be 1-64 letters, digits, spaces, _ . or -');
    const scopes = Array.isArray(body.scopes) && body.scopes.every((s) => typeof s === 'string') ? (body.scopes as string[]) : undefined;
    const { authorize_url } = await this.core.oauth.start({ entry, operatorId, memberId: caller.member_id, name, scopes });
    return { authorize_url };
  }

  /** The provider sends the human's browser here; it answers with a small page, not JSON. */
  @Get('connections/oauth/callback')
  async oauthCallback(@Query() q: Record<string, string | undefined>, @Res() res: Response): Promise<void> {
    res.set({ 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'" });
    if (q.error || !q.code || !q.state) {
      res.status(400).send(page('Connection not completed', 'The provider did not authorise the connection. You can close this window.'));
      return;
    }
    try {
      const row = await this.core.oauth.complete({ code: q.code, state: q.state, findEntry: (op, id) => this.core.catalog.find(op, id) });
      res.status(200).send(page('Connected', `The connection “${escapeHtml(row.name)}” to ${escapeHtml(row.service_id)} is ready (${escapeHtml(row.id)}). You can close this window.`));
    } catch (err) {
      const e = err instanceof StackError ? err : new StackError('INTERNAL_ERROR', 'the connection could not be completed');
      res.status(e.status).send(page('Connection not completed', escapeHtml(e.message)));
    }
  }

  @Get('connections/:id')
  async get(@Req() req: Request, @Param('id') id: string) {
    return this.core.connections.get(await this.caller(req), id);
  }

  @Delete('connections/:id')
  async remove(@Req() req: Request, @Param('id') id: string) {
    return this.core.connections.disconnect(await this.caller(req), id);
  }

  @Post('connections/:id/verify')
  @HttpCode(200)
  async verify(@Req() req: Request, @Param('id') id: string) {
    return this.core.connections.verify(await this.caller(req), id);
  }
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · STACK</title><meta name="viewport" content="width=device-width,initial-scale=1"><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem}button{margin-top:1rem;padding:.5rem 1rem}</style></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

