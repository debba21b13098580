/**
 * The bus side of the credential proxy, for the MCP gateway (`stack_proxy_request`,
 * `stack_list_services`, `stack_connect_service`): the caller is the signed context the runtime
 * already verified. The answer is a tool result: its body is cut to fit the
 * bus (DESIGN.md §8: messages stay well under NATS' 1 MB) and marked `truncated`.
 */
import type { Bus, Handle } from '@stack/bus';
import { CredentialProxyCommands, MAX_BUS_PAYLOAD_BYTES, PROXY_TOOL_RESULT_MAX_BYTES, type ProxyResponse } from '@stack/contracts';

import type { CredentialProxyCore } from '../credential-proxy.core';

/** Room left for the envelope, headers and JSON escaping. */
const RESULT_BUDGET = MAX_BUS_PAYLOAD_BYTES - 64 * 1024;
/** Raw bytes read from upstream for a tool result: base64 of this still fits the budget. */
export const BUS_BODY_MAX_BYTES = Math.min(PROXY_TOOL_RESULT_MAX_BYTES, Math.floor((RESULT_BUDGET * 3) / 4) - 4096);

/** Shrinks a body whose JSON spelling (escapes included) would not fit the bus. */
export function fitForBus(res: ProxyResponse): ProxyResponse {
  let out = res;
  while (Buffer.byteLength(JSON.stringify(out)) > RESULT_BUDGET) {
    const keep = Math.floor(out.body.length * 0.8);
    out = { ...out, body: out.body_encoding === 'base64' ? out.body.slice(0, keep - (keep % 4)) : out.body.slice(0, keep), truncated: true };
  }
  return out;
}

export function serveProxyCommands(bus: Bus, core: CredentialProxyCore): Handle[] {
  return [
    bus.handle(CredentialProxyCommands.proxyRequest, async (payload, ctx) =>
      fitForBus(await core.pipeline.run(ctx.caller, payload, { name: 'bus', maxBytes: BUS_BODY_MAX_BYTES, overflow: 'truncate' })),
    ),
    bus.handle(CredentialProxyCommands.listServices, async (_payload, ctx) => ({ items: (await core.connections.listServices(ctx.caller)).map((e) => ({ ...e, allowed_hosts: [...e.allowed_hosts], scopes: [...e.scopes] })) })),
    bus.handle(CredentialProxyCommands.connectService, (payload, ctx) => core.connections.connectLink(ctx.caller, payload)),
  ];
}
