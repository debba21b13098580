import { Value } from '@sinclair/typebox/value';

import { DROPOFF_COMMANDS } from '../dropoff/dropoff.contracts';
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

  it('waits first, without taking, for a collect: its wait goes to the read-only get with the same arguments', () => {
    const collect = MCP_TOOLS.find((t) => t.name === 'stack_collect')!;
    expect(collect.waitFirst?.command).toBe(DROPOFF_COMMANDS.get);
    expect(collect.waitFirst?.arg).toBe('wait_seconds');
    expect(MCP_TOOLS.filter((t) => t.waitFirst).map((t) => t.name)).toEqual(['stack_collect']);
    // Every argument a collect may carry is one its wait command takes.
    const args = { dropoff_id: 'drp_0123456789abcdef', wait_seconds: 60 };
    expect(Value.Check(collect.input, args)).toBe(true);
    expect(Value.Check(collect.waitFirst!.command.request, args)).toBe(true);
    expect(Object.keys((collect.input as unknown as { properties: object }).properties).sort()).toEqual(Object.keys((collect.waitFirst!.command.request as unknown as { properties: object }).properties).sort());
  });
});
