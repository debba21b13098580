/**
 * The pages a person sees: /login (sign in, for an OAuth authorization in progress or on its
 * own), /consent (approve a client, scope by scope), /login/accept (an invitation) and
 * /login/reset (a one-time password reset link). Every form carries a CSRF token (double
 * submit: a random value in an HttpOnly SameSite=Strict cookie and in the form); sign-in is
 * throttled per account and per client address with the cache's token buckets.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';

import { Controller, Get, Inject, Post, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { SCOPE_DESCRIPTIONS, StackError, apiResource, isStackScope, mcpResource, scopesOfRole } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import type { Request, Response } from 'express';
import type { Grant, Interaction } from 'oidc-provider';

import { AccountsService, type MemberRecord } from '../accounts/accounts.service';
import { redirectTarget } from '../oidc/redirect-uri';
import { DEVICE_COOKIE, DEVICE_COOKIE_MAX_AGE_S, DeviceCookies } from './device-cookie';
import { verifyPassword } from '../accounts/passwords';
import { OidcProviderService } from '../oidc/oidc-provider.service';
import { consentPage, loginPage, messagePage, passwordPage, sendPage, signupPage, type ConsentScope } from './html';

const CSRF_COOKIE = 'stack_csrf';
/** Failed attempts per account: 5, then one more a minute. */
export const ACCOUNT_BUCKET = { capacity: 5, refillPerSecond: 1 / 60 };
/** Per client address (a whole office may share one): 50 attempts, then one every 2 s. */
export const ADDRESS_BUCKET = { capacity: 50, refillPerSecond: 1 / 2 };

const OFFLINE_WORDS = 'Stay connected: renew its access without asking you again (until you disconnect it)';

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** Takes `scopes` off the grant's refusals: in oidc-provider an earlier refusal outranks a later approval. */
function withdrawRefusals(grant: Grant, resource: string, scopes: readonly string[]): void {
  const rejected = grant.rejected;
  if (!rejected) return;
  const keep = (list: string) => list.split(' ').filter((s) => s && !scopes.includes(s)).join(' ');
  if (rejected.openid?.scope) rejected.openid.scope = keep(rejected.openid.scope);
  if (rejected.resources?.[resource]) rejected.resources[resource] = keep(rejected.resources[resource]);
}

@ApiExcludeController()
@Controller()
export class InteractionController {
  private readonly devices: DeviceCookies;

  constructor(
    @Inject(serviceKitToken('auth')) private readonly kit: ServiceKit,
    private readonly accounts: AccountsService,
    private readonly oidc: OidcProviderService,
  ) {
    const secret = Buffer.from(kit.config.internalSecret ?? '', 'base64');
    // Without the deployment's secret (never the case once started), cookies last as long as the process.
    this.devices = new DeviceCookies(secret.length >= 32 ? secret : randomBytes(32));
  }

  @Get('login')
  async loginForm(@Req() req: Request, @Res() res: Response): Promise<void> {
    const uid = str(req.query.uid);
    const csrf = this.csrfFor(req, res);
    const interaction = uid ? await this.interaction(req, res, uid) : undefined;
    if (uid && !interaction) return this.notContinued(res, 'Sign-in expired', 'This sign-in link has expired. Go back to your app and connect again.');
    sendPage(res, loginPage({ uid, csrf, clientName: interaction ? await this.clientNameOf(interaction) : undefined, signupOpen: this.kit.config.authSignup === 'open' }));
  }

  @Post('login')
  async login(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (!this.csrfOk(req)) return sendPage(res, messagePage('Form expired', 'This form could not be verified (CSRF). Reload the page and try again.', 403));
    const uid = str(req.query.uid);
    const email = str(req.body?.email).trim().toLowerCase();
    const password = str(req.body?.password);
    const csrf = this.csrfFor(req, res);
    const address = this.oidc.addresses.resolve(req);
    const throttled = (retryAfterMs: number, by: 'address' | 'account') => {
      const retryAfterS = Math.max(1, Math.ceil(retryAfterMs / 1000));
      this.kit.logger.warn({ address, throttled: by }, 'sign-in throttled');
      sendPage(res, loginPage({ uid, csrf, email, status: 429, error: `Too many sign-in attempts. Try again in ${retryAfterS} seconds.` }), { 'Retry-After': String(retryAfterS) });
    };
    // Every attempt from an address counts; for an account only failures do, so a member who
    // signs in often is never locked out by their own successes. A browser that has signed in to
    // this account before (its device cookie) has failures and a lock of its own instead of the
    // account's: whoever locks the account out for everyone else cannot lock its member out there.
    const byAddress = await this.kit.cache.takeToken(`auth:login:addr:${address}`, ADDRESS_BUCKET);
    if (!byAddress.allowed) return throttled(byAddress.retryAfterMs, 'address');
    const device = email ? this.devices.nonceFor(readCookie(req, DEVICE_COOKIE), email) : undefined;
    const failureKey = device ? `auth:login:dev:${device}` : `auth:login:acct:${email}`;
    const lockKey = device ? `auth:login:devlock:${device}` : `auth:login:lock:${email}`;
    const lockedUntil = email ? Number(await this.kit.cache.get(lockKey)) : 0;
    if (lockedUntil > Date.now()) return throttled(lockedUntil - Date.now(), 'account');
    const member = email ? await this.accounts.findMemberForLogin(email) : undefined;
    const ok = await verifyPassword(password, member?.password_hash);
    if (!member || !ok || member.status !== 'active') {
      if (email) {
        const failures = await this.kit.cache.takeToken(failureKey, ACCOUNT_BUCKET);
        if (!failures.allowed) {
          await this.kit.cache.set(lockKey, String(Date.now() + failures.retryAfterMs), { ttlMs: failures.retryAfterMs });
          return throttled(failures.retryAfterMs, 'account');
        }
      }
      return sendPage(res, loginPage({ uid, csrf, email, status: 401, error: 'That email and password do not match an active member.' }));
    }
    const secure = this.oidc.issuer.startsWith('https:') ? '; Secure' : '';
    res.append('Set-Cookie', `${DEVICE_COOKIE}=${this.devices.issue(member.email)}; Path=/login; Max-Age=${DEVICE_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax${secure}`);
    if (!uid) return sendPage(res, messagePage('Signed in', `You are signed in as ${member.email}. Connect an app to STACK to continue.`));
    const interaction = await this.interaction(req, res, uid);
    if (!interaction) return this.notContinued(res, 'Sign-in expired', 'This sign-in link has expired. Go back to your app and connect again.');
    interaction.result = { login: { accountId: member.id } };
    await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
    res.redirect(303, interaction.returnTo);
  }

  @Get('consent')
  async consentForm(@Req() req: Request, @Res() res: Response): Promise<void> {
    const uid = str(req.query.uid);
    const csrf = this.csrfFor(req, res);
    const ctx = await this.consentContext(req, res, uid);
    if (!ctx) return this.notContinued(res, 'Request expired', 'This approval request has expired. Go back to your app and connect again.');
    const remembered = await this.accounts.connectedApp(ctx.member.id, ctx.clientId);
    const scopes: ConsentScope[] = ctx.requested.map((scope) => ({
      scope,
      description: scope === 'offline_access' ? OFFLINE_WORDS : isStackScope(scope) ? SCOPE_DESCRIPTIONS[scope] : scope,
      checked: !remembered?.refused_scopes.includes(scope),
    }));
    sendPage(res, consentPage({ uid, csrf, clientName: ctx.clientName, redirectHost: ctx.redirectHost, memberEmail: ctx.member.email, resource: ctx.resourceLabel, scopes }));
  }

  @Post('consent')
  async consent(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (!this.csrfOk(req)) return sendPage(res, messagePage('Form expired', 'This form could not be verified (CSRF). Reload the page and try again.', 403));
    const uid = str(req.query.uid);
    const ctx = await this.consentContext(req, res, uid);
    if (!ctx) return this.notContinued(res, 'Request expired', 'This approval request has expired. Go back to your app and connect again.');
    const { interaction } = ctx;
    const raw: unknown = req.body?.scope;
    const ticked = new Set((Array.isArray(raw) ? raw : [raw]).filter((s): s is string => typeof s === 'string'));
    const chosen = ctx.requested.filter((s) => ticked.has(s));
    const resourceScopes = chosen.filter(isStackScope);
    if (str(req.body?.decision) === 'deny' || resourceScopes.length === 0) {
      interaction.result = { error: 'access_denied', error_description: 'the member did not approve this client' };
      await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
      return res.redirect(303, interaction.returnTo);
    }
    const { Grant } = this.oidc.provider;
    const grant = (interaction.grantId ? await Grant.find(interaction.grantId) : undefined) ?? new Grant({ accountId: ctx.member.id, clientId: ctx.clientId });
    // Approved now, so no longer refused (the member ticked it again, or was promoted since).
    for (const resource of ctx.resources) withdrawRefusals(grant, resource, chosen);
    // The STACK scopes are advertised in scopes_supported, which makes oidc-provider count them as
    // OpenID scopes too: they are granted (or refused) at both levels. What the member's role
    // withholds is refused as well: left undecided, oidc-provider would ask for it again and again.
    grant.addOIDCScope(chosen.join(' '));
    const refused = ctx.requested.filter((s) => !ticked.has(s));
    if (refused.length || ctx.withheld.length) grant.rejectOIDCScope([...refused, ...ctx.withheld].join(' '));
    const rejected = [...ctx.requested.filter((s) => isStackScope(s) && !ticked.has(s)), ...ctx.withheld];
    // Every resource the client asked for (RFC 8707 allows several): one left undecided would be asked about again and again.
    for (const resource of ctx.resources) {
      grant.addResourceScope(resource, resourceScopes.join(' '));
      if (rejected.length) grant.rejectResourceScope(resource, rejected.join(' '));
    }
    const grantId = await grant.save();
    await this.accounts.recordConsent({ member: ctx.member, clientId: ctx.clientId, clientName: ctx.clientName, redirectHost: ctx.redirectHost, grantId, scopes: chosen, refused });
    interaction.result = { consent: { grantId } };
    await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
    res.redirect(303, interaction.returnTo);
  }

  @Get('login/signup')
  signupForm(@Req() req: Request, @Res() res: Response): void {
    if (this.kit.config.authSignup !== 'open') return sendPage(res, messagePage('Sign-up is closed', 'Ask an admin of your team for an invitation.', 404));
    sendPage(res, signupPage({ csrf: this.csrfFor(req, res) }));
  }

  @Post('login/signup')
  async signup(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (this.kit.config.authSignup !== 'open') return sendPage(res, messagePage('Sign-up is closed', 'Ask an admin of your team for an invitation.', 404));
    if (!this.csrfOk(req)) return sendPage(res, messagePage('Form expired', 'This form could not be verified (CSRF). Reload the page and try again.', 403));
    const operatorName = str(req.body?.operator_name).trim().slice(0, 100);
    const email = str(req.body?.email).trim();
    const csrf = this.csrfFor(req, res);
    // Sign-ups count against the address like sign-in attempts.
    const byAddress = await this.kit.cache.takeToken(`auth:login:addr:${this.oidc.addresses.resolve(req)}`, ADDRESS_BUCKET);
    if (!byAddress.allowed) return sendPage(res, signupPage({ csrf, operatorName, email, status: 429, error: 'Too many attempts. Try again later.' }), { 'Retry-After': String(Math.ceil(byAddress.retryAfterMs / 1000)) });
    if (!operatorName) return sendPage(res, signupPage({ csrf, operatorName, email, status: 400, error: 'Give your team a name.' }));
    try {
      await this.accounts.createOperatorWithOwner({ operatorName, email, password: str(req.body?.password) });
    } catch (err) {
      if (!(err instanceof StackError)) throw err;
      // The same answer whether the email is taken or not would need mail; an owner-to-be learns it here.
      return sendPage(res, signupPage({ csrf, operatorName, email, status: err.status, error: err.message }));
    }
    sendPage(res, messagePage('Team created', `${operatorName} is ready and you are its owner. Sign in from any app connected to STACK, or at /login.`));
  }

  @Get('login/accept')
  async acceptForm(@Req() req: Request, @Res() res: Response): Promise<void> {
    const token = str(req.query.token);
    const invitation = token ? await this.accounts.findInvitation(token) : undefined;
    if (!invitation) return sendPage(res, messagePage('Invitation not valid', 'This invitation link is unknown, used or expired. Ask for a new one.', 404));
    sendPage(res, passwordPage({ title: 'Join your team on STACK', lead: `Choose a password for ${invitation.email}.`, action: `/login/accept?token=${encodeURIComponent(token)}`, csrf: this.csrfFor(req, res) }));
  }

  @Post('login/accept')
  async accept(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (!this.csrfOk(req)) return sendPage(res, messagePage('Form expired', 'This form could not be verified (CSRF). Reload the page and try again.', 403));
    const token = str(req.query.token);
    try {
      const member = await this.accounts.acceptInvitation(token, str(req.body?.password));
      sendPage(res, messagePage('Welcome', `You joined as ${member.email}. You can now sign in from any app connected to STACK.`));
    } catch (err) {
      if (!(err instanceof StackError)) throw err;
      sendPage(res, passwordPage({ title: 'Join your team on STACK', lead: 'Choose a password.', action: `/login/accept?token=${encodeURIComponent(token)}`, csrf: this.csrfFor(req, res), error: err.message, status: err.status }));
    }
  }

  @Get('login/reset')
  async resetForm(@Req() req: Request, @Res() res: Response): Promise<void> {
    const token = str(req.query.token);
    if (!token || !(await this.accounts.resetPasswordValid(token))) return sendPage(res, messagePage('Link not valid', 'This reset link is unknown, used or expired. Ask an admin for a new one.', 404));
    sendPage(res, passwordPage({ title: 'Choose a new password', lead: 'This link works once.', action: `/login/reset?token=${encodeURIComponent(token)}`, csrf: this.csrfFor(req, res) }));
  }

  @Post('login/reset')
  async reset(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (!this.csrfOk(req)) return sendPage(res, messagePage('Form expired', 'This form could not be verified (CSRF). Reload the page and try again.', 403));
    const token = str(req.query.token);
    try {
      await this.accounts.resetPassword(token, str(req.body?.password));
      sendPage(res, messagePage('Password changed', 'Your new password is set. Sign in with it from your app.'));
    } catch (err) {
      if (!(err instanceof StackError)) throw err;
      sendPage(res, passwordPage({ title: 'Choose a new password', lead: 'This link works once.', action: `/login/reset?token=${encodeURIComponent(token)}`, csrf: this.csrfFor(req, res), error: err.message, status: err.status }));
    }
  }

  /**
   * The interaction `uid`, only in the browser that began it (oidc-provider's signed interaction
   * cookie names it): a sign-in or approval through a link someone else sent would otherwise
   * finish their authorization, and hand them a code for this member.
   */
  private async interaction(req: Request, res: Response, uid: string) {
    if (!uid || uid.length > 100) return undefined;
    const here = await this.oidc.provider.interactionDetails(req, res).catch(() => undefined);
    if (here?.uid === uid) return here;
    // Not this browser's: say so (on the page and in the log) when the link is alive elsewhere.
    if (await this.oidc.provider.Interaction.find(uid).catch(() => undefined)) {
      (res.locals as { otherBrowser?: boolean }).otherBrowser = true;
      this.kit.logger.info({ uid }, 'a sign-in or approval link was opened in a browser other than the one that began it; refused');
    }
    return undefined;
  }

  /** The page for a link this browser cannot continue: expired, or begun in another browser. */
  private notContinued(res: Response, title: string, text: string): void {
    if ((res.locals as { otherBrowser?: boolean }).otherBrowser) {
      return sendPage(res, messagePage('Open this link where you started', 'This link belongs to a sign-in begun in another browser. Finish it there, or go back to your app and connect again from this one.', 400));
    }
    sendPage(res, messagePage(title, text, 400));
  }

  private async clientNameOf(interaction: Interaction): Promise<string | undefined> {
    const clientId = str(interaction.params.client_id);
    const client = clientId ? await this.oidc.provider.Client.find(clientId) : undefined;
    return client ? (client.clientName ?? clientId) : undefined;
  }

  private async consentContext(req: Request, res: Response, uid: string) {
    const interaction = await this.interaction(req, res, uid);
    if (!interaction || interaction.prompt.name !== 'consent' || !interaction.session?.accountId) return undefined;
    const member: MemberRecord | undefined = await this.accounts.findMember(interaction.session.accountId);
    if (!member || member.status !== 'active') return undefined;
    const clientId = str(interaction.params.client_id);
    const client = await this.oidc.provider.Client.find(clientId);
    if (!client) return undefined;
    const redirectUri = str(interaction.params.redirect_uri) || client.redirectUris?.[0] || '';
    const redirectHost = redirectTarget(redirectUri);
    const resourceParam = interaction.params.resource;
    const asked = [...new Set((Array.isArray(resourceParam) ? resourceParam : [resourceParam]).map(str).filter(Boolean))];
    const resources = asked.length ? asked : [mcpResource(this.oidc.issuer)];
    const label = (r: string) => (r === apiResource(this.oidc.issuer) ? 'the STACK REST API' : 'STACK (MCP)');
    const requested = [...new Set(str(interaction.params.scope).split(' ').filter((s) => s === 'offline_access' || s === 'openid' || isStackScope(s)))];
    // Only the scopes the member's role allows are offered; the rest are withheld (refused unseen).
    const roleScopes: string[] = scopesOfRole(member.role);
    const offered = requested.filter((s) => !isStackScope(s) || roleScopes.includes(s));
    const withheld = requested.filter((s) => isStackScope(s) && !roleScopes.includes(s));
    return { interaction, member, clientId, clientName: client.clientName ?? clientId, redirectHost, resources, resourceLabel: resources.map(label).join(' and '), requested: offered, withheld };
  }

  private csrfFor(req: Request, res: Response): string {
    const existing = readCookie(req, CSRF_COOKIE);
    if (existing && /^[A-Za-z0-9_-]{32,64}$/.test(existing)) return existing;
    const token = randomBytes(32).toString('base64url');
    const secure = this.oidc.issuer.startsWith('https:') ? '; Secure' : '';
    res.append('Set-Cookie', `${CSRF_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict${secure}`);
    return token;
  }

  private csrfOk(req: Request): boolean {
    const cookie = readCookie(req, CSRF_COOKIE);
    const field = str(req.body?.csrf);
    if (!cookie || !field || cookie.length !== field.length) return false;
    return timingSafeEqual(Buffer.from(cookie), Buffer.from(field));
  }
}

function readCookie(req: Request, name: string): string | undefined {
  const header = req.headers.cookie ?? '';
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}
