/**
 * How /mcp answers when the bearer token cannot be checked: a refusal of the token is a 401
 * with the challenge; a failure to check it at all (auth's keys unreachable) is a 503 without
 * one, and is logged.
 */
import type { Request, Response } from 'express';

import { StackError } from '@stack/contracts';
import type { ServiceKit } from '@stack/runtime';

import { McpController } from './mcp.controller';
import type { McpService } from './mcp.service';
import type { TokenVerifier } from './principal';

function fakeResponse() {
  const sent = { status: 0, headers: {} as Record<string, string>, body: undefined as unknown };
  const res = {
    setHeader(k: string, v: string) {
      sent.headers[k.toLowerCase()] = v;
      return res;
    },
    status(code: number) {
      sent.status = code;
      return res;
    },
    json(body: unknown) {
      sent.body = body;
      return res;
    },
  };
  return { res: res as unknown as Response, sent };
}

function controllerWith(verify: TokenVerifier['verify']) {
  const warn = jest.fn();
  const kit = { config: { publicUrl: 'http://stack.test' }, logger: { warn } } as unknown as ServiceKit;
  const verifier: TokenVerifier = { name: 'test', accepts: () => true, verify };
  return { controller: new McpController({} as McpService, kit, [verifier]), warn };
}

const request = { headers: { authorization: 'Bearer some-token' } } as unknown as Request;

describe('McpController bearer token check', () => {
  it('answers a refused token with 401 and the protected-resource challenge', async () => {
    const { controller, warn } = controllerWith(() => Promise.reject(new StackError('UNAUTHORIZED', 'token has expired')));
    const { res, sent } = fakeResponse();
    await controller.post(request, res);
    expect(sent.status).toBe(401);
    expect(sent.headers['www-authenticate']).toMatch(/^Bearer resource_metadata=".*", scope=".*", error="invalid_token", error_description="token has expired"$/);
    expect(warn).not.toHaveBeenCalled();
  });

  it('answers a token it cannot check right now with 503, no challenge, and logs why', async () => {
    const { controller, warn } = controllerWith(() => Promise.reject(new TypeError('fetch failed')));
    const { res, sent } = fakeResponse();
    await controller.post(request, res);
    expect(sent.status).toBe(503);
    expect(sent.headers['www-authenticate']).toBeUndefined();
    expect(sent.body).toMatchObject({ error: { code: 'SERVICE_UNAVAILABLE', message: 'cannot check the access token right now' } });
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ err: 'fetch failed' }), expect.any(String));
  });
});
