/**
 * `/healthz` (the process is alive), `/readyz` (its database, bus, cache reachable and its
 * schema current; 503 while draining), `/metrics` (Prometheus) and `/v1/openapi.json`.
 * One set per process: in the one-process shape, one set for the whole of STACK.
 */
import { Controller, Get, Header, Inject, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';

import type { HealthRegistry, StackMetrics } from '@stack/observability';

import { TOKENS } from './service-definition';
import { ProcessState } from './process-state';

@ApiExcludeController()
@Controller()
export class SystemController {
  constructor(
    @Inject(TOKENS.health) private readonly health: HealthRegistry,
    @Inject(TOKENS.metrics) private readonly metrics: StackMetrics,
    private readonly state: ProcessState,
  ) {}

  @Get('healthz')
  @Header('Cache-Control', 'no-store')
  healthz(): { status: 'ok'; instance: string; services: string[] } {
    return { status: 'ok', instance: this.state.instanceId, services: this.state.services };
  }

  @Get('readyz')
  @Header('Cache-Control', 'no-store')
  async readyz(@Res() res: Response): Promise<void> {
    if (this.state.draining) {
      res.status(503).json({ status: 'draining', checks: {} });
      return;
    }
    const report = await this.health.check();
    res.status(report.ok ? 200 : 503).json({ status: report.ok ? 'ready' : 'not_ready', instance: this.state.instanceId, services: this.state.services, checks: report.checks });
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
