/**
 * What a benchmark is to the CLI: a name, its flags with defaults, and a run that prints its
 * figures. Flags are declared, so the CLI can refuse a misspelt one and print the exact
 * command (every flag with its effective value) that reproduces a run.
 */
import type { Printer } from './report-printer';

export interface FlagSpec {
  kind: 'int' | 'string';
  default: number | string;
  doc: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export class Flags {
  constructor(
    private readonly specs: FlagSpecs,
    private readonly values: ReadonlyMap<string, string>,
  ) {}

  int(name: string): number {
    const spec = this.spec(name, 'int');
    const raw = this.values.get(name);
    if (raw === undefined) return spec.default as number;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new FlagError(`--${name} must be a non-negative integer, got '${raw}'`);
    return n;
  }

  string(name: string): string {
    const spec = this.spec(name, 'string');
    return this.values.get(name) ?? String(spec.default);
  }

  /** `--a 1 --b x`: every declared flag with the value this run used. */
  commandLine(): string {
    return Object.entries(this.specs)
      .map(([name, spec]) => `--${name} ${quote(spec.kind === 'int' ? String(this.int(name)) : this.string(name))}`)
      .join(' ');
  }

  private spec(name: string, kind: FlagSpec['kind']): FlagSpec {
    const spec = this.specs[name];
    if (!spec || spec.kind !== kind) throw new Error(`benchmark reads undeclared ${kind} flag --${name}`);
    return spec;
  }
}

export class FlagError extends Error {}

function quote(value: string): string {
  return /^[A-Za-z0-9_./:@,=+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Parses `--name value` and `--name=value` against `specs`; anything else is a FlagError. */
export function parseFlags(specs: FlagSpecs, argv: readonly string[]): Flags {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new FlagError(`unexpected argument '${arg}'`);
    const [, name, inline] = match;
    if (!specs[name]) throw new FlagError(`unknown flag --${name} (known: ${Object.keys(specs).map((k) => `--${k}`).join(', ') || 'none'})`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new FlagError(`--${name} needs a value`);
    values.set(name, value);
  }
  const flags = new Flags(specs, values);
  // Validate every value now, so a bad one fails before any server is touched.
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.kind === 'int') flags.int(name);
  }
  return flags;
}

export interface BenchmarkContext {
  flags: Flags;
  out: Printer;
  /** The command that reproduces this run, ready to print. */
  command: string;
}

export interface Benchmark {
  readonly name: string;
  /** One line for `--help`. */
  readonly summary: string;
  readonly flags: FlagSpecs;
  /** Time its flags ask for beyond the usual deadline (a long sustained run), ms. */
  extraTimeMs?(flags: Flags): number;
  run(ctx: BenchmarkContext): Promise<void>;
}
