import { AGENT_NAME_MAX, AGENT_NAME_PATTERN } from '@stack/contracts';

import { clientAgentName } from './client-agents.consumer';

describe('clientAgentName', () => {
  it('makes a valid, stable agent name from any client name', () => {
    const re = new RegExp(AGENT_NAME_PATTERN);
    for (const name of ['Claude Code', '  ***  ', undefined, 'Ünïcode Client!', 'x'.repeat(200), 'ends-with-dash---']) {
      const n = clientAgentName(name, 'cli_1');
      expect(n).toMatch(re);
      expect(n.length).toBeLessThanOrEqual(AGENT_NAME_MAX);
      expect(clientAgentName(name, 'cli_1')).toBe(n);
    }
    expect(clientAgentName('Claude Code', 'cli_1')).toMatch(/^claude-code-[0-9a-f]{6}$/);
    expect(clientAgentName('Claude Code', 'cli_1')).not.toBe(clientAgentName('Claude Code', 'cli_2'));
  });
});
