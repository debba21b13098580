/**
 * The page behind a `stack_connect_service` link: the human — never the model — pastes the secret
 * here. CSRF: the form carries a per-link token that must equal the one in a SameSite=Strict,
 * HttpOnly cookie set with the form and the one stored with the link; a present Origin header must
 * be STACK's public origin (`null` too is refused). The page is served with
 * `Referrer-Policy: same-origin`: browsers then send the real Origin on the post, and the link
 * (token in the query) still never goes to another site. The link works once and for 15 minutes.
 */
import { Controller, Get, Inject, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';

import { StackError } from '@stack/contracts';

import { CredentialProxyCore } from '../credential-proxy.core';
import { escapeHtml, page } from './connections.controller';
import { cookieValue, linkCookieName, pageHeaders, sameSecret } from './page-helpers';
import { readBody } from './read-body';

export const CONNECT_PATH = '/v1/connections/connect';
const COOKIE = 'stack_connect_csrf';

/** The CSRF cookie of one link: its own name, so two links open in one browser do not overwrite each other's. */
const connectCookie = (token: string): string => linkCookieName(COOKIE, token);

@Controller('v1/connections/connect')
export class ConnectPageController {
  constructor(@Inject(CredentialProxyCore) private readonly core: CredentialProxyCore) {}

  private headers(res: Response): void {
    pageHeaders(res);
  }

  @Get()
  async form(@Query('token') token: string | undefined, @Res() res: Response): Promise<void> {
    this.headers(res);
    let found;
    try {
      found = await this.core.connections.connectSession(token ?? '');
    } catch (err) {
      res.status(404).send(page('Link not valid', escapeHtml(err instanceof Error ? err.message : 'unknown link')));
      return;
    }
    const { session, entry } = found;
    const secure = new URL(this.publicUrl()).protocol === 'https:' ? '; Secure' : '';
    res.setHeader('Set-Cookie', `${connectCookie(token ?? '')}=${encodeURIComponent(session.csrf)}; HttpOnly; SameSite=Strict; Path=${CONNECT_PATH}; Max-Age=900${secure}`);
    const basic = entry.auth.type === 'basic';
    const fields = basic
      ? `<label for="username">Username or email</label><input id="username" name="username" autocomplete="off" required><label for="password">Password or API token</label><input id="password" name="password" type="password" autocomplete="off" required>`
      : `<label for="secret">${escapeHtml(entry.name)} token</label><input id="secret" name="secret" type="password" autocomplete="off" required>`;
    res.status(200).send(
      page(
        `Connect ${entry.name}`,
        // Who gets the secret, as on the OAuth confirmation page: a link someone else made would otherwise hand your secret to their operator unannounced.
        `<p>You are giving a ${escapeHtml(entry.name)} secret to the STACK operator <strong>${escapeHtml(session.operator_id)}</strong>, asked for by member <strong>${escapeHtml(session.member_id ?? 'unknown')}</strong>. That operator's agents will act on ${escapeHtml(entry.name)} with it. Paste it only if you asked for this link or trust who did.</p><p>Connection name: <strong>${escapeHtml(session.name)}</strong>.${session.base_url ? ` Site: <strong>${escapeHtml(session.base_url)}</strong>.` : ''} The secret is encrypted in STACK's vault; agents use it only through the proxy and never see it.</p><form method="post" action="${CONNECT_PATH}"><input type="hidden" name="token" value="${escapeHtml(token ?? '')}"><input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}">${fields}<button type="submit">Connect</button></form>`,
      ),
    );
  }

  @Post()
  async submit(@Req() req: Request, @Res() res: Response): Promise<void> {
    this.headers(res);
    try {
      if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) throw new StackError('INVALID_REQUEST', 'submit the form');
      const form = new URLSearchParams((await readBody(req, 64 * 1024)).toString('utf8'));
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== new URL(this.publicUrl()).origin) throw new StackError('FORBIDDEN', 'the form was posted from another site');
      const token = form.get('token') ?? '';
      const { session, entry } = await this.core.connections.connectSession(token);
      const csrf = form.get('csrf') ?? undefined;
      if (!sameSecret(csrf, session.csrf) || !sameSecret(cookieValue(req, connectCookie(token)), session.csrf)) throw new StackError('FORBIDDEN', 'the form has expired or was not sent from this page; open the link again');
      const credential: Record<string, string> =
        entry.auth.type === 'basic' ? { username: form.get('username') ?? '', password: form.get('password') ?? '' } : entry.credential_kinds.includes('token') ? { token: form.get('secret') ?? '' } : { value: form.get('secret') ?? '' };
      const view = await this.core.connections.completeConnect(token, session, credential);
      res.setHeader('Set-Cookie', `${connectCookie(token)}=; HttpOnly; SameSite=Strict; Path=${CONNECT_PATH}; Max-Age=0`);
      res.status(201).send(page('Connected', `<p>${escapeHtml(entry.name)} is connected as “${escapeHtml(view.name)}” (<code>${escapeHtml(view.id)}</code>). You can close this window and go back to your agent.</p>`));
    } catch (err) {
      const e = err instanceof StackError ? err : new StackError('INTERNAL_ERROR', 'the connection could not be saved');
      res.status(e.status).send(page('Not connected', `<p>${escapeHtml(e.message)}</p>`));
    }
  }

  private publicUrl(): string {
    return this.core.publicUrl;
  }
}
