/**
 * A small Dockerfile reader for the image tests (no Docker engine here): instructions with
 * line continuations joined, grouped into stages, global ARG defaults substituted into FROM.
 */
export interface Instruction {
  op: string;
  args: string;
}

export interface Stage {
  name?: string;
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (!current && (line.trim() === '' || line.trimStart().startsWith('#'))) continue;
    if (current && line.trimStart().startsWith('#')) continue; // comments inside a continued instruction
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push((current + line).trim());
    current = '';
  }
  if (current.trim()) logical.push(current.trim());

  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\S+)\s*(.*)$/s.exec(line);
    if (!m) continue;
    const op = m[1].toUpperCase();
    const args = m[2].replace(/\s+/g, ' ').trim();
    if (op === 'FROM') {
      const [image, as, name] = args.split(' ').filter((a) => !a.startsWith('--'));
      const from = image.replace(/\$\{?(\w+)\}?/g, (_s, v: string) => globalArgs[v] ?? `\${${v}}`);
      stages.push({ from, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else if (stages.length === 0) {
      if (op === 'ARG') {
        const [k, v = ''] = args.split('=');
        globalArgs[k] = v;
      }
    } else {
      stages[stages.length - 1].instructions.push({ op, args });
    }
  }
  return { globalArgs, stages };
}

/** The JSON array of an exec-form instruction (CMD/ENTRYPOINT), or undefined for shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(args);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  } catch {
    return undefined;
  }
}
