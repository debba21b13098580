import { BackendStatusTracker, ClientFrameSplitter, PROTOCOL_V3, SSL_REQUEST_CODE, errorResponse, queryMessage, syncMessage } from './pg-wire';

function startup(): Buffer {
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
  const out = Buffer.alloc(8 + params.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(PROTOCOL_V3, 4);
  params.copy(out, 8);
  return out;
}

function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return Buffer.from([0x5a, 0, 0, 0, 5, status.charCodeAt(0)]);
}

function message(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

describe('ClientFrameSplitter', () => {
  it('answers an SSL request, then reads the startup packet and typed messages', () => {
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8, 0);
    ssl.writeInt32BE(SSL_REQUEST_CODE, 4);
    const splitter = new ClientFrameSplitter();
    const frames = splitter.push(Buffer.concat([ssl, startup(), queryMessage('select 1'), syncMessage()]));
    expect(frames.map((f) => f.kind)).toEqual(['ssl-request', 'startup', 'message', 'message']);
    expect(frames[2]).toMatchObject({ type: 'Q' });
    expect(frames[3]).toMatchObject({ type: 'S' });
  });

  it('reassembles messages split at any byte and keeps their bytes intact', () => {
    const stream = Buffer.concat([startup(), queryMessage('select 42'), syncMessage(), Buffer.from([0x58, 0, 0, 0, 4])]);
    const splitter = new ClientFrameSplitter();
    const frames = [];
    for (const byte of stream) frames.push(...splitter.push(Buffer.from([byte])));
    expect(frames.map((f) => f.kind)).toEqual(['startup', 'message', 'message', 'terminate']);
    const query = frames[1] as { bytes: Buffer };
    expect(query.bytes.equals(queryMessage('select 42'))).toBe(true);
  });

  it('refuses a connection that does not speak protocol 3', () => {
    const bad = Buffer.alloc(8);
    bad.writeInt32BE(8, 0);
    bad.writeInt32BE(12345, 4);
    const frames = new ClientFrameSplitter().push(bad);
    expect(frames).toEqual([{ kind: 'invalid', reason: 'unsupported protocol code 12345' }]);
  });
});

describe('BackendStatusTracker', () => {
  it('is idle only after ReadyForQuery with status I as the last complete message', () => {
    const tracker = new BackendStatusTracker();
    expect(tracker.idle).toBe(false);
    tracker.feed(Buffer.concat([message('1', Buffer.alloc(0)), message('C', Buffer.from('SELECT 1\0')), readyForQuery('T')]));
    expect(tracker.status).toBe('T');
    expect(tracker.idle).toBe(false);
    tracker.feed(readyForQuery('I'));
    expect(tracker.idle).toBe(true);
    // A message after ReadyForQuery (e.g. a notice) means the exchange is not over.
    tracker.feed(message('N', Buffer.from('SNOTICE\0\0')));
    expect(tracker.idle).toBe(false);
  });

  it('follows messages across arbitrary chunk boundaries, including a DataRow that looks like ReadyForQuery', () => {
    const fakeZ = message('D', Buffer.concat([Buffer.from([0, 1, 0, 0, 0, 6]), readyForQuery('I')]));
    const stream = Buffer.concat([fakeZ, message('C', Buffer.from('SELECT 1\0')), readyForQuery('E'), errorResponse('ERROR', '22012', 'division by zero'), readyForQuery('I')]);
    const states: boolean[] = [];
    const tracker = new BackendStatusTracker();
    for (let i = 0; i < stream.length; i += 3) {
      tracker.feed(stream.subarray(i, i + 3));
      states.push(tracker.idle);
    }
    expect(tracker.idle).toBe(true);
    // Idle exactly once: at the very end, never inside the DataRow.
    expect(states.filter(Boolean)).toHaveLength(1);
  });
});
