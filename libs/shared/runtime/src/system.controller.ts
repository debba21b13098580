/**
 * `/healthz` (the process is alive), `/readyz` (its database, bus, cache reachable and its
 * schema current; 503 while draining), `/metrics` (Prometheus) and `/v1/openapi.json`.
 * One set per process: in the one-process shape, one set for the whole of STACK.
 */
import { Controller, Get, Header, Inject, Query, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';

import type { BusConnection } from '@stack/bus';
import { SYSTEM_COMMANDS, isServiceName } from '@stack/contracts';
import type { HealthRegistry, StackMetrics } from '@stack/observability';

import { TOKENS } from './service-definition';
import { ProcessState } from './process-state';

@ApiExcludeController()
@Controller()
export class SystemController {
  constructor(
    @Inject(TOKENS.health) private readonly health: HealthRegistry,
    @Inject(TOKENS.metrics) private readonly metrics: StackMetrics,
    @Inject(TOKENS.busConnection) private readonly bus: BusConnection,
    private readonly state: ProcessState,
  ) {}

  @Get('healthz')
  @Header('Cache-Control', 'no-store')
  healthz(): { status: 'ok'; instance: string; services: string[] } {
    return { status: 'ok', instance: this.state.instanceId, services: this.state.services };
  }

  @Get('readyz')
  @Header('Cache-Control', 'no-store')
  async readyz(@Res() res: Response, @Query('peers') peers?: string): Promise<void> {
    if (this.state.draining) {
      res.status(503).json({ status: 'draining', checks: {} });
      return;
    }
    const report = await this.health.check();
    const body: Record<string, unknown> = { status: report.ok ? 'ready' : 'not_ready', instance: this.state.instanceId, services: this.state.services, checks: report.checks };
    // `?peers=1`: each service of this process pings every other service over the bus. A
    // diagnostic for operators; it does not change the status, so one service being down
    // never makes the others unready.
    if (peers === '1' || peers === 'true') body.peers = await this.peerReport();
    res.status(report.ok ? 200 : 503).json(body);
  }

  private async peerReport(): Promise<unknown[]> {
    return Promise.all(
      this.state.services.filter(isServiceName).map(async (service) => {
        try {
          return await this.bus.forService(service).request(SYSTEM_COMMANDS[service].pingPeers, { timeout_ms: 1500 }, { timeoutMs: 3000 });
        } catch (err) {
          return { service, error: (err as Error).message, peers: [] };
        }
      }),
    );
  }

  @Get('metrics')
  async prometheus(@Res() res: Response): Promise<void> {
    const { contentType, body } = await this.metrics.render();
    res.setHeader('Content-Type', contentType);
    res.send(body);
  }

  @Get('v1/openapi.json')
  openapi(): unknown {
    return this.state.openApiDocument ?? { openapi: '3.1.0', info: { title: 'STACK', version: '0' }, paths: {} };
  }
}
