/**
 * Prepared statements shared by every connection of the embedded server. PGlite spends most of a
 * small statement parsing and planning it (a single-row UPDATE with its outbox rows: about 1 ms
 * parsed each time, about 0.3 ms prepared once, measured on 2 cores), and `pg` sends every query
 * as an unnamed statement, parsed again each time. All connections share PGlite's one backend,
 * so a statement prepared once serves them all: the server names it the first time its text is
 * parsed and, from then on, drops the client's Parse and points its Bind at the named one,
 * answering the ParseComplete the client waits for itself. What the client sees is unchanged.
 *
 * Only the common shape is rewritten: an exchange (up to its Sync) that begins with Parse of the
 * unnamed statement. A statement is known as prepared once the backend said ParseComplete for it;
 * while another connection's Parse of the same text is in flight, or once `maxStatements` are
 * kept, the client's own Parse goes through as it came. Plans stay right across schema changes:
 * Postgres re-checks a prepared statement's plan when a table it uses changes.
 */

/** Every distinct statement text (with its parameter types) the server keeps prepared, at most. */
const DEFAULT_MAX_STATEMENTS = 1000;

const PARSE_COMPLETE = Buffer.from([0x31, 0, 0, 0, 4]);

/** Statements that may change what a prepared statement returns; never prepared, and they empty the cache. */
const SCHEMA_CHANGE = /^\s*(ALTER|CREATE|DROP|COMMENT|GRANT|REVOKE)\b/i;

/** Server-wide: statement text → the name it is prepared under in the backend. */
export class SharedStatements {
  private readonly prepared = new Map<string, string>();
  private readonly inFlight = new Set<string>();
  private next = 1;

  constructor(readonly maxStatements = DEFAULT_MAX_STATEMENTS) {}

  /** For tests and logs: how many statements are prepared. */
  get size(): number {
    return this.prepared.size;
  }

  lookup(key: string): string | undefined {
    return this.prepared.get(key);
  }

  /**
   * A statement that may change a table's shape went by: forget every prepared statement, so none
   * runs against a changed result type ("cached plan must not change result type"). They stay in
   * the backend unused; schema changes are rare (migrations, at start).
   */
  forgetAll(): void {
    this.prepared.clear();
  }

  /** A fresh name for `key`, unless it is being prepared already or the cache is full. */
  claim(key: string): string | undefined {
    if (this.inFlight.has(key) || this.prepared.size + this.inFlight.size >= this.maxStatements) return undefined;
    this.inFlight.add(key);
    return `stack_stmt_${this.next++}`;
  }

  settle(key: string, name: string, ok: boolean): void {
    this.inFlight.delete(key);
    if (ok) this.prepared.set(key, name);
  }
}

interface Exchange {
  /** The client's Parse was dropped: its ParseComplete comes from here. */
  answerParse: boolean;
  /** The client's Parse went out under this name: known prepared once the backend says ParseComplete. */
  preparing?: { key: string; name: string };
}

/** One connection's view: rewrites what it sends, and completes what the backend answers. */
export class StatementRewriter {
  /**
   * Exchanges begun, oldest first, the one still being sent included (the server may run its
   * first messages before the Sync arrives); each ends with one ReadyForQuery in the output.
   */
  private readonly exchanges: Exchange[] = [];
  /** The exchange being sent (until its Sync), if it has begun; also the last of `exchanges`. */
  private current: Exchange | undefined;
  /** Where this connection's unnamed statement really is, when it was rewritten. */
  private unnamedIs: string | undefined;
  // Output: position inside the backend's message stream.
  private atExchangeStart = true;
  private outHeader = Buffer.alloc(5);
  private outHeaderLength = 0;
  private outRemaining = 0;

  constructor(private readonly shared: SharedStatements) {}

  /** The connection is gone: what it was preparing is not known to exist. */
  abandon(): void {
    for (const e of this.exchanges) if (e.preparing) this.shared.settle(e.preparing.key, e.preparing.name, false);
    this.exchanges.length = 0;
    this.current = undefined;
  }

  /** The startup message: its answer ends with ReadyForQuery like an exchange's. */
  startup(): void {
    this.exchanges.push({ answerParse: false });
  }

  /** A client message, rewritten; undefined when it is dropped. */
  input(type: string, bytes: Buffer): Buffer | undefined {
    const first = this.current === undefined;
    if (!this.current) {
      this.current = { answerParse: false };
      this.exchanges.push(this.current);
    }
    const exchange = this.current;
    switch (type) {
      case 'P': {
        const parse = readParse(bytes);
        if (!parse) return bytes;
        if (SCHEMA_CHANGE.test(parse.text)) {
          this.shared.forgetAll();
          if (parse.name === '') this.unnamedIs = undefined;
          return bytes;
        }
        if (parse.name !== '') return bytes;
        if (!first) {
          // Not the shape rewritten here: the client's own unnamed statement from now on.
          this.unnamedIs = undefined;
          return bytes;
        }
        const key = `${parse.types.toString('hex')}\u0000${parse.text}`;
        const known = this.shared.lookup(key);
        if (known) {
          this.unnamedIs = known;
          exchange.answerParse = true;
          return undefined;
        }
        const name = this.shared.claim(key);
        if (!name) {
          this.unnamedIs = undefined;
          return bytes;
        }
        exchange.preparing = { key, name };
        this.unnamedIs = name;
        return parseMessage(name, parse.rest);
      }
      case 'B':
        return this.unnamedIs ? rewriteBind(bytes, this.unnamedIs) : bytes;
      case 'D':
        return this.unnamedIs && bytes.length === 7 && bytes[5] === 0x53 /* S */ && bytes[6] === 0 ? describeStatement(this.unnamedIs) : bytes;
      case 'Q':
        if (SCHEMA_CHANGE.test(bytes.toString('utf8', 5, Math.min(bytes.length, 5 + 64)))) this.shared.forgetAll();
        this.current = undefined;
        return bytes;
      case 'S':
        this.current = undefined;
        return bytes;
      default:
        return bytes;
    }
  }

  /** The backend's answer, with the ParseCompletes of dropped Parses put back where they belong. */
  output(chunk: Buffer): Buffer {
    if (!this.exchanges.some((e) => e.answerParse || e.preparing)) {
      // Nothing to put back or to learn: only follow the message boundaries.
      this.follow(chunk, 0, undefined);
      return chunk;
    }
    const parts: Buffer[] = [];
    this.follow(chunk, 0, parts);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Walks `chunk` message by message from `i`; with `parts`, collects the output (injections included). */
  private follow(chunk: Buffer, i: number, parts: Buffer[] | undefined): void {
    let copiedTo = i;
    while (i < chunk.length) {
      if (this.outHeaderLength === 0 && this.outRemaining === 0 && this.atExchangeStart) {
        // The first byte of an exchange's answer.
        this.atExchangeStart = false;
        const exchange = this.exchanges[0];
        if (exchange?.preparing) this.shared.settle(exchange.preparing.key, exchange.preparing.name, chunk[i] === 0x31 /* ParseComplete */);
        if (exchange?.answerParse && parts) {
          parts.push(chunk.subarray(copiedTo, i), PARSE_COMPLETE);
          copiedTo = i;
        }
      }
      if (this.outHeaderLength < 5) {
        const take = Math.min(5 - this.outHeaderLength, chunk.length - i);
        chunk.copy(this.outHeader, this.outHeaderLength, i, i + take);
        this.outHeaderLength += take;
        i += take;
        if (this.outHeaderLength === 5) this.outRemaining = this.outHeader.readInt32BE(1) - 4;
      } else {
        const take = Math.min(this.outRemaining, chunk.length - i);
        this.outRemaining -= take;
        i += take;
      }
      if (this.outHeaderLength === 5 && this.outRemaining === 0) {
        if (this.outHeader[0] === 0x5a /* ReadyForQuery */) {
          this.exchanges.shift();
          this.atExchangeStart = true;
        }
        this.outHeaderLength = 0;
      }
    }
    if (parts) parts.push(chunk.subarray(copiedTo));
  }
}

/** Parse: name, query text, parameter types (kept as raw bytes: count and OIDs). */
function readParse(bytes: Buffer): { name: string; text: string; types: Buffer; rest: Buffer } | undefined {
  const nameEnd = bytes.indexOf(0, 5);
  if (nameEnd < 0) return undefined;
  const textEnd = bytes.indexOf(0, nameEnd + 1);
  if (textEnd < 0) return undefined;
  return {
    name: bytes.toString('utf8', 5, nameEnd),
    text: bytes.toString('utf8', nameEnd + 1, textEnd),
    types: bytes.subarray(textEnd + 1),
    rest: bytes.subarray(nameEnd + 1),
  };
}

/** Parse with `name`, the rest (text, types) as the client sent it. */
function parseMessage(name: string, rest: Buffer): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'latin1');
  const out = Buffer.alloc(5 + nameBytes.length + rest.length);
  out[0] = 0x50;
  out.writeInt32BE(out.length - 1, 1);
  nameBytes.copy(out, 5);
  rest.copy(out, 5 + nameBytes.length);
  return out;
}

/** Bind of the unnamed statement, pointed at `name`; any other Bind as it came. */
function rewriteBind(bytes: Buffer, name: string): Buffer {
  const portalEnd = bytes.indexOf(0, 5);
  if (portalEnd < 0 || bytes[portalEnd + 1] !== 0) return bytes; // a named statement: the client's own
  const nameBytes = Buffer.from(name, 'latin1');
  const out = Buffer.alloc(bytes.length + nameBytes.length);
  bytes.copy(out, 0, 0, portalEnd + 1);
  nameBytes.copy(out, portalEnd + 1);
  bytes.copy(out, portalEnd + 1 + nameBytes.length, portalEnd + 1);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

function describeStatement(name: string): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'latin1');
  const out = Buffer.alloc(6 + nameBytes.length);
  out[0] = 0x44;
  out.writeInt32BE(out.length - 1, 1);
  out[5] = 0x53;
  nameBytes.copy(out, 6);
  return out;
}
