/**
 * Server-rendered pages of auth (login, consent, invitation, password reset, errors): plain
 * HTML, no script, no external asset; the one inline style block carries the response's CSP
 * nonce. Every value is escaped.
 */
import { randomBytes } from 'node:crypto';

import type { Response } from 'express';

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `
  :root { color-scheme: light dark; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: #f4f5f7; color: #1b1f24; }
  main { width: min(26rem, 92vw); background: #fff; border-radius: 12px; padding: 2rem; box-shadow: 0 2px 12px rgba(0,0,0,.08); }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; } p.lead { margin: 0 0 1.5rem; color: #4a5360; }
  label { display: block; font-weight: 600; margin: 1rem 0 .35rem; }
  input[type=email], input[type=password], input[type=text] { width: 100%; box-sizing: border-box; padding: .6rem .7rem; border: 1px solid #b9c0ca; border-radius: 8px; font-size: 1rem; }
  input:focus, button:focus { outline: 3px solid #7aa7ff; outline-offset: 1px; }
  button { margin-top: 1.5rem; width: 100%; padding: .7rem; border: 0; border-radius: 8px; font-size: 1rem; font-weight: 600; background: #1f5eff; color: #fff; cursor: pointer; }
  button.secondary { background: #e6e9ee; color: #1b1f24; margin-top: .6rem; }
  .error { background: #fdecec; color: #8a1c1c; border-radius: 8px; padding: .6rem .8rem; margin-bottom: 1rem; }
  ul.scopes { list-style: none; padding: 0; margin: 0; } ul.scopes li { margin: .6rem 0; }
  ul.scopes label { display: flex; gap: .6rem; font-weight: 400; margin: 0; align-items: flex-start; }
  .brand { font-weight: 800; letter-spacing: .08em; color: #1f5eff; margin-bottom: 1rem; }
  .muted { color: #5c6673; font-size: .9rem; } a { color: #1f5eff; }
  @media (prefers-color-scheme: dark) { body { background: #101317; color: #e7e9ec; } main { background: #1a1e24; } p.lead, .muted { color: #a9b1bb; } input { background: #101317; color: #e7e9ec; border-color: #3a414b; } button.secondary { background: #2a3039; color: #e7e9ec; } }
`;

export interface Page {
  status: number;
  html: string;
  nonce: string;
}

export function layout(title: string, body: string, status = 200): Page {
  const nonce = randomBytes(16).toString('base64');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)} · STACK</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main>
<div class="brand" aria-hidden="true">STACK</div>
${body}
</main>
</body>
</html>`;
  return { status, html, nonce };
}

/** Sends a page with a strict Content-Security-Policy: no script at all, styles by nonce only. */
export function sendPage(res: Response, page: Page, headers: Record<string, string> = {}): void {
  res.status(page.status);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Security-Policy', `default-src 'none'; style-src 'nonce-${page.nonce}'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'`);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.send(page.html);
}

export function errorPage(title: string, message: string): string {
  return layout(title, `<h1>${escapeHtml(title)}</h1><p class="lead" role="alert">${escapeHtml(message)}</p>`).html;
}

export function csrfField(token: string): string {
  return `<input type="hidden" name="csrf" value="${escapeHtml(token)}">`;
}

export function loginPage(input: { uid?: string; csrf: string; email?: string; error?: string; status?: number; clientName?: string; signupOpen?: boolean }): Page {
  const action = input.uid ? `/login?uid=${encodeURIComponent(input.uid)}` : '/login';
  return layout(
    'Sign in',
    `<h1>Sign in</h1>
<p class="lead">${input.clientName ? `to let <strong>${escapeHtml(input.clientName)}</strong> use STACK for you` : 'to your STACK team'}</p>
${input.error ? `<div class="error" role="alert">${escapeHtml(input.error)}</div>` : ''}
<form method="post" action="${escapeHtml(action)}">
${csrfField(input.csrf)}
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="${escapeHtml(input.email ?? '')}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="muted">Forgot your password? Ask an admin of your team for a reset link.</p>
${input.signupOpen ? '<p class="muted">New here? <a href="/login/signup">Create a team</a>.</p>' : ''}`,
    input.status ?? 200,
  );
}

export function signupPage(input: { csrf: string; operatorName?: string; email?: string; error?: string; status?: number }): Page {
  return layout(
    'Create a team',
    `<h1>Create a team</h1>
<p class="lead">You become its owner; invite the others afterwards.</p>
${input.error ? `<div class="error" role="alert">${escapeHtml(input.error)}</div>` : ''}
<form method="post" action="/login/signup">
${csrfField(input.csrf)}
<label for="operator_name">Team name</label>
<input id="operator_name" name="operator_name" type="text" autocomplete="organization" required maxlength="100" value="${escapeHtml(input.operatorName ?? '')}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="${escapeHtml(input.email ?? '')}">
<label for="password">Password (at least 10 characters)</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required>
<button type="submit">Create team</button>
</form>`,
    input.status ?? 200,
  );
}

export interface ConsentScope {
  scope: string;
  description: string;
  checked: boolean;
}

export function consentPage(input: { uid: string; csrf: string; clientName: string; redirectHost: string; memberEmail: string; resource: string; scopes: ConsentScope[] }): Page {
  const items = input.scopes
    .map(
      (s, i) => `<li><label for="scope-${i}"><input id="scope-${i}" type="checkbox" name="scope" value="${escapeHtml(s.scope)}"${s.checked ? ' checked' : ''}>
<span><strong>${escapeHtml(s.scope)}</strong><br><span class="muted">${escapeHtml(s.description)}</span></span></label></li>`,
    )
    .join('\n');
  return layout(
    'Approve access',
    `<h1>Allow ${escapeHtml(input.clientName)}?</h1>
<p class="lead"><strong>${escapeHtml(input.clientName)}</strong> (returning to <strong>${escapeHtml(input.redirectHost)}</strong>) asks to act as <strong>${escapeHtml(input.memberEmail)}</strong> at ${escapeHtml(input.resource)}.</p>
<form method="post" action="/consent?uid=${encodeURIComponent(input.uid)}">
${csrfField(input.csrf)}
<fieldset><legend>It may:</legend>
<ul class="scopes">
${items}
</ul></fieldset>
<p class="muted">Untick anything you do not want to allow. You can disconnect this app later.</p>
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>`,
  );
}

export function passwordPage(input: { title: string; lead: string; action: string; csrf: string; error?: string; status?: number }): Page {
  return layout(
    input.title,
    `<h1>${escapeHtml(input.title)}</h1>
<p class="lead">${escapeHtml(input.lead)}</p>
${input.error ? `<div class="error" role="alert">${escapeHtml(input.error)}</div>` : ''}
<form method="post" action="${escapeHtml(input.action)}">
${csrfField(input.csrf)}
<label for="password">New password (at least 10 characters)</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required>
<button type="submit">Save password</button>
</form>`,
    input.status ?? 200,
  );
}

export function messagePage(title: string, message: string, status = 200): Page {
  return layout(title, `<h1>${escapeHtml(title)}</h1><p class="lead" role="status">${escapeHtml(message)}</p>`, status);
}
