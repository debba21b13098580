import { serialize } from 'pg-protocol';

import { SharedStatements, StatementRewriter } from './statement-cache';

// Client messages, as pg sends them.
const parse = (text: string, name = '') => serialize.parse({ name, text, types: [] });
const bind = (values: string[], statement = '') => serialize.bind({ statement, values });
const execute = () => serialize.execute();
const sync = () => serialize.sync();
const query = (text: string) => serialize.query(text);

// Backend messages.
const msg = (type: string, body: Buffer = Buffer.alloc(0)) => {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
};
const parseComplete = () => msg('1');
const bindComplete = () => msg('2');
const commandComplete = () => msg('C', Buffer.from('UPDATE 1\0'));
const ready = () => msg('Z', Buffer.from('I'));
const error = () => msg('E', Buffer.from('SERROR\0C22012\0Mdivision by zero\0\0'));

/** What a message stream holds, as type letters. */
function types(out: Buffer): string {
  let s = '';
  for (let i = 0; i < out.length; i += 1 + out.readInt32BE(i + 1)) s += String.fromCharCode(out[i]!);
  return s;
}

/** Sends an exchange through a rewriter: the messages that reach the backend (dropped ones gone). */
function send(r: StatementRewriter, ...messages: Buffer[]): Buffer[] {
  return messages.map((m) => r.input(String.fromCharCode(m[0]!), m)).filter((m): m is Buffer => m !== undefined);
}

const nameInParse = (m: Buffer) => m.toString('utf8', 5, m.indexOf(0, 5));
const statementInBind = (m: Buffer) => {
  const portalEnd = m.indexOf(0, 5);
  return m.toString('utf8', portalEnd + 1, m.indexOf(0, portalEnd + 1));
};

/** One connection's first exchange with `text`, answered by the backend: the text is then prepared for all. */
function prepareOnce(shared: SharedStatements, text: string): void {
  const r = new StatementRewriter(shared);
  send(r, parse(text), bind(['1']), execute(), sync());
  r.output(Buffer.concat([parseComplete(), bindComplete(), commandComplete(), ready()]));
}

describe('statements prepared once for every connection of the embedded server', () => {
  const sql = 'UPDATE t SET n = n + 1 WHERE id = $1';

  it('names a statement the first time, then drops later Parses and answers their ParseComplete itself', () => {
    const shared = new SharedStatements();
    const a = new StatementRewriter(shared);
    const b = new StatementRewriter(shared);

    const first = send(a, parse(sql), bind(['1']), execute(), sync());
    expect(first.map((m) => String.fromCharCode(m[0]!)).join('')).toBe('PBES');
    const name = nameInParse(first[0]!);
    expect(name).toMatch(/^stack_stmt_\d+$/);
    expect(statementInBind(first[1]!)).toBe(name);
    // Not known as prepared until the backend says ParseComplete.
    expect(shared.size).toBe(0);
    expect(types(a.output(Buffer.concat([parseComplete(), bindComplete(), commandComplete(), ready()])))).toBe('12CZ');
    expect(shared.size).toBe(1);

    const second = send(b, parse(sql), bind(['2']), execute(), sync());
    expect(second.map((m) => String.fromCharCode(m[0]!)).join('')).toBe('BES');
    expect(statementInBind(second[0]!)).toBe(name);
    // The backend answers without ParseComplete; the client gets one first.
    expect(types(b.output(Buffer.concat([bindComplete(), commandComplete(), ready()])))).toBe('12CZ');
  });

  it('puts each ParseComplete back at the start of its own exchange, whatever the chunking', () => {
    const shared = new SharedStatements();
    prepareOnce(shared, sql);

    const r = new StatementRewriter(shared);
    // Two exchanges sent back to back, the second failing at Bind.
    send(r, parse(sql), bind(['1']), execute(), sync(), parse(sql), bind(['x']), execute(), sync());
    const answer = Buffer.concat([bindComplete(), commandComplete(), ready(), error(), ready()]);
    const pieces = [answer.subarray(0, 3), answer.subarray(3, 11), answer.subarray(11, 14), answer.subarray(14)];
    const out = Buffer.concat(pieces.map((p) => r.output(p)));
    expect(types(out)).toBe('12CZ1EZ');
  });

  it('answers the ParseComplete even when the backend answers before the Sync has arrived', () => {
    const shared = new SharedStatements();
    prepareOnce(shared, sql);

    const r = new StatementRewriter(shared);
    // A Bind split across reads: the server runs what has arrived, Sync comes later.
    expect(send(r, parse(sql), bind(['1']), execute())).toHaveLength(2);
    expect(types(r.output(Buffer.concat([bindComplete(), commandComplete()])))).toBe('12C');
    expect(send(r, sync())).toHaveLength(1);
    expect(types(r.output(ready()))).toBe('Z');
    // The next exchange starts afresh.
    send(r, parse(sql), bind(['2']), execute(), sync());
    expect(types(r.output(Buffer.concat([bindComplete(), commandComplete(), ready()])))).toBe('12CZ');
  });

  it('does not keep a statement the backend refused to prepare', () => {
    const shared = new SharedStatements();
    const a = new StatementRewriter(shared);
    const sent = send(a, parse('SELEC broken'), bind([]), execute(), sync());
    expect(nameInParse(sent[0]!)).toMatch(/^stack_stmt_/);
    a.output(Buffer.concat([error(), ready()]));
    expect(shared.size).toBe(0);
    // The next connection's Parse goes out again (under a new name).
    const again = send(new StatementRewriter(shared), parse('SELEC broken'), bind([]), execute(), sync());
    expect(String.fromCharCode(again[0]![0]!)).toBe('P');
    expect(nameInParse(again[0]!)).not.toBe(nameInParse(sent[0]!));
  });

  it('leaves alone what it does not rewrite: named statements, a Parse later in an exchange, a statement in flight elsewhere, a full cache', () => {
    const shared = new SharedStatements(1);
    const a = new StatementRewriter(shared);
    const named = send(a, parse(sql, 'mine'), bind(['1'], 'mine'), execute(), sync());
    expect(nameInParse(named[0]!)).toBe('mine');
    expect(statementInBind(named[1]!)).toBe('mine');
    a.output(Buffer.concat([parseComplete(), bindComplete(), commandComplete(), ready()]));

    const b = new StatementRewriter(shared);
    const late = send(b, bind(['1'], 'mine'), parse(sql), bind(['2']), execute(), sync());
    expect(nameInParse(late[1]!)).toBe('');
    expect(statementInBind(late[2]!)).toBe('');
    b.output(Buffer.concat([bindComplete(), parseComplete(), bindComplete(), commandComplete(), ready()]));

    // c claims the only slot; d, meanwhile, sends the same text as it came.
    const c = new StatementRewriter(shared);
    expect(nameInParse(send(c, parse(sql), bind(['3']), execute(), sync())[0]!)).toMatch(/^stack_stmt_/);
    const d = new StatementRewriter(shared);
    const raw = send(d, parse(sql), bind(['4']), execute(), sync());
    expect(nameInParse(raw[0]!)).toBe('');
    expect(statementInBind(raw[1]!)).toBe('');
    c.output(Buffer.concat([parseComplete(), bindComplete(), commandComplete(), ready()]));
    // Full: another text is not prepared.
    const other = send(d, parse('SELECT 1'), bind([]), execute(), sync());
    expect(nameInParse(other[0]!)).toBe('');
  });

  it('forgets every prepared statement when a statement may change a table, and never prepares one', () => {
    const shared = new SharedStatements();
    const a = new StatementRewriter(shared);
    send(a, parse(sql), bind(['1']), execute(), sync());
    a.output(Buffer.concat([parseComplete(), bindComplete(), commandComplete(), ready()]));
    expect(shared.size).toBe(1);
    send(a, query('ALTER TABLE t ADD COLUMN note text'));
    a.output(Buffer.concat([msg('C', Buffer.from('ALTER TABLE\0')), ready()]));
    expect(shared.size).toBe(0);
    // The next Parse of the same text prepares it afresh, so its plan sees the new shape.
    const again = send(a, parse(sql), bind(['1']), execute(), sync());
    expect(String.fromCharCode(again[0]![0]!)).toBe('P');
    a.output(Buffer.concat([parseComplete(), bindComplete(), commandComplete(), ready()]));
    expect(shared.size).toBe(1);
    const ddl = send(a, parse('  create index i on t (n)'), bind([]), execute(), sync());
    expect(nameInParse(ddl[0]!)).toBe('');
    expect(statementInBind(ddl[1]!)).toBe('');
    expect(shared.size).toBe(0);
  });

  it('releases what a vanished connection was preparing', () => {
    const shared = new SharedStatements();
    const gone = new StatementRewriter(shared);
    send(gone, parse(sql), bind(['1']), execute(), sync());
    gone.abandon();
    const next = send(new StatementRewriter(shared), parse(sql), bind(['2']), execute(), sync());
    expect(nameInParse(next[0]!)).toMatch(/^stack_stmt_/);
  });
});
