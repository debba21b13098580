/**
 * The logger shape this library writes to: pino's `(fields, message)` order, so a pino
 * logger (or the observability library's) can be passed as it is. Silent when none is given.
 */
export interface PersistenceLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

const noop = (): void => undefined;

export const SILENT_LOGGER: PersistenceLogger = { debug: noop, info: noop, warn: noop, error: noop };

/** An error's message without its stack, for a log field. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
