/**
 * Lets Nest write its own log lines (bootstrap, route mapping, unhandled exceptions) through the
 * STACK logger, so they are JSON, correlated and scrubbed like everything else.
 * Use: `NestFactory.create(AppModule, { logger: new NestLoggerAdapter(logger) })`.
 */
import type { LoggerService, LogLevel as NestLogLevel } from '@nestjs/common';

import type { LogFields, StackLogger } from './logger';

type StackMethod = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export class NestLoggerAdapter implements LoggerService {
  private enabled: ReadonlySet<NestLogLevel> | undefined;

  constructor(private readonly logger: StackLogger) {}

  log(message: unknown, ...optionalParams: unknown[]): void {
    this.write('log', 'info', message, optionalParams);
  }

  error(message: unknown, ...optionalParams: unknown[]): void {
    this.write('error', 'error', message, optionalParams);
  }

  warn(message: unknown, ...optionalParams: unknown[]): void {
    this.write('warn', 'warn', message, optionalParams);
  }

  debug(message: unknown, ...optionalParams: unknown[]): void {
    this.write('debug', 'debug', message, optionalParams);
  }

  verbose(message: unknown, ...optionalParams: unknown[]): void {
    this.write('verbose', 'trace', message, optionalParams);
  }

  fatal(message: unknown, ...optionalParams: unknown[]): void {
    this.write('fatal', 'fatal', message, optionalParams);
  }

  setLogLevels(levels: NestLogLevel[]): void {
    this.enabled = new Set(levels);
  }

  private write(nestLevel: NestLogLevel, method: StackMethod, message: unknown, params: unknown[]): void {
    if (this.enabled && !this.enabled.has(nestLevel)) return;
    const rest = [...params];
    const fields: LogFields = {};
    // Nest passes its context (the class name) as the last string argument, and for errors the
    // stack trace before it: error(message, stack, context).
    if (rest.length > 0 && typeof rest[rest.length - 1] === 'string') fields.context = rest.pop();
    if (method === 'error' || method === 'fatal') {
      if (rest.length > 0 && typeof rest[0] === 'string' && rest[0].includes('\n    at ')) fields.stack = rest.shift();
    }
    if (rest.length > 0) fields.params = rest;

    if (message instanceof Error) {
      this.logger[method]({ ...fields, err: message }, message.message);
    } else if (typeof message === 'string') {
      this.logger[method](fields, message);
    } else {
      this.logger[method]({ ...fields, data: message }, 'nest');
    }
  }
}
