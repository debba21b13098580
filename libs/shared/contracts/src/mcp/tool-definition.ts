/**
 * An MCP tool of STACK (DESIGN.md §7): its name, the text a model reads, the scope it needs,
 * its input and output JSON Schemas, annotations, and the bus command that carries it to the
 * owning service. Names and fields are part of the public contract.
 */
import type { Static, TSchema } from '@sinclair/typebox';

import type { CommandDef } from '../bus/definitions';
import type { StackScope } from '../scopes';

export interface ToolAnnotations {
  readOnlyHint: boolean;
  destructiveHint: boolean;
  idempotentHint: boolean;
  /** Whether the tool reaches beyond STACK (a connected upstream service). */
  openWorldHint: boolean;
}

export interface ToolDef<I extends TSchema = TSchema, O extends TSchema = TSchema> {
  /** `stack_…`, snake_case. */
  readonly name: string;
  readonly title: string;
  /** Written for a model: what it does, when to use it, what it returns. */
  readonly description: string;
  readonly scope: StackScope;
  readonly annotations: ToolAnnotations;
  readonly input: I;
  readonly output: O;
  /** The bus command the gateway sends with the tool's arguments as its payload. */
  readonly command: CommandDef<I, O>;
  /**
   * The tool may legitimately take longer than a bus request's usual deadline (an upstream
   * call up to its timeout, a collect that waits for a deposit): the gateway waits for the
   * longest such deadline instead.
   */
  readonly longRunning?: boolean;
  /**
   * The call takes something away (`stack_collect` takes the payload and destroys it): the wait
   * its argument `arg` asks for is done first with `command` (read-only, the same arguments), and
   * the call itself is then made without the wait — only if the client still waits for the
   * answer. A client that went away or cancelled during the wait loses nothing.
   */
  readonly waitFirst?: { readonly command: CommandDef; readonly arg: string };
}

export type ToolInput<T extends ToolDef> = Static<T['input']>;
export type ToolOutput<T extends ToolDef> = Static<T['output']>;

export function defineTool<I extends TSchema, O extends TSchema>(def: Omit<ToolDef<I, O>, 'input' | 'output'>): ToolDef<I, O> {
  if (!/^stack_[a-z0-9_]+$/.test(def.name)) throw new Error(`tool name '${def.name}' must be stack_ + snake_case`);
  return { ...def, input: def.command.request, output: def.command.response };
}
