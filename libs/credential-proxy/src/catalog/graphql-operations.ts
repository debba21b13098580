/**
 * What a call to a GraphQL endpoint does, for its scope rule: a document whose operations are all
 * queries (or the `{ … }` shorthand) reads; one with a mutation or subscription writes. A small
 * lexer reads the document as the GraphQL spec defines it — strings, block strings, `#` comments,
 * commas as separators, keywords case-sensitive — and looks at the keyword opening each top-level
 * definition (after its description, if any); fragment definitions do not count. Anything it cannot read (another kind of body, a
 * persisted query, a malformed document, type definitions) counts as a write: fail closed.
 */

export interface DocumentKind {
  kind: 'read' | 'write' | 'unknown';
  /** Root fields of the mutations (aliases resolved), when every root selection is a plain field. */
  mutationFields?: string[];
}

export type GraphQLAccess = { kind: 'read' } | { kind: 'write'; mutationFields?: readonly string[] };

/** The parts of a canonical request a GraphQL server reads a document from. */
export interface GraphQLRequest {
  method: string;
  query: ReadonlyArray<readonly [string, string]>;
  json?: unknown;
  body?: Buffer;
}

interface Token {
  type: 'name' | 'punct' | 'string' | 'number';
  value: string;
}

class Unreadable extends Error {}

const NAME = /[_A-Za-z][_0-9A-Za-z]*/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const PUNCT = new Set(['!', '$', '&', '(', ')', '[', ']', '{', '}', ':', '=', '@', '|']);
const CLOSER: Record<string, string> = { '{': '}', '(': ')', '[': ']' };
const ESCAPED = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't', 'u']);

/** One token at a time; `undefined` at the end. Throws Unreadable on anything the spec's lexer would refuse. */
function lexer(doc: string): () => Token | undefined {
  let i = 0;
  return () => {
    for (;;) {
      if (i >= doc.length) return undefined;
      const c = doc[i];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === ',' || c === '\uFEFF') {
        i++;
      } else if (c === '#') {
        // A comment ends at a line terminator: \n or \r.
        while (i < doc.length && doc[i] !== '\n' && doc[i] !== '\r') i++;
      } else {
        break;
      }
    }
    const c = doc[i]!;
    if (PUNCT.has(c)) {
      i++;
      return { type: 'punct', value: c };
    }
    if (c === '.') {
      if (!doc.startsWith('...', i)) throw new Unreadable();
      i += 3;
      return { type: 'punct', value: '...' };
    }
    if (doc.startsWith('"""', i)) {
      // Block string: only \""" is an escape.
      for (i += 3; ; i++) {
        if (i >= doc.length) throw new Unreadable();
        if (doc.startsWith('\\"""', i)) i += 3;
        else if (doc.startsWith('"""', i)) {
          i += 3;
          return { type: 'string', value: '' };
        }
      }
    }
    if (c === '"') {
      for (i++; ; i++) {
        if (i >= doc.length || doc[i] === '\n' || doc[i] === '\r') throw new Unreadable();
        if (doc[i] === '\\') {
          if (!ESCAPED.has(doc[i + 1] ?? '')) throw new Unreadable();
          i++;
        } else if (doc[i] === '"') {
          i++;
          return { type: 'string', value: '' };
        }
      }
    }
    NAME.lastIndex = i;
    const name = NAME.exec(doc);
    if (name) {
      i += name[0].length;
      return { type: 'name', value: name[0] };
    }
    NUMBER.lastIndex = i;
    const number = NUMBER.exec(doc);
    if (number) {
      i += number[0].length;
      // A number runs into no digit, `.` or name (`01`, `1.`, `1x` are errors).
      if (/[0-9._A-Za-z]/.test(doc[i] ?? '')) throw new Unreadable();
      return { type: 'number', value: number[0] };
    }
    throw new Unreadable();
  };
}

function isPunct(t: Token | undefined, value: string): boolean {
  return t !== undefined && t.type === 'punct' && t.value === value;
}

function classify(doc: string): DocumentKind {
  const next = lexer(doc);
  let pending: Token | undefined;
  const take = (): Token | undefined => {
    if (pending) {
      const t = pending;
      pending = undefined;
      return t;
    }
    return next();
  };
  const name = (): string => {
    const t = take();
    if (t?.type !== 'name') throw new Unreadable();
    return t.value;
  };
  /** Skips to the closer of a group whose opener was just taken; brackets must match. */
  const skipGroup = (closer: string): void => {
    const open = [closer];
    while (open.length > 0) {
      const t = take();
      if (!t) throw new Unreadable();
      if (t.type !== 'punct') continue;
      if (CLOSER[t.value]) open.push(CLOSER[t.value]!);
      else if ((t.value === '}' || t.value === ')' || t.value === ']') && open.pop() !== t.value) throw new Unreadable();
    }
  };
  /** `@name(args)` repeated; answers the token after them. */
  const directives = (t: Token | undefined): Token | undefined => {
    while (isPunct(t, '@')) {
      name();
      t = take();
      if (isPunct(t, '(')) {
        skipGroup(')');
        t = take();
      }
    }
    return t;
  };
  /** `Name? (variables)? directives? {` */
  const operationHeader = (): void => {
    let t = take();
    if (t?.type === 'name') t = take();
    if (isPunct(t, '(')) {
      skipGroup(')');
      t = take();
    }
    if (!isPunct(directives(t), '{')) throw new Unreadable();
  };
  /** `Name on Type directives? {` */
  const fragmentHeader = (): void => {
    if (name() === 'on') throw new Unreadable();
    if (name() !== 'on') throw new Unreadable();
    name();
    if (!isPunct(directives(take()), '{')) throw new Unreadable();
  };
  /** The root selections of a mutation, its `{` taken: field names, or undefined when a fragment hides them. */
  const rootFields = (): string[] | undefined => {
    const fields: string[] = [];
    for (;;) {
      let t = take();
      if (isPunct(t, '}')) {
        if (fields.length === 0) throw new Unreadable();
        return fields;
      }
      if (isPunct(t, '...')) {
        skipGroup('}');
        return undefined;
      }
      if (t?.type !== 'name') throw new Unreadable();
      let field = t.value;
      t = take();
      if (isPunct(t, ':')) {
        field = name();
        t = take();
      }
      fields.push(field);
      if (isPunct(t, '(')) {
        skipGroup(')');
        t = take();
      }
      t = directives(t);
      if (isPunct(t, '{')) skipGroup('}');
      else pending = t;
    }
  };

  let reads = 0;
  let writes = 0;
  let fields: string[] | undefined = [];
  for (let t = take(); t; t = take()) {
    if (isPunct(t, '{')) {
      reads++;
      skipGroup('}');
      continue;
    }
    // A description may open an operation or fragment definition (never the shorthand).
    if (t.type === 'string') t = take();
    if (t?.type !== 'name') throw new Unreadable();
    if (t.value === 'query') {
      reads++;
      operationHeader();
      skipGroup('}');
    } else if (t.value === 'fragment') {
      fragmentHeader();
      skipGroup('}');
    } else if (t.value === 'mutation') {
      writes++;
      operationHeader();
      const more = rootFields();
      fields = fields && more ? [...fields, ...more] : undefined;
    } else if (t.value === 'subscription') {
      writes++;
      operationHeader();
      skipGroup('}');
      fields = undefined;
    } else {
      // Type system definitions, descriptions, `MUTATION` (keywords are case-sensitive): not an executable document.
      throw new Unreadable();
    }
  }
  if (writes > 0) return fields ? { kind: 'write', mutationFields: fields } : { kind: 'write' };
  if (reads > 0) return { kind: 'read' };
  throw new Unreadable();
}

/** What one GraphQL document does. */
export function classifyDocument(doc: string): DocumentKind {
  try {
    return classify(doc);
  } catch (err) {
    if (err instanceof Unreadable) return { kind: 'unknown' };
    throw err;
  }
}

const WRITE: GraphQLAccess = { kind: 'write' };
const URL_PARAMS = new Set(['query', 'operationName', 'variables']);
const BODY_KEYS = new Set(['query', 'operationName', 'variables', 'extensions']);

/**
 * What a call to a GraphQL endpoint does, from every document it carries: the URL's `query`
 * parameter and the JSON body's `query` (one operation object or a batch of them). Any other
 * parameter or key (a persisted-query id), a body that is not such JSON, or no document at all:
 * a write.
 */
export function graphqlAccess(req: GraphQLRequest): GraphQLAccess {
  if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') return WRITE;
  const docs: unknown[] = [];
  for (const [key, value] of req.query) {
    if (!URL_PARAMS.has(key)) return WRITE;
    if (key === 'query') docs.push(value);
  }
  if (req.body !== undefined && req.body.length > 0) {
    if (req.json === undefined) return WRITE;
    const ops = Array.isArray(req.json) ? req.json : [req.json];
    if (ops.length === 0) return WRITE;
    for (const op of ops) {
      if (op === null || typeof op !== 'object' || Array.isArray(op)) return WRITE;
      const record = op as Record<string, unknown>;
      for (const key of Object.keys(record)) if (!BODY_KEYS.has(key)) return WRITE;
      const ext = record['extensions'];
      if (ext !== undefined && (ext === null || typeof ext !== 'object' || Object.prototype.hasOwnProperty.call(ext, 'persistedQuery'))) return WRITE;
      docs.push(record['query']);
    }
  }
  if (docs.length === 0) return WRITE;
  let fields: string[] | undefined = [];
  let writes = false;
  for (const doc of docs) {
    if (typeof doc !== 'string') return WRITE;
    const kind = classifyDocument(doc);
    if (kind.kind === 'unknown') return WRITE;
    if (kind.kind === 'write') {
      writes = true;
      fields = fields && kind.mutationFields ? [...fields, ...kind.mutationFields] : undefined;
    }
  }
  if (!writes) return { kind: 'read' };
  return fields ? { kind: 'write', mutationFields: fields } : WRITE;
}
