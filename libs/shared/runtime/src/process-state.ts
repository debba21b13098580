/** Facts about this process that controllers read: who it is, whether it is draining. */
import { Injectable } from '@nestjs/common';

@Injectable()
export class ProcessState {
  instanceId = '';
  services: string[] = [];
  draining = false;
  openApiDocument?: unknown;
}
