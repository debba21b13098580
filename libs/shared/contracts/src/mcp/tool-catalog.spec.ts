import { MCP_TOOLS } from './tool-catalog';

describe('MCP tool catalog', () => {
  it('lets the tools that can outlast a bus request’s usual deadline take the long one', () => {
    // A proxied call waits for its upstream (30 s), a collect for its deposit (60 s), a whole-log
    // verify rehashes every entry (a million take ~35 s).
    expect(MCP_TOOLS.filter((t) => t.longRunning).map((t) => t.name).sort()).toEqual(['stack_audit_verify', 'stack_collect', 'stack_proxy_request']);
  });

  it('names every tool once', () => {
    expect(new Set(MCP_TOOLS.map((t) => t.name)).size).toBe(MCP_TOOLS.length);
  });
});
