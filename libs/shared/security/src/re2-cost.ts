/**
 * What matching a string against an RE2 pattern may cost, before matching it: for patterns and
 * strings someone else chose (drop-off schemas and payloads, passport constraints and the
 * requests checked against them).
 *
 * Matching on RE2 (re2js) is linear, but at a rate that depends on the program. A one-pass program
 * (anchored and unambiguous: most patterns — ids, emails, UUIDs) or a literal runs at a few ns a
 * character. Any other runs on a lazy DFA with an 8 MB budget; a program whose DFA could outgrow
 * it may build a state for every character — its closure over the program's instructions and a
 * transition table a slot per character class — or fall back to the NFA, which steps every
 * instruction per character. Measured here: `(?:\p{L}|a)*a\p{L}{120}` (125 instructions, 1,370
 * classes) 12 µs a character, `\p{L}{700}` 48 µs, where the DFA takes 0.1–15 ns a character when
 * it fits.
 */
import { RE2JS } from 're2js';

/** Nanoseconds of matching a cost unit stands for. */
export const RE2_COST_UNIT_NS = 80;
/** A character on a one-pass program, a literal or a DFA that fits: as cheap as any length check. */
const CHEAP_PER_CHAR = 1 / 16;
const DFA_BUDGET_BYTES = 8 * 1024 * 1024;
/** re2js's own accounting of a DFA state (overhead, a slot per instruction) and its table (overhead, a slot per class). */
const dfaStateBytes = (insts: number, classes: number) => 150 + 8 * insts + 48 + 8 * (classes + 1);
/** Units per character for a program whose DFA may not fit: per instruction, and per character class. */
const UNITS_PER_INSTRUCTION = 0.75;
const UNITS_PER_CLASS = 1 / 16;
/** Classes assumed when the engine cannot tell (more than the largest Unicode property has). */
const UNKNOWN_CLASSES = 2048;

interface Re2Program {
  numberOfInstructions(): number;
  onepass: unknown;
  prefixComplete: boolean;
  dfa: { numClasses: number };
}

const rates = new Map<string, number>();

/**
 * Units (RE2_COST_UNIT_NS each) that matching one character against `pattern` may cost: a
 * one-pass program, a literal, or one whose every DFA state (at most 2^instructions, four start
 * flags each) fits the budget, costs next to nothing; any other is charged as if each character
 * built a DFA state. `fallbackSize` estimates the instructions should the engine's inside not
 * tell (default: the pattern's length times ten). An invalid pattern costs its fallback.
 */
export function re2CharCost(pattern: string, fallbackSize: () => number = () => pattern.length * 10): number {
  let rate = rates.get(pattern);
  if (rate === undefined) {
    rate = computeRate(pattern, fallbackSize);
    if (rates.size >= 4096) rates.clear();
    rates.set(pattern, rate);
  }
  return rate;
}

function computeRate(pattern: string, fallbackSize: () => number): number {
  let re: Re2Program | undefined;
  try {
    re = (RE2JS.compile(pattern) as unknown as { re2Input?: Re2Program }).re2Input;
  } catch {
    // Not valid RE2: whoever compiles it refuses it.
  }
  const insts = re?.numberOfInstructions?.();
  const classes = re?.dfa?.numClasses;
  if (!re || typeof insts !== 'number' || typeof classes !== 'number') return fallbackSize() * UNITS_PER_INSTRUCTION + UNKNOWN_CLASSES * UNITS_PER_CLASS;
  if (re.onepass !== null || re.prefixComplete) return CHEAP_PER_CHAR;
  if (insts < 20 && 4 * 2 ** insts * dfaStateBytes(insts, classes) <= DFA_BUDGET_BYTES) return CHEAP_PER_CHAR;
  return insts * UNITS_PER_INSTRUCTION + classes * UNITS_PER_CLASS;
}
