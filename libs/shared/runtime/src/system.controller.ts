/**
 * `/healthz` (the process is alive), `/readyz` (its database, bus, cache reachable and its
 * schema current; 503 while draining), `/metrics` (Prometheus) and `/v1/openapi.json`.
 * One set per process: in the one-process shape, one set for the whole of STACK.
 * None of them asks who calls, so none tells more than a stranger may know (readiness.ts).
 */
import { Controller, Get, Header, Inject, Query, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';

import type { BusConnection } from '@stack/bus';
import type { HealthRegistry, StackLogger, StackMetrics } from '@stack/observability';

import { TOKENS } from './service-definition';
import { ProcessState } from './process-state';
import { Readiness } from './readiness';

@ApiExcludeController()
@Controller()
export class SystemController {
  private readonly readiness: Readiness;

  constructor(
    @Inject(TOKENS.health) health: HealthRegistry,
    @Inject(TOKENS.metrics) private readonly metrics: StackMetrics,
    @Inject(TOKENS.busConnection) bus: BusConnection,
    @Inject(TOKENS.logger) logger: StackLogger,
    private readonly state: ProcessState,
  ) {
    this.readiness = new Readiness(health, bus, () => this.state.services, logger.child({ component: 'readyz' }));
  }

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
    // Per check only whether it passed: the reasons (host names, addresses) go to the log.
    const report = await this.readiness.check();
    const body: Record<string, unknown> = { status: report.ok ? 'ready' : 'not_ready', services: this.state.services, checks: report.checks };
    // `?peers=1`: each service of this process pings every other service over the bus. A
    // diagnostic for operators; it does not change the status, so one service being down
    // never makes the others unready. Served from a shared, paced sweep (readiness.ts).
    if (peers === '1' || peers === 'true') body.peers = await this.readiness.peers();
    res.status(report.ok ? 200 : 503).json(body);
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
