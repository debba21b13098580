/**
 * `POST /v1/proxy` (DESIGN.md §5). The body is parsed here, not by the runtime, so a duplicate
 * key anywhere in it — the envelope or the upstream body — is refused instead of silently taking
 * the last. Over REST an upstream answer above 10 MB is refused with PAYLOAD_TOO_LARGE (413)
 * rather than cut: a REST caller asked for the resource, and half a JSON document is not it.
 */
import { Controller, HttpCode, Inject, Post, Req, Res } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { Request, Response } from 'express';

import { assertValid } from '@stack/bus';
import { CallAbort } from '@stack/security';
import type { FastRoute } from '@stack/runtime';
import { PROXY_REST_RESPONSE_MAX_BYTES, ProxyRequestSchema, StackError, type ProxyRequest, type ProxyResponse } from '@stack/contracts';

import { CredentialProxyCore } from '../credential-proxy.core';
import { DuplicateKeyError, parseStrictJson, UnsafeNumberError } from '../proxy/strict-json';
import { readBody } from './read-body';

export const PROXY_PATH = '/v1/proxy';
const MAX_REQUEST_BYTES = 10 * 1024 * 1024;

/** One proxy call over REST: the same for the lean lane (proxyFastRoute) and the Nest route. */
export async function serveProxyRequest(core: CredentialProxyCore, req: IncomingMessage, res: ServerResponse): Promise<ProxyResponse> {
  const caller = await core.rest.authenticate(req.headers.authorization);
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new StackError('INVALID_REQUEST', 'send the proxy request as application/json');
  const raw = await readBody(req, MAX_REQUEST_BYTES);
  let parsed: unknown;
  try {
    parsed = parseStrictJson(raw.toString('utf8'));
  } catch (err) {
    if (err instanceof DuplicateKeyError) throw new StackError('INVALID_REQUEST', `the request has a ${err.message}`);
    if (err instanceof UnsafeNumberError) throw new StackError('INVALID_REQUEST', `the request has a ${err.message}`);
    throw new StackError('INVALID_REQUEST', 'request body is not valid JSON');
  }
  assertValid(ProxyRequestSchema, parsed, 'proxy request');
  const hangUp = new CallAbort();
  // A caller that hangs up cancels the upstream call too.
  res.once('close', () => {
    if (!res.writableFinished) hangUp.abort();
  });
  return core.pipeline.run(caller, parsed as ProxyRequest, { name: 'rest', maxBytes: PROXY_REST_RESPONSE_MAX_BYTES, overflow: 'refuse' }, hangUp);
}

/** `POST /v1/proxy` on the runtime's lean lane: the hottest route skips Express and Nest. */
export function proxyFastRoute(core: CredentialProxyCore): FastRoute {
  return { method: 'POST', path: PROXY_PATH, handle: async (req, res) => ({ status: 200, body: await serveProxyRequest(core, req, res) }) };
}

/** The Nest route: what the OpenAPI document describes, and what answers when the lean lane is not installed. */
@Controller('v1/proxy')
export class ProxyController {
  constructor(@Inject(CredentialProxyCore) private readonly core: CredentialProxyCore) {}

  @Post()
  @HttpCode(200)
  proxy(@Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<ProxyResponse> {
    return serveProxyRequest(this.core, req, res);
  }
}
