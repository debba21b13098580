import type { Response } from 'express';

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
});
