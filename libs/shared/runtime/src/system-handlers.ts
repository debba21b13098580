/**
 * Every service answers `ping` and `ping_peers` on the bus: the first proves it is reachable,
 * the second that it can reach every other service. Readiness and the end-to-end tests use them.
 */
import { SERVICE_NAMES, SYSTEM_COMMANDS, type ServiceName } from '@stack/contracts';
import type { Bus, Handle } from '@stack/bus';

export function serveSystemCommands(bus: Bus, instanceId: string): Handle[] {
  const service = bus.service;
  const commands = SYSTEM_COMMANDS[service];
  return [
    bus.handle(commands.ping, () => ({ service, instance: instanceId, pid: process.pid, at: new Date().toISOString() })),
    bus.handle(commands.pingPeers, async (req) => {
      const timeoutMs = req.timeout_ms ?? 2000;
      const peers = await Promise.all(
        SERVICE_NAMES.filter((s) => s !== service).map(async (peer: ServiceName) => {
          const t0 = performance.now();
          try {
            const reply = await bus.request(SYSTEM_COMMANDS[peer].ping, { from: service }, { timeoutMs });
            return { service: peer, ok: true, instance: reply.instance, rtt_ms: round(performance.now() - t0) };
          } catch (err) {
            return { service: peer, ok: false, error: (err as Error).message, rtt_ms: round(performance.now() - t0) };
          }
        }),
      );
      return { service, instance: instanceId, peers };
    }),
  ];
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
