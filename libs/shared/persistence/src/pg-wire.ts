/**
 * Just enough of the PostgreSQL wire protocol (v3) for the embedded server to know where
 * one client message ends and when the single PGlite backend is free again: a splitter for
 * what clients send, and a tracker of what the backend answers (its ReadyForQuery status).
 */

export const PROTOCOL_V3 = 196_608;
export const SSL_REQUEST_CODE = 80_877_103;
export const GSSENC_REQUEST_CODE = 80_877_104;
export const CANCEL_REQUEST_CODE = 80_877_102;

/** One complete message from a client. */
export type ClientFrame =
  | { kind: 'startup'; bytes: Buffer }
  | { kind: 'ssl-request' }
  | { kind: 'cancel' }
  | { kind: 'terminate' }
  | { kind: 'message'; type: string; bytes: Buffer }
  | { kind: 'invalid'; reason: string };

/**
 * Splits a client's byte stream into messages. The first message of a connection has no
 * type byte (startup, SSL or cancel request); every later one is a type byte and a length.
 */
export class ClientFrameSplitter {
  private buffer: Buffer = Buffer.alloc(0);
  private startupDone = false;

  push(chunk: Buffer): ClientFrame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: ClientFrame[] = [];
    for (;;) {
      const frame = this.startupDone ? this.nextMessage() : this.nextStartup();
      if (!frame) break;
      frames.push(frame);
      if (frame.kind === 'invalid') {
        this.buffer = Buffer.alloc(0);
        break;
      }
    }
    return frames;
  }

  private nextStartup(): ClientFrame | undefined {
    if (this.buffer.length < 8) return undefined;
    const length = this.buffer.readInt32BE(0);
    if (length < 8 || length > 10_000) return { kind: 'invalid', reason: `bad startup length ${length}` };
    if (this.buffer.length < length) return undefined;
    const code = this.buffer.readInt32BE(4);
    const bytes = this.take(length);
    switch (code) {
      case SSL_REQUEST_CODE:
      case GSSENC_REQUEST_CODE:
        return { kind: 'ssl-request' };
      case CANCEL_REQUEST_CODE:
        return { kind: 'cancel' };
      case PROTOCOL_V3:
        this.startupDone = true;
        return { kind: 'startup', bytes };
      default:
        return { kind: 'invalid', reason: `unsupported protocol code ${code}` };
    }
  }

  private nextMessage(): ClientFrame | undefined {
    if (this.buffer.length < 5) return undefined;
    const length = this.buffer.readInt32BE(1);
    if (length < 4) return { kind: 'invalid', reason: `bad message length ${length}` };
    if (this.buffer.length < length + 1) return undefined;
    const type = String.fromCharCode(this.buffer[0]!);
    const bytes = this.take(length + 1);
    return type === 'X' ? { kind: 'terminate' } : { kind: 'message', type, bytes };
  }

  private take(n: number): Buffer {
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }
}

export type TransactionStatus = 'I' | 'T' | 'E';

/**
 * Follows the backend's answers message by message (they may arrive in any chunking) and
 * remembers whether the last complete one was ReadyForQuery, and with which status:
 * `I` idle, `T` in a transaction block, `E` in a failed one.
 */
export class BackendStatusTracker {
  private readonly header = Buffer.alloc(5);
  private headerLength = 0;
  private remaining = 0;
  private currentType = 0;
  private currentStatus: TransactionStatus | undefined;
  private lastType = 0;
  private lastStatus: TransactionStatus | undefined;

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.headerLength < 5) {
        const take = Math.min(5 - this.headerLength, chunk.length - i);
        for (let k = 0; k < take; k++) this.header[this.headerLength + k] = chunk[i + k]!;
        this.headerLength += take;
        i += take;
        if (this.headerLength === 5) {
          this.currentType = this.header[0]!;
          this.currentStatus = undefined;
          this.remaining = this.header.readInt32BE(1) - 4;
          if (this.remaining <= 0) this.complete();
        }
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - i);
      if (this.currentType === 0x5a /* Z */ && this.currentStatus === undefined) {
        this.currentStatus = String.fromCharCode(chunk[i]!) as TransactionStatus;
      }
      this.remaining -= take;
      i += take;
      if (this.remaining === 0) this.complete();
    }
  }

  /** True when the backend has just said ReadyForQuery outside any transaction block. */
  get idle(): boolean {
    return this.headerLength === 0 && this.lastType === 0x5a && this.lastStatus === 'I';
  }

  get status(): TransactionStatus | undefined {
    return this.lastStatus;
  }

  private complete(): void {
    this.lastType = this.currentType;
    if (this.currentType === 0x5a) this.lastStatus = this.currentStatus;
    this.headerLength = 0;
    this.remaining = 0;
  }
}

/** A Sync message: ends an extended-protocol sequence, so the backend answers ReadyForQuery. */
export function syncMessage(): Buffer {
  return Buffer.from([0x53, 0, 0, 0, 4]);
}

/** A simple Query message. */
export function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`, 'utf8');
  const out = Buffer.alloc(5 + text.length);
  out[0] = 0x51;
  out.writeInt32BE(4 + text.length, 1);
  text.copy(out, 5);
  return out;
}

/** An ErrorResponse, for refusing a connection before it reaches the backend. */
export function errorResponse(severity: 'FATAL' | 'ERROR', sqlState: string, message: string): Buffer {
  const fields = Buffer.from(`S${severity}\0V${severity}\0C${sqlState}\0M${message}\0\0`, 'utf8');
  const out = Buffer.alloc(5 + fields.length);
  out[0] = 0x45;
  out.writeInt32BE(4 + fields.length, 1);
  fields.copy(out, 5);
  return out;
}
