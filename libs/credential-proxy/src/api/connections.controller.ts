/**
 * REST of services and connections (DESIGN.md §5, §7): the catalog with the operator's custom
 * services, connections (never with their secret), verify, disconnect, connect links, upstream
 * OAuth start, its confirmation page and callback. Thin: authenticate through the seam, then
 * ConnectionsService or the OAuth manager.
 */
import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';

import { StackError } from '@stack/contracts';

import { CredentialProxyCore } from '../credential-proxy.core';
import { CONNECTION_NAME, creatorOf } from '../connections/connections.service';
import { OAUTH_CALLBACK_PATH, OAUTH_CONFIRM_PATH } from '../oauth/upstream-oauth';
import { cookieValue, linkCookieName, pageHeaders, sameSecret } from './page-helpers';
import { readBody } from './read-body';

type Json = Record<string, unknown>;

/** The cookie that binds an authorization (`b`) or its confirmation page's CSRF token (`c`) to a browser. */
const oauthCookieName = (kind: 'b' | 'c', state: string): string => linkCookieName(`stack_oauth_${kind}`, state);

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
    // The same grant as creating a connection by API key or asking for a connect link: a member with stack:services, not limited to some connections.
    const operatorId = creatorOf(caller);
    const entry = typeof body?.service_id === 'string' ? await this.core.catalog.find(operatorId, body.service_id) : undefined;
    if (!entry) throw new StackError('NOT_FOUND', 'no such service in the catalog');
    const name = body.name === undefined ? 'default' : body.name;
    if (typeof name !== 'string' || !CONNECTION_NAME.test(name)) throw new StackError('INVALID_REQUEST', 'name must be 1-64 letters, digits, spaces, _ . or -');
    const scopes = Array.isArray(body.scopes) && body.scopes.every((s) => typeof s === 'string') ? (body.scopes as string[]) : undefined;
    // `url` is STACK's confirmation page, which leads to the provider; `authorize_url` is the same URL under its earlier name.
    const { url, authorize_url, expires_at } = await this.core.oauth.start({ entry, operatorId, memberId: caller.member_id, name, scopes });
    return { url, authorize_url, expires_at };
  }

  /**
   * The page behind oauth/start's URL: says which operator, connection and member the human is
   * connecting to, with a Continue button (CSRF: a form token equal to a SameSite=Strict cookie and
   * to the stored one; a present Origin must be STACK's).
   */
  @Get('connections/oauth/confirm')
  async oauthConfirmPage(@Query('state') state: string | undefined, @Res() res: Response): Promise<void> {
    let found;
    try {
      found = await this.core.oauth.pending(state ?? '', (op, id) => this.core.catalog.find(op, id));
    } catch (err) {
      pageHeaders(res);
      res.status(404).send(page('Link not valid', `<p>${escapeHtml(err instanceof StackError ? err.message : 'unknown link')}</p>`));
      return;
    }
    const { pending, entry } = found;
    pageHeaders(res, entry.oauth ? new URL(entry.oauth.authorize_url).origin : undefined);
    const ttl = Math.max(1, Math.ceil((pending.expires_at - Date.now()) / 1000));
    res.setHeader('Set-Cookie', `${oauthCookieName('c', state!)}=${encodeURIComponent(pending.csrf)}; HttpOnly; SameSite=Strict; Path=${OAUTH_CONFIRM_PATH}; Max-Age=${ttl}${this.secure()}`);
    const scopes = pending.scopes.length ? `<p>Permissions asked for: ${pending.scopes.map((s) => `<code>${escapeHtml(s)}</code>`).join(', ')}.</p>` : '';
    res.status(200).send(
      page(
        `Connect ${entry.name} to STACK`,
        `<p>You are connecting your ${escapeHtml(entry.name)} account to the STACK operator <strong>${escapeHtml(pending.operator_id)}</strong> as the connection “<strong>${escapeHtml(pending.name)}</strong>”, started by member <strong>${escapeHtml(pending.member_id ?? 'unknown')}</strong>. That operator's agents will act on ${escapeHtml(entry.name)} with your account.</p>${scopes}<p>Continue only if you started this or trust who did. If someone sent you this link unasked, close this window.</p><form method="post" action="${OAUTH_CONFIRM_PATH}"><input type="hidden" name="state" value="${escapeHtml(state!)}"><input type="hidden" name="csrf" value="${escapeHtml(pending.csrf)}"><button type="submit">Continue to ${escapeHtml(entry.name)}</button></form>`,
      ),
    );
  }

  /** Continue: binds the authorization to this browser (HttpOnly, SameSite=Lax cookie) and redirects to the provider. */
  @Post('connections/oauth/confirm')
  async oauthConfirm(@Req() req: Request, @Res() res: Response): Promise<void> {
    pageHeaders(res);
    try {
      if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) throw new StackError('INVALID_REQUEST', 'submit the form');
      const form = new URLSearchParams((await readBody(req, 16 * 1024)).toString('utf8'));
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== new URL(this.core.publicUrl).origin) throw new StackError('FORBIDDEN', 'the form was posted from another site');
      const state = form.get('state') ?? '';
      const { pending, entry } = await this.core.oauth.pending(state, (op, id) => this.core.catalog.find(op, id));
      const csrfCookie = oauthCookieName('c', state);
      if (!sameSecret(form.get('csrf') ?? undefined, pending.csrf) || !sameSecret(cookieValue(req, csrfCookie), pending.csrf)) {
        throw new StackError('FORBIDDEN', 'the form has expired or was not sent from this page; open the link again');
      }
      const { authorize_url, binding, max_age_s } = await this.core.oauth.proceed(state, pending, entry);
      res.setHeader('Set-Cookie', [
        `${oauthCookieName('b', state)}=${encodeURIComponent(binding)}; HttpOnly; SameSite=Lax; Path=${OAUTH_CALLBACK_PATH}; Max-Age=${max_age_s}${this.secure()}`,
        `${csrfCookie}=; HttpOnly; SameSite=Strict; Path=${OAUTH_CONFIRM_PATH}; Max-Age=0${this.secure()}`,
      ]);
      res.redirect(303, authorize_url);
    } catch (err) {
      const e = err instanceof StackError ? err : new StackError('INTERNAL_ERROR', 'the authorization could not be continued');
      res.status(e.status).send(page('Not continued', `<p>${escapeHtml(e.message)}</p>`));
    }
  }

  /** The provider sends the human's browser here; it answers with a small page, not JSON. Only the browser that pressed Continue completes it. */
  @Get('connections/oauth/callback')
  async oauthCallback(@Req() req: Request, @Query() q: Record<string, string | undefined>, @Res() res: Response): Promise<void> {
    pageHeaders(res);
    if (q.error || !q.code || !q.state) {
      res.status(400).send(page('Connection not completed', 'The provider did not authorise the connection. You can close this window.'));
      return;
    }
    try {
      const bindingCookie = oauthCookieName('b', q.state);
      const row = await this.core.oauth.complete({ code: q.code, state: q.state, binding: cookieValue(req, bindingCookie), findEntry: (op, id) => this.core.catalog.find(op, id) });
      res.setHeader('Set-Cookie', `${bindingCookie}=; HttpOnly; SameSite=Lax; Path=${OAUTH_CALLBACK_PATH}; Max-Age=0${this.secure()}`);
      res.status(200).send(page('Connected', `The connection “${escapeHtml(row.name)}” to ${escapeHtml(row.service_id)} is ready (${escapeHtml(row.id)}). You can close this window.`));
    } catch (err) {
      const e = err instanceof StackError ? err : new StackError('INTERNAL_ERROR', 'the connection could not be completed');
      res.status(e.status).send(page('Connection not completed', escapeHtml(e.message)));
    }
  }

  private secure(): string {
    return new URL(this.core.publicUrl).protocol === 'https:' ? '; Secure' : '';
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

