import { Readable } from 'node:stream';

import type { Request, Response } from 'express';

import type { CredentialProxyCore } from '../credential-proxy.core';
import type { ConnectSession } from '../connections/connections.service';
import { testGithubEntry } from '../testing/memory-connections';
import { ConnectPageController } from './connect-page.controller';

/** A Response that keeps what the controller sends. */
function response() {
  const sent: { status?: number; body?: string; headers: Record<string, unknown> } = { headers: {} };
  const res = {
    set: (h: Record<string, unknown>) => Object.assign(sent.headers, h),
    setHeader: (k: string, v: unknown) => (sent.headers[k.toLowerCase()] = v),
    status: (code: number) => {
      sent.status = code;
      return res;
    },
    send: (body: string) => (sent.body = body),
  };
  return { res: res as unknown as Response, sent };
}

describe('the connect-link page', () => {
  it('names the operator and the member who asked for the secret, as the OAuth confirmation page does', async () => {
    const session: ConnectSession = { operator_id: 'op_theirs', member_id: 'mem_asker', service_id: 'github', name: 'default', csrf: 'c'.repeat(32) };
    const core = { publicUrl: 'https://stack.test', connections: { connectSession: async () => ({ session, entry: testGithubEntry() }) } } as unknown as CredentialProxyCore;
    const { res, sent } = response();
    await new ConnectPageController(core).form('t'.repeat(32), res);
    expect(sent.status).toBe(200);
    expect(sent.body).toContain('<strong>op_theirs</strong>');
    expect(sent.body).toContain('<strong>mem_asker</strong>');
  });

  it('keeps two links open in one browser apart: each form checks its own cookie, so the first still connects after the second was opened', async () => {
    const sessions = new Map<string, ConnectSession>([
      ['a'.repeat(32), { operator_id: 'op_a', member_id: 'mem_a', service_id: 'github', name: 'first', csrf: 'x'.repeat(32) }],
      ['b'.repeat(32), { operator_id: 'op_a', member_id: 'mem_a', service_id: 'github', name: 'second', csrf: 'y'.repeat(32) }],
    ]);
    const completed: string[] = [];
    const core = {
      publicUrl: 'https://stack.test',
      connections: {
        connectSession: async (token: string) => ({ session: sessions.get(token)!, entry: testGithubEntry() }),
        completeConnect: async (token: string, session: ConnectSession) => {
          completed.push(token);
          return { id: 'scon_1', name: session.name };
        },
      },
    } as unknown as CredentialProxyCore;
    const page = new ConnectPageController(core);
    // The browser keeps every cookie by name, as a browser does.
    const jar = new Map<string, string>();
    for (const token of sessions.keys()) {
      const { res, sent } = response();
      await page.form(token, res);
      const [pair] = String(sent.headers['set-cookie']).split(';');
      jar.set(pair!.slice(0, pair!.indexOf('=')), pair!.slice(pair!.indexOf('=') + 1));
    }
    expect(jar.size).toBe(2);
    const post = (token: string) => {
      const body = new URLSearchParams({ token, csrf: sessions.get(token)!.csrf, secret: 'ghp_' + 'z'.repeat(36) }).toString();
      const req = Object.assign(Readable.from([Buffer.from(body)]), {
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://stack.test', cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
      }) as unknown as Request;
      return req;
    };
    const { res, sent } = response();
    await page.submit(post('a'.repeat(32)), res);
    expect({ status: sent.status, completed }).toEqual({ status: 201, completed: ['a'.repeat(32)] });
  });
});
