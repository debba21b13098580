/**
 * STACK's logger: JSON lines (pino) carrying the service, the instance and — inside a request or a
 * span — the request id and trace ids, with every secret scrubbed before a byte is written.
 */
import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';

import { currentRequestContext } from './request-context';
import { redactSensitiveKeys, SecretRedactor } from './secret-redactor';

export type StackLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export type LogFields = Record<string, unknown>;

/** A log call: a message alone, or fields (or an error) followed by an optional message. */
export interface LogMethod {
  (msg: string): void;
  (fields: LogFields | Error, msg?: string): void;
}

/**
 * What STACK code logs through. Structurally a `BusLogger` (libs/shared/bus), so the bus takes it
 * as it is.
 */
export interface StackLogger {
  readonly level: StackLogLevel;
  trace: LogMethod;
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  fatal: LogMethod;
  /** A logger whose lines also carry `bindings` (sensitive keys redacted); it shares the secrets. */
  child(bindings: LogFields): StackLogger;
  /** Registers a secret value (a decrypted credential, say): from now on it never reaches output. */
  addSecret(value: string): void;
  /**
   * The secrets `owner` (a connection, say) holds now, replacing those it held before; the previous
   * generation stays redacted, older ones are forgotten, so replacing a token forever stays bounded.
   */
  holdSecrets(owner: string, values: readonly string[]): void;
  /** Forgets the secrets `owner` held (its credential is deleted); values configured or held by another owner stay redacted. */
  releaseSecrets(owner: string): void;
  isLevelEnabled(level: Exclude<StackLogLevel, 'silent'>): boolean;
}

/** Where log lines go: anything with `write(line)`. Each call receives exactly one whole line. */
export interface LogDestination {
  write(line: string): unknown;
}

/** A destination that keeps the lines in memory: what tests and diagnostics read back. */
export class MemoryLogDestination implements LogDestination {
  readonly lines: string[] = [];

  write(line: string): void {
    this.lines.push(line);
  }

  get text(): string {
    return this.lines.join('');
  }

  /** Each line parsed as the JSON record it is. */
  records(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export interface CreateLoggerOptions {
  level: StackLogLevel;
  service: string;
  instance: string;
  /** Secret values known at start (configuration secrets). */
  secrets?: readonly string[];
  /** Share one set of secrets between several loggers of one process. */
  redactor?: SecretRedactor;
  /** Default: stdout, written synchronously so a crash loses no line. */
  destination?: LogDestination;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export function createLogger(options: CreateLoggerOptions): StackLogger {
  if (!LEVELS.includes(options.level)) {
    throw new Error(`createLogger: level must be one of ${LEVELS.join(', ')} (got ${JSON.stringify(options.level)})`);
  }
  for (const name of ['service', 'instance'] as const) {
    if (typeof options[name] !== 'string' || options[name].length === 0) {
      throw new Error(`createLogger: ${name} must be a non-empty string`);
    }
  }
  const redactor = options.redactor ?? new SecretRedactor();
  for (const secret of options.secrets ?? []) redactor.add(secret);
  const target: LogDestination = options.destination ?? pino.destination({ dest: 1, sync: true });

  // Redaction happens on the finished line, the last point before output: nothing logged by any
  // path (message, field, serialised error, binding) can get around it.
  const stream: DestinationStream & { flush?: (cb?: (err?: Error) => void) => void } = {
    write(line: string) {
      target.write(redactor.redact(line));
    },
  };
  const flushable = target as { flush?: (cb?: (err?: Error) => void) => void };
  if (typeof flushable.flush === 'function') stream.flush = (cb) => flushable.flush?.(cb);

  const root = pino(
    {
      level: options.level,
      base: { service: options.service, instance: options.instance },
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        bindings: (bindings) => redactSensitiveKeys(bindings) as LogFields,
        log: (fields) => redactSensitiveKeys(fields) as LogFields,
      },
      mixin: correlationFields,
      // Errors are serialised (anywhere in the fields, not only under `err`) by the log formatter
      // above; a second pass would see a plain object and lose the error's type.
      serializers: { err: (value: unknown) => value },
    },
    stream,
  );
  return new PinoStackLogger(root, redactor);
}

/** request_id from the request context; trace_id/span_id from the active span, else the request context. */
function correlationFields(): LogFields {
  const fields: LogFields = {};
  const request = currentRequestContext();
  if (request) fields.request_id = request.requestId;
  const spanContext = trace.getSpan(context.active())?.spanContext();
  if (spanContext && isSpanContextValid(spanContext)) {
    fields.trace_id = spanContext.traceId;
    fields.span_id = spanContext.spanId;
  } else if (request?.traceId) {
    fields.trace_id = request.traceId;
    if (request.spanId) fields.span_id = request.spanId;
  }
  return fields;
}

class PinoStackLogger implements StackLogger {
  readonly trace: LogMethod;
  readonly debug: LogMethod;
  readonly info: LogMethod;
  readonly warn: LogMethod;
  readonly error: LogMethod;
  readonly fatal: LogMethod;

  constructor(
    private readonly pinoLogger: PinoLogger,
    private readonly redactor: SecretRedactor,
  ) {
    this.trace = this.method('trace');
    this.debug = this.method('debug');
    this.info = this.method('info');
    this.warn = this.method('warn');
    this.error = this.method('error');
    this.fatal = this.method('fatal');
  }

  get level(): StackLogLevel {
    return this.pinoLogger.level as StackLogLevel;
  }

  child(bindings: LogFields): StackLogger {
    // pino passes child bindings through no formatter, so sensitive keys are dropped here.
    return new PinoStackLogger(this.pinoLogger.child(redactSensitiveKeys(bindings) as LogFields), this.redactor);
  }

  addSecret(value: string): void {
    this.redactor.add(value);
  }

  holdSecrets(owner: string, values: readonly string[]): void {
    this.redactor.hold(owner, values);
  }

  releaseSecrets(owner: string): void {
    this.redactor.release(owner);
  }

  isLevelEnabled(level: Exclude<StackLogLevel, 'silent'>): boolean {
    return this.pinoLogger.isLevelEnabled(level);
  }

  private method(level: Exclude<StackLogLevel, 'silent'>): LogMethod {
    const logger = this.pinoLogger;
    return (first: string | LogFields | Error, msg?: string): void => {
      if (!logger.isLevelEnabled(level)) return;
      // Messages are never format strings: a '%s' in a message stays as it is.
      if (typeof first === 'string') logger[level]({}, '%s', first);
      else if (first instanceof Error) logger[level]({ err: first }, msg ?? first.message);
      else if (msg === undefined) logger[level](first);
      else logger[level](first, '%s', msg);
    };
  }
}
